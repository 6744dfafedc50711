"""The XMPP implementation of an authenticated party (presentity, watcher, sender, inbox, or mallory).

Public methods are synchronous sentences for the suite; each runs one coroutine on the harness event loop,
bounded in time. Negative checks end on a fence (RFC 6120 §10.1): the sender's and the receiver's round trips
to their server, which a server processing each stream in order cannot overtake.

The verbs for PEP (`pep.py`), stream management (`stream_management.py`) and channel binding (`channel_binding.py`)
live in sibling modules, mixed in.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Iterable

from conformance.profile import Account
from conformance.roles import Outcome, Update
from conformance.transport.connection import ConnectionClosed
from conformance.verdicts import SetupFailed, Unsupported, Violation, negative_check, note

from .client import ProtocolViolation, StreamEnded, XmppClient
from .codec.jid import JID
from .codec.stanza import (BLOCKING, CARBONS, DATA_FORMS, HINTS, LAST, MAM, PING, ROSTER, RSM,
                           error_condition, iq, kind, message, new_id, presence, q)
from .codec.xml import E, Element
from .observe import bare_of, delivers, describe, error_of, reveals
from .channel_binding import ChannelBindingVerbs
from .integrity import IntegrityVerbs
from .parser_abuse import ParserAbuseVerbs
from .pep import PepVerbs
from .runtime import Runtime
from .stream_management import StreamManagementVerbs
from .toward_clients import TowardClientsVerbs

if TYPE_CHECKING:
    from .cast import Cast

UNSUPPORTED_CONDITIONS = ("service-unavailable", "feature-not-implemented")


def _bare(who: Any) -> str:
    return who.bare if hasattr(who, "bare") else str(JID.parse(str(who)).bare)


class XmppParty(PepVerbs, StreamManagementVerbs, IntegrityVerbs, ChannelBindingVerbs, ParserAbuseVerbs,
                TowardClientsVerbs):
    def __init__(self, rt: Runtime, name: str, account: Account, cast: "Cast"):
        self.rt = rt
        self.name = name
        self.account = account
        self.cast = cast
        self.streams: list[XmppClient] = []
        self.main: XmppClient | None = None
        self.last_canary: str | None = None
        self.watchers: set[str] = set()  # contacts this party approved; its client answers their pings

    def __repr__(self) -> str:
        return self.name

    # -- identity ------------------------------------------------------------------------------------------------

    @property
    def bare(self) -> str:
        return f"{JID.parse(self.account.username + '@' + self.rt.domain).local}@{self.rt.domain}"

    @property
    def full_jid(self) -> str:
        if self.main is None or self.main.jid is None:
            raise SetupFailed(f"{self.name} is not online")
        return str(self.main.jid)

    @property
    def resource(self) -> str:
        return JID.parse(self.full_jid).resource

    # -- plumbing ------------------------------------------------------------------------------------------------

    def _call(self, fn, *args):
        return self.rt.call(fn, *args)

    async def _authenticated_stream(self, insist_on_tls: bool = True) -> XmppClient:
        """A stream on which this party has completed SASL, not yet bound."""
        client = await self.rt.secure_stream(self.name, insist=insist_on_tls)
        result = await client.authenticate(self.account.username, self.account.password)
        if not result.success:
            await client.close()
            raise SetupFailed(f"{self.name} could not log in ({result.mechanism}: <{result.condition}/>); "
                              f"check the account in the profile")
        return client

    async def _login(self, resource: str | None = None, available: bool = True,
                     insist_on_tls: bool = True) -> XmppClient:
        client = await self._authenticated_stream(insist_on_tls)
        try:
            await client.bind(resource)
        except (StreamEnded, ProtocolViolation) as exc:
            await client.close()
            raise SetupFailed(f"{self.name} could not bind a resource: {exc}") from None
        client.trusted = self.watchers
        client.start_pump()
        self.streams.append(client)
        if available:
            # RFC 6121 §2.2: request the roster before initial presence, which makes this an "interested
            # resource" to which the service delivers subscription state changes (Prosody does only then).
            try:
                await client.request(iq("get", E("query", ns=ROSTER)))
            except (StreamEnded, asyncio.TimeoutError):
                pass
            await client.send(presence())
        return client

    async def _ensure_online(self) -> XmppClient:
        if self.main is None or self.main.ended:
            self.main = await self._login()
            await self._ping()
        return self.main

    async def _iq(self, request: Element, client: XmppClient | None = None) -> Element:
        client = client or await self._ensure_online()
        try:
            return await client.request(request)
        except StreamEnded as exc:
            raise SetupFailed(f"the IUT ended {self.name}'s stream ({exc}) while answering a request") from None
        except asyncio.TimeoutError:
            raise SetupFailed(f"the IUT did not answer {self.name}'s request within "
                              f"{self.rt.timeouts.step:g}s") from None

    async def _ping(self, client: XmppClient | None = None) -> None:
        """Round trip to the own server; on return the IUT has processed everything sent before on this stream."""
        client = client or self.main
        if client is None or client.ended:
            return  # an ended stream is its own ordering point: nothing more will be processed or delivered
        try:
            await client.request(iq("get", E("ping", ns=PING), to=self.rt.domain))
        except (StreamEnded, ConnectionClosed):
            return
        except asyncio.TimeoutError:
            raise SetupFailed(f"{self.name}'s ping to its server was not answered "
                              f"within {self.rt.timeouts.step:g}s") from None

    async def _send_forged(self, element: Element) -> None:
        """Send a stanza that claims another identity. An IUT may close the stream for it (<invalid-from/>); then
        note that and log in again, so this party goes on observing like an attacker who simply reconnects."""
        await self.main.send(element)
        await self._ping()
        if self.main.ended:
            note(f"the IUT ended {self.name}'s stream after a forged 'from': {self.main.end_reason()}")
            self.main = await self._login()
            await self._ping()

    def mark(self) -> dict[int, int]:
        return {id(s): len(s.received) for s in self.streams}

    def _units_since(self, mark: dict[int, int] | None) -> Iterable[tuple[XmppClient, Element]]:
        for stream in self.streams:
            start = (mark or {}).get(id(stream), 0)
            for unit in stream.received[start:]:
                yield stream, unit

    def _update(self, kind_: str, canary: str, **extra) -> Update:
        return Update(kind=kind_, sender=self, canary=canary, marks=self.cast.marks(), fence=self._ping, **extra)

    def _resender(self, stanza: Element, update: Update):
        """`update.resend` for a stanza to another domain: a server that just failed to reach that domain may bounce
        what goes there until it tries again (ejabberd: up to s2s_max_retry_delay), which is no verdict on the
        delivery a positive control waits for. Each bounce seen (an error with the stanza's id) earns one resend."""
        answered = 0

        async def resend() -> bool:
            nonlocal answered
            bounces = [u for _, u in self._units_since(update.marks.get(self.name))
                       if u.get("type") == "error" and u.get("id") == stanza.get("id") and u.tag == stanza.tag]
            if len(bounces) <= answered or self.main is None or self.main.ended:
                return False
            answered = len(bounces)
            self.rt.recorder.event(self.name, f"the IUT bounced {update.canary} ({describe(bounces[-1])}); "
                                              f"sending it again")
            await self.main.send(stanza)
            return True
        return resend

    def _stream_trouble(self) -> str:
        """Why this party's stream may have missed a delivery (the IUT ended it, or sent more than a stream keeps),
        for the message of a delivery that did not come; empty when nothing is wrong with the stream."""
        stream = self.main
        if stream is None:
            return ""
        trouble = [stream.end_reason()] if stream.ended else []
        if stream.dropped_units:
            trouble.append(f"the IUT sent more than a stream keeps: {stream.dropped_units} units dropped after "
                           f"{len(stream.received)}")
        return f" ({stream.label}: {'; '.join(trouble)})" if trouble else ""

    async def _wait(self, predicate, timeout: float, mark: dict[int, int] | None) -> Element | None:
        """First unit since `mark`, on any of this party's streams, matching `predicate`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for _, unit in self._units_since(mark):
                if predicate(unit):
                    return unit
            remaining = deadline - loop.time()
            if remaining <= 0 or all(s.ended for s in self.streams):
                return None
            waits = [asyncio.ensure_future(s.wait_for(predicate, remaining, len(s.received))) for s in self.streams
                     if not s.ended]
            done, pending = await asyncio.wait(waits, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            for task in done:
                if task.result() is not None:
                    return task.result()

    # -- being online ----------------------------------------------------------------------------------------------

    def goes_offline(self) -> str:
        """Publish unavailable presence with a status canary, then disconnect. Returns the canary."""
        canary = self.rt.canary(f"{self.name}-offline")
        self.last_canary = canary

        async def run():
            if self.main is not None and not self.main.ended:
                await self.main.send(presence(type_="unavailable", status=canary))
                await self._ping()
                await self.main.close()
            self.main = None
        self._call(run)
        return canary

    def comes_online(self) -> None:
        """Log in again on a new stream and send initial presence (offline messages arrive now)."""
        async def run():
            self.main = await self._login()
            await self._ping()
        self._call(run)

    def leaves_security_to_the_service(self) -> None:
        """Log in again as a client that starts TLS only where the service requires it (as many do): whether the
        party's traffic is then encrypted is up to the IUT alone."""
        async def run():
            if self.main is not None and not self.main.ended:
                await self.main.close()
            self.main = await self._login(insist_on_tls=False)
            await self._ping()
        self._call(run)

    # -- arranging relationships (SetupFailed when the IUT does not go along) --------------------------------------------

    def requests_subscription_to(self, other: "XmppParty") -> None:
        async def run():
            mark = other.mark()
            await (await self._ensure_online()).send(presence(to=other.bare, type_="subscribe"))
            got = await other._wait(lambda u: kind(u) == "presence" and u.get("type") == "subscribe"
                                    and bare_of(u.get("from")) == self.bare, self.rt.timeouts.positive, mark)
            if got is None:
                raise SetupFailed(f"{other.name} never received {self.name}'s subscription request")
        self._call(run)

    def approves(self, other: "XmppParty") -> None:
        """Make `other` an authorized watcher of self: other asks, self approves, other is told."""
        async def run():
            roster = await self._roster_items()
            if roster.get(other.bare, ("none", False))[0] in ("from", "both"):
                self.watchers.add(other.bare)
                return
            mark = self.mark()
            await (await other._ensure_online()).send(presence(to=self.bare, type_="subscribe"))
            got = await self._wait(lambda u: kind(u) == "presence" and u.get("type") == "subscribe"
                                   and bare_of(u.get("from")) == other.bare, self.rt.timeouts.positive, mark)
            if got is None:
                raise SetupFailed(f"{self.name} never received {other.name}'s subscription request")
            other_mark = other.mark()
            await self.main.send(presence(to=other.bare, type_="subscribed"))
            told = await other._wait(lambda u: kind(u) == "presence" and u.get("type") == "subscribed"
                                     and bare_of(u.get("from")) == self.bare, self.rt.timeouts.positive, other_mark)
            if told is None:
                raise SetupFailed(f"{other.name} was never told that {self.name} approved the subscription")
            self.watchers.add(other.bare)
            await self._ping()
            await other._ping()
        self._call(run)

    def refuses(self, other: "XmppParty") -> None:
        """Refuse `other`'s pending request (or cancel its subscription): presence type 'unsubscribed'."""
        self._send_and_confirm(other, "unsubscribed")

    def revokes(self, other: "XmppParty") -> None:
        """Cancel `other`'s existing subscription to self's presence."""
        self._send_and_confirm(other, "unsubscribed")

    def _send_and_confirm(self, other: "XmppParty", ptype: str) -> None:
        async def run():
            mark = other.mark()
            await (await self._ensure_online()).send(presence(to=other.bare, type_=ptype))
            told = await other._wait(lambda u: kind(u) == "presence" and u.get("type") == ptype
                                     and bare_of(u.get("from")) == self.bare, self.rt.timeouts.positive, mark)
            if told is None:
                raise SetupFailed(f"{other.name} never received {self.name}'s '{ptype}'")
        self._call(run)

    def adds_contact(self, other: "XmppParty") -> None:
        """Put `other` into the own roster (no subscription)."""
        async def run():
            item = E("item", {"jid": other.bare}, ns=ROSTER)
            answer = await self._iq(iq("set", E("query", None, item, ns=ROSTER)))
            if answer.get("type") != "result":
                raise SetupFailed(f"{self.name} could not add {other.name} to its roster: <{error_condition(answer)}/>")
        self._call(run)

    def blocks(self, other: "XmppParty | str") -> None:
        """XEP-0191 block of another party, or of a JID given as text (for identity variants)."""
        jid = other if isinstance(other, str) else other.bare

        async def run():
            answer = await self._iq(iq("set", E("block", None, E("item", {"jid": jid}, ns=BLOCKING), ns=BLOCKING)))
            self._require_feature(answer, "blocking (XEP-0191)")
            if answer.get("type") != "result":
                raise SetupFailed(f"the IUT refused {self.name}'s block of {jid}: <{error_condition(answer)}/>")
        self._call(run)

    def unblocks(self, other: "XmppParty") -> None:
        async def run():
            answer = await self._iq(iq("set", E("unblock", None, E("item", {"jid": other.bare}, ns=BLOCKING),
                                                ns=BLOCKING)))
            if answer.get("type") != "result":
                raise SetupFailed(f"the IUT refused {self.name}'s unblock of {other.name}: <{error_condition(answer)}/>")
        self._call(run)

    @staticmethod
    def _require_feature(answer: Element, feature: str) -> None:
        if answer.get("type") == "error" and error_condition(answer) in UNSUPPORTED_CONDITIONS:
            raise Unsupported(f"the IUT does not offer {feature} (<{error_condition(answer)}/>)")

    # -- reading own state ---------------------------------------------------------------------------------------------

    async def _roster_items(self) -> dict[str, tuple[str, bool]]:
        answer = await self._iq(iq("get", E("query", ns=ROSTER)))
        if answer.get("type") != "result":
            raise SetupFailed(f"{self.name} cannot read its own roster: <{error_condition(answer)}/>")
        return {bare_of(item.get("jid")) or item.get("jid"): (item.get("subscription", "none"),
                                                              item.get("ask") == "subscribe")
                for item in answer.iter(q(ROSTER, "item"))}

    def roster(self) -> dict[str, tuple[str, bool]]:
        """Own roster: contact bare JID -> (subscription, pending outbound request)."""
        return self._call(self._roster_items)

    def subscription_to(self, other: "XmppParty") -> str:
        """Own roster's subscription state for `other` ('none' when absent)."""
        return self.roster().get(other.bare, ("none", False))[0]

    def blocklist(self) -> list[str]:
        async def run():
            answer = await self._iq(iq("get", E("blocklist", ns=BLOCKING)))
            self._require_feature(answer, "blocking (XEP-0191)")
            if answer.get("type") != "result":
                raise SetupFailed(f"{self.name} cannot read its own blocklist: <{error_condition(answer)}/>")
            return sorted(bare_of(i.get("jid")) or i.get("jid", "") for i in answer.iter(q(BLOCKING, "item")))
        return self._call(run)

    def archive(self) -> Outcome:
        """Query the own message archive (XEP-0313)."""
        return self._call(self._mam_query, None)

    def enables_carbons(self) -> None:
        async def run():
            answer = await self._iq(iq("set", E("enable", ns=CARBONS)))
            self._require_feature(answer, "message carbons (XEP-0280)")
            if answer.get("type") != "result":
                raise SetupFailed(f"{self.name} could not enable carbons: <{error_condition(answer)}/>")
        self._call(run)

    # -- publishing ------------------------------------------------------------------------------------------------------

    def publishes_presence(self) -> Update:
        """Broadcast available presence whose status is a fresh canary."""
        canary = self.rt.canary(f"{self.name}-status")
        self.last_canary = canary

        async def run():
            await self._ensure_online()
            update = self._update("presence", canary)
            await self.main.send(presence(status=canary))
            return update
        return self._call(run)

    def sends_message(self, to: "XmppParty | str", *, claiming: "XmppParty | None" = None,
                      archive: bool = True) -> Update:
        """A chat message with a canary body; `claiming` forges the 'from' attribute; `archive=False` asks the
        service to keep it out of permanent storage (XEP-0334 <no-permanent-store/>), so that a message archive
        cannot stand in for its delivery."""
        canary = self.rt.canary(f"{self.name}-msg")
        address = to if isinstance(to, str) else to.bare
        hint = None if archive else E("no-permanent-store", ns=HINTS)

        async def run():
            await self._ensure_online()
            update = self._update("message", canary)
            if claiming is None:
                stanza = message(address, canary, hint)
                update.resend = self._resender(stanza, update) if isinstance(to, str) else None
                await self.main.send(stanza)
                await self._ping()  # processed (stored or delivered) before the test goes on
            else:
                await self._send_forged(message(address, canary, hint, from_=claiming.full_jid))
            return update
        return self._call(run)

    def publishes_presence_to(self, address: str) -> Update:
        """Directed presence with a canary status to an address (RFC 6121 §4.6), e.g. a user of another domain."""
        canary = self.rt.canary(f"{self.name}-directed")

        async def run():
            await self._ensure_online()
            update = self._update("presence", canary, reveal_availability=False)
            stanza = presence(to=address, status=canary, id_=new_id("p"))
            update.resend = self._resender(stanza, update)
            await self.main.send(stanza)
            await self._ping()
            return update
        return self._call(run)

    def sends_presence(self, *, claiming: "XmppParty") -> Update:
        """Broadcast presence with a canary status while claiming another party's identity."""
        canary = self.rt.canary(f"{self.name}-forged-status")

        async def run():
            await self._ensure_online()
            update = self._update("presence", canary, reveal_availability=False)
            await self._send_forged(presence(status=canary, from_=claiming.full_jid))
            return update
        return self._call(run)

    def sends_subscription_request(self, to: "XmppParty", *, claiming: "XmppParty") -> Update:
        """A subscription request to `to` that claims to come from another party (canary in its status)."""
        canary = self.rt.canary(f"{self.name}-forged-subscribe")

        async def run():
            await self._ensure_online()
            update = self._update("presence", canary, reveal_availability=False)
            await self._send_forged(presence(to=to.bare, type_="subscribe", status=canary, from_=claiming.bare))
            return update
        return self._call(run)

    def sends_approval(self, to: "XmppParty", *, claiming: "XmppParty | None" = None) -> Update:
        """Send 'subscribed' to `to`, unsolicited or claiming to be another party (canary in its status)."""
        canary = self.rt.canary(f"{self.name}-approval")

        async def run():
            await self._ensure_online()
            update = self._update("presence", canary, reveal_availability=False)
            approval = presence(to=to.bare, type_="subscribed", status=canary, from_=claiming.bare if claiming else None)
            if claiming is None:
                await self.main.send(approval)
            else:
                await self._send_forged(approval)
            return update
        return self._call(run)

    def sends_cancellation(self, to: "XmppParty") -> None:
        """Send 'unsubscribed' to `to`, whatever the relationship."""
        async def run():
            await (await self._ensure_online()).send(presence(to=to.bare, type_="unsubscribed"))
            await self._ping()
        self._call(run)

    def probes(self, other: "XmppParty") -> Update:
        """Ask the service for `other`'s current presence (a presence probe, i.e. a fetch)."""
        async def run():
            await self._ensure_online()
            update = Update(kind="presence", sender=other, canary=other.last_canary or "", marks={self.name: self.mark()},
                            fence=self._ping)
            await self.main.send(presence(to=other.bare, type_="probe"))
            return update
        return self._call(run)

    # -- observing ---------------------------------------------------------------------------------------------------------

    def receives(self, update: Update, *, within: float | None = None) -> Element:
        """`update` is delivered to this party within T_POS (or `within`)."""
        timeout = within or self.rt.timeouts.positive

        async def run():
            if self.name not in update.marks:
                raise SetupFailed(f"{self.name} was not observing when {update.sender} sent this")
            got = await self._wait(lambda u: delivers(u, update), timeout, update.marks[self.name])
            if got is None:
                raise Violation(f"{self.name} did not receive {update.sender}'s {update.kind} "
                                f"({update.canary}) within {timeout:g}s{self._stream_trouble()}")
            return got
        return self._call(run)

    def delay_of(self, update: Update, *, within: float | None = None) -> float | None:
        """Seconds from `update`'s sending to its delivery to this party, or None when it did not arrive within
        T_POS (or `within`). An observation, not a check: the caller states what the delays must satisfy."""
        timeout = within or self.rt.timeouts.positive

        async def run():
            if self.name not in update.marks:
                raise SetupFailed(f"{self.name} was not observing when {update.sender} sent this")
            got = await self._wait(lambda u: delivers(u, update), timeout, update.marks[self.name])
            return None if got is None else time.monotonic() - update.sent_at
        return self._call(run)

    def does_not_receive(self, update: Update, *, attributed_to: "XmppParty | None" = None) -> None:
        """Nothing disclosing `update` reaches this party (only what claims to be from `attributed_to`, if given).

        Ends on a fence: the sender's round trip, then this party's, so everything the IUT routed is in."""
        negative_check(f"{self.name} does not receive {update.sender}'s {update.kind}")

        async def run():
            if self.name not in update.marks:
                raise SetupFailed(f"{self.name} was not observing when {update.sender} sent this")
            if update.fence is not None:
                await update.fence()
            await self._ping()
            if self.main is None or self.main.ended:
                raise SetupFailed(f"{self.name} was not connected at the end of the observation, so her not "
                                  f"receiving {update.sender}'s {update.kind} proves nothing")
            sender_stream = getattr(update.sender, "main", None)
            if isinstance(update.sender, XmppParty) and (sender_stream is None or sender_stream.ended) and \
                    update.sender.streams and update.sender.streams[-1].stream_error is not None:
                note(f"the IUT ended {update.sender.name}'s stream: {update.sender.streams[-1].end_reason()}")
            for stream, unit in self._units_since(update.marks[self.name]):
                if not reveals(unit, update) or error_of(unit) is not None:
                    continue
                if attributed_to is not None and bare_of(unit.get("from")) != attributed_to.bare:
                    continue
                who = f" attributed to {attributed_to.name}" if attributed_to else ""
                raise Violation(f"{self.name} ({stream.label}) received {update.sender}'s {update.kind}{who}: "
                                f"{describe(unit)}")
        self._call(run)

    def has_received_once(self, update: Update) -> None:
        """`update` reached this party exactly once: no copy of it (a replay, a duplicate) since the first.

        Ends on a fence (the sender's round trip, then this party's) like `does_not_receive`."""
        negative_check(f"{self.name} receives {update.sender}'s {update.kind} no second time")

        async def run():
            if update.fence is not None:
                await update.fence()
            await self._ping()
            copies = [(stream, unit) for stream, unit in self._units_since(update.marks[self.name])
                      if delivers(unit, update)]
            if not copies:
                raise Violation(f"{self.name} never received {update.sender}'s {update.kind} ({update.canary})")
            if len(copies) > 1:
                raise Violation(f"{self.name} received {update.sender}'s {update.kind} {len(copies)} times: "
                                + "; ".join(f"{stream.label}: {describe(unit)}" for stream, unit in copies[:3]))
        self._call(run)

    def receives_unavailable_from(self, other: "XmppParty", *, since: Update) -> None:
        """Unavailable presence from `other` arrives within T_POS of a revocation made after `since`."""
        mark = since.marks[self.name]

        async def run():
            got = await self._wait(lambda u: kind(u) == "presence" and u.get("type") == "unavailable"
                                   and bare_of(u.get("from")) == other.bare, self.rt.timeouts.positive, mark)
            if got is None:
                raise Violation(f"{self.name} was not sent unavailable presence from {other.name} within "
                                f"{self.rt.timeouts.positive:g}s of the revocation")
        self._call(run)

    def stays_connected(self) -> None:
        async def run():
            await self._ping()
            if self.main is None or self.main.ended:
                raise Violation(f"{self.name}'s session was ended by the IUT: "
                                f"{self.main.end_reason() if self.main else 'no session'}")
        self._call(run)

    # -- requests on someone else's data (the attacks of mallory) ---------------------------------------------------------

    async def _answer_or_refusal(self, request: Element, kind_: type[Outcome] = Outcome) -> Element | Outcome:
        """The IUT's answer to `request`, or, if it closed the stream or said nothing, that refusal as `kind_`."""
        client = await self._ensure_online()
        try:
            return await client.request(request)
        except StreamEnded as exc:
            note(f"the IUT closed {self.name}'s stream: {exc}")
            return kind_(refused=True, condition=exc.condition or "stream closed", detail=str(exc))
        except asyncio.TimeoutError:
            return kind_(refused=True, condition=None, detail="no answer")

    async def _ask(self, request: Element) -> Outcome:
        answer = await self._answer_or_refusal(request)
        if isinstance(answer, Outcome):
            return answer
        if answer.get("type") == "error":
            return Outcome(refused=True, condition=error_condition(answer), detail=describe(answer))
        return Outcome(refused=False, data=list(answer.iter()), detail=describe(answer))

    def reads_watchers_of(self, other: "XmppParty") -> Outcome:
        """Ask for `other`'s watcher information (XMPP: a roster get to their bare JID)."""
        async def run():
            outcome = await self._ask(iq("get", E("query", ns=ROSTER), to=other.bare))
            outcome.data = [e.get("jid") for e in outcome.data if e.tag == q(ROSTER, "item")]
            return outcome
        return self._call(run)

    def changes_permissions_of(self, other: "XmppParty", *, grant: "XmppParty") -> Outcome:
        """Try to add `grant` as a subscriber in `other`'s roster (a roster set to their bare JID)."""
        item = E("item", {"jid": grant.bare, "subscription": "both"}, ns=ROSTER)
        return self._call(self._ask, iq("set", E("query", None, item, ns=ROSTER), to=other.bare))

    def unblocks_on_behalf_of(self, other: "XmppParty", target: "XmppParty") -> Outcome:
        """Try to remove `target` from `other`'s blocklist (an unblock to their bare JID)."""
        unblock = E("unblock", None, E("item", {"jid": target.bare}, ns=BLOCKING), ns=BLOCKING)
        return self._call(self._ask, iq("set", unblock, to=other.bare))

    def grants_itself_subscription_to(self, other: "XmppParty") -> Outcome:
        """Roster set of the own item for `other` with subscription='both' approved='true' (a self-grant)."""
        item = E("item", {"jid": other.bare, "subscription": "both", "approved": "true"}, ns=ROSTER)
        return self._call(self._ask, iq("set", E("query", None, item, ns=ROSTER)))

    def asks_last_activity_of(self, other: "XmppParty") -> Outcome:
        """XEP-0012 last activity of `other`'s bare JID."""
        return self._call(self._ask, iq("get", E("query", ns=LAST), to=other.bare))

    def pings(self, address: str) -> Outcome:
        return self._call(self._ask, iq("get", E("ping", ns=PING), to=address))

    def reads_archive_of(self, other: "XmppParty") -> Outcome:
        return self._call(self._mam_query, other.bare)

    async def _mam_query(self, owner: str | None) -> Outcome:
        client = await self._ensure_online()
        queryid = new_id("q")
        mark = {id(client): len(client.received)}
        form = E("x", {"type": "submit"}, E("field", {"var": "FORM_TYPE", "type": "hidden"},
                                            E("value", text=MAM, ns=DATA_FORMS), ns=DATA_FORMS), ns=DATA_FORMS)
        outcome = await self._ask(iq("set", E("query", {"queryid": queryid}, form,
                                              E("set", None, E("max", text="200", ns=RSM), E("before", ns=RSM), ns=RSM), ns=MAM), to=owner))
        if outcome.refused and owner is None:
            if outcome.condition in UNSUPPORTED_CONDITIONS:
                raise Unsupported(f"the IUT does not offer a message archive (XEP-0313): <{outcome.condition}/>")
        results = [describe(u, 2000) for s, u in self._units_since(mark) if s is client and kind(u) == "message"
                   and u.find(f"{q(MAM, 'result')}") is not None and u.find(q(MAM, "result")).get("queryid") == queryid]
        outcome.data = results
        return outcome

    def logs_in_as(self, other: "XmppParty") -> Outcome:
        """Authenticate with own credentials but ask to act as `other` (SASL authzid), with every offered mechanism."""
        async def run():
            probe = await self.rt.secure_stream(self.name)
            offered = [m for m in probe.mechanisms() if m in ("SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN")]
            await probe.close()
            if not offered:
                raise Unsupported("the IUT offers none of SCRAM-SHA-256, SCRAM-SHA-1, PLAIN")
            granted = []
            for mechanism in offered:
                client = await self.rt.secure_stream(self.name)
                result = await client.authenticate(self.account.username, self.account.password,
                                                   mechanism=mechanism, authzid=other.bare)
                if not result.success:
                    note(f"{mechanism} with authzid {other.bare}: <{result.condition}/>")
                    await client.close()
                    continue
                try:
                    jid = await client.bind()
                except (StreamEnded, ProtocolViolation) as exc:
                    note(f"{mechanism} with authzid accepted, but binding failed: {exc}")
                    await client.close()
                    continue
                client.start_pump()
                self.streams.append(client)  # it is mallory's too: whatever reaches it reached mallory
                await client.send(presence())
                if str(jid.bare) == other.bare:
                    granted.append(f"{mechanism} → bound {jid}")
                else:
                    note(f"{mechanism}: the IUT ignored the authzid {other.bare} and bound {jid}; "
                         f"RFC 6120 §6.3.8 expects <invalid-authzid/>")
            return Outcome(refused=not granted, data=granted, detail="; ".join(granted))
        return self._call(run)

    def binds_another_session(self, resource: str) -> str:
        """Log in on a second stream asking for a given resource; returns the JID the IUT bound."""
        async def run():
            client = await self._login(resource=resource)
            await self._ping(client)
            return str(client.jid)
        return self._call(run)
