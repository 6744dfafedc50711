"""The established session: roster, carbons and availability once bound, the action's own stanza, and then what
arrives, reported as `received` events when the client accepts it (policy.py decides whom it believes) and
answered where XMPP asks for an answer (iq results and errors, receipts to those allowed them).
"""

from __future__ import annotations

import asyncio

from conformance.adapters.xmpp.codec.stanza import (CARBONS, CLIENT, FORWARD, MAM, PING, ROSTER, STANZA_ID,
                                                    error_condition, iq, iq_result, kind, message, new_id, q,
                                                    stanza_error)
from conformance.adapters.xmpp.codec.xml import E, Element

from . import policy
from .events import Reporter
from .flaws import Flawed
from .login import STEP, Established
from .request import Request
from .tls import TlsFailure

RECEIPTS = "urn:xmpp:receipts"  # XEP-0184
CARBON_DIRECTIONS = ("received", "sent")


class Session:
    def __init__(self, established: Established, request: Request, report: Reporter, flawed: Flawed):
        self.stream = established.stream
        self.conn = established.conn
        self.jid = established.jid
        self.own_bare = str(established.jid.bare)
        self.presence_sent = established.presence_sent
        self.request = request
        self.report = report
        self.flawed = flawed
        self.roster: dict[str, str] = {}  # bare JID -> subscription
        self.sent: dict[str, str] = {}  # id of a message this client sent -> its addressee
        self.shown = policy.Shown()
        self.archive_queries: set[str] = set()  # queryids of this client's open archive queries (XEP-0313)

    # -- reading ---------------------------------------------------------------------------------------------------

    async def next_unit(self) -> Element:
        try:
            return await self.stream.next_unit()
        except TlsFailure:
            if self.flawed("client-tls-errors-ignored"):
                # "A glitch on the line": say nothing, read nothing more, and leave the connection as it is until
                # the application lets go of it.
                await asyncio.Event().wait()
            raise

    async def query(self, request: Element) -> Element:
        """Send an iq and return its answer; what arrives meanwhile is handled as usual."""
        await self.stream.send(request)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STEP
        while True:
            unit = await asyncio.wait_for(self.next_unit(), max(deadline - loop.time(), 0.01))
            if kind(unit) == "iq" and unit.get("id") == request.get("id") and unit.get("type") in ("result", "error"):
                return unit
            await self.handle(unit)

    async def pump(self) -> None:
        """Handle what arrives until the stream ends (StreamEnded, ConnectionLost, TlsFailure)."""
        while True:
            await self.handle(await self.next_unit())

    # -- the session's first steps and the action ------------------------------------------------------------------

    async def start(self, action: str, initial_presence: Element) -> None:
        """RFC 6121 §2.2: the roster before availability; carbons where the service has them (an error is fine)."""
        answer = await self.query(iq("get", E("query", ns=ROSTER), id_=new_id("roster")))
        if answer.get("type") == "result":
            for item in answer.iter(q(ROSTER, "item")):
                self._apply(item)
        await self.query(iq("set", E("enable", ns=CARBONS), id_=new_id("carbons")))
        if not self.presence_sent:
            await self.stream.send(initial_presence)
            self.presence_sent = True
            self.report("sent", kind="presence", status=initial_presence.findtext(q(CLIENT, "status")))
        if action == "send-message":
            await self.send_message(self.request.to, self.request.body, receipt=self.request.receipt)
        if self.request.sync:
            await self.sync_archive()

    async def sync_archive(self) -> None:
        """XEP-0313: ask the own archive (no 'to': the account itself) for what it holds; the results arrive as
        messages tagged with the query's id, then the answer to the query ends it."""
        queryid = new_id("mam")
        self.archive_queries.add(queryid)
        try:
            await self.query(iq("set", E("query", {"queryid": queryid}, ns=MAM), id_=new_id("sync")))
        finally:
            self.archive_queries.discard(queryid)
        self.report("synced")

    async def send_message(self, to: str, body: str, *, receipt: bool) -> None:
        ident = new_id("m")
        self.sent[ident] = to
        await self.stream.send(message(to, body, E("request", ns=RECEIPTS) if receipt else None, id_=ident))
        self.report("sent", kind="message", id=ident, to=to)

    # -- what arrives ----------------------------------------------------------------------------------------------

    async def handle(self, unit: Element) -> None:
        what = kind(unit)
        if what == "message":
            await self._message(unit)
        elif what == "presence":
            self.report.received("presence", **{"from": unit.get("from")}, type=unit.get("type") or "available",
                                 status=unit.findtext(q(CLIENT, "status")), show=unit.findtext(q(CLIENT, "show")))
        elif what == "iq":
            await self._iq(unit)
        # anything else (stream management nonzas and the like) this client does not use

    async def _iq(self, unit: Element) -> None:
        type_ = unit.get("type")
        if type_ not in ("get", "set"):
            return  # an answer nobody waits for any more
        push = unit.find(q(ROSTER, "query"))
        if type_ == "set" and push is not None:
            await self._roster_push(unit, push)
        elif type_ == "get" and unit.find(q(PING, "ping")) is not None:
            await self.stream.send(_reply(unit))
        else:  # RFC 6120 §8.4: an iq nobody here handles gets an error, never silence
            await self.stream.send(_error(unit, "service-unavailable"))

    async def _roster_push(self, unit: Element, push: Element) -> None:
        if not policy.roster_push_accepted(unit.get("from"), self.own_bare, flawed=self.flawed):
            await self.stream.send(_error(unit, "service-unavailable"))  # RFC 6121 §2.1.6
            return
        for item in push.iter(q(ROSTER, "item")):
            self._apply(item)
            self.report.received("roster", jid=item.get("jid"), name=item.get("name"),
                                 subscription=item.get("subscription", "none"))
        await self.stream.send(_reply(unit))

    def _apply(self, item: Element) -> None:
        jid = policy.bare(item.get("jid"))
        if jid is None:
            return
        subscription = item.get("subscription", "none")
        if subscription == "remove":
            self.roster.pop(jid, None)
        else:
            self.roster[jid] = subscription

    async def _message(self, unit: Element) -> None:
        sender = unit.get("from")
        result = unit.find(q(MAM, "result"))
        if result is not None:
            self._archived(sender, result)
            return  # an archive result's content is the archived message's, never the wrapper's own
        if unit.get("type") == "error":
            if policy.error_accepted(sender, unit.get("id"), self.sent, flawed=self.flawed):
                self.report.received("error", **{"from": sender}, id=unit.get("id"), condition=error_condition(unit))
            return
        for direction in CARBON_DIRECTIONS:
            wrapper = unit.find(q(CARBONS, direction))
            if wrapper is not None:
                self._carbon(sender, direction, wrapper)
                return  # a carbon's content is the copied message's, never the wrapper's own
        for receipt in unit.findall(q(RECEIPTS, "received")):
            if policy.receipt_accepted(sender, receipt.get("id"), self.sent, flawed=self.flawed):
                self.report.received("receipt", **{"from": sender}, id=receipt.get("id"))
        body = unit.findtext(q(CLIENT, "body"))
        if body is None:
            return
        stanza_id = self._own_stanza_id(unit)
        if not self.shown.first_time(stanza_id, flawed=self.flawed):
            return  # XEP-0359: the same message again (an archive sync, a resumed stream, a replay)
        self.report.received("message", **{"from": sender}, body=body, id=unit.get("id"), stanza_id=stanza_id,
                             type=unit.get("type"))
        if unit.find(q(RECEIPTS, "request")) is not None and unit.get("id") and unit.get("type") != "groupchat":
            if policy.receipt_answer_allowed(sender, self.roster, flawed=self.flawed):
                await self.stream.send(message(sender, None, E("received", {"id": unit.get("id")}, ns=RECEIPTS),
                                               type_=None, id_=new_id("rcpt")))

    def _archived(self, sender: str | None, result: Element) -> None:
        if not policy.archive_result_accepted(sender, result.get("queryid"), self.archive_queries, self.own_bare,
                                              flawed=self.flawed):
            return
        archived = result.find(f"{q(FORWARD, 'forwarded')}/{q(CLIENT, 'message')}")
        body = archived.findtext(q(CLIENT, "body")) if archived is not None else None
        if body is None or not self.shown.first_time(result.get("id"), flawed=self.flawed):
            return  # nothing to show, or shown already (the result's id is the message's stanza-id)
        self.report.received("message", **{"from": archived.get("from")}, body=body, id=archived.get("id"),
                             stanza_id=result.get("id"), archived=True)

    def _carbon(self, sender: str | None, direction: str, wrapper: Element) -> None:
        if not policy.carbon_accepted(sender, self.own_bare, flawed=self.flawed):
            return  # XEP-0280 §11: someone else's "copy" of a conversation we never had
        inner = wrapper.find(f"{q(FORWARD, 'forwarded')}/{q(CLIENT, 'message')}")
        if inner is None:
            return
        body = inner.findtext(q(CLIENT, "body"))
        if body is not None:
            self.report.received("carbon", **{"from": inner.get("from")}, to=inner.get("to"), body=body,
                                 direction=direction)

    def _own_stanza_id(self, unit: Element) -> str | None:
        """The stanza-id the client's own account assigned (by = own bare JID); others prove nothing (XEP-0359 §4)."""
        for element in unit.findall(q(STANZA_ID, "stanza-id")):
            if policy.bare(element.get("by")) == self.own_bare and element.get("id"):
                return element.get("id")
        return None


def _reply(request: Element) -> Element:
    reply = iq_result(request)
    reply.attrib.pop("from", None)  # the service stamps our address
    return reply


def _error(request: Element, condition: str) -> Element:
    reply = stanza_error(request, condition)
    reply.attrib.pop("from", None)
    return reply

