"""IQs the service answers on an account's behalf: roster (RFC 6121 §2), blocking (XEP-0191), last activity
(XEP-0012), message archive (XEP-0313 subset), carbons (XEP-0280), PEP (XEP-0163, in `pep.py`), disco, ping.

Every handler decides first *who asks*: the owner manages their own data; anyone else gets an error, except
where the protocol grants access (last activity to authorized watchers).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

from conformance.adapters.xmpp.codec.jid import JID, JidError
from conformance.adapters.xmpp.codec.stanza import (BLOCKING, CARBONS, DATA_FORMS, DELAY, DISCO_INFO, FORWARD, LAST,
                                                    MAM, PING, PUBSUB, PUBSUB_OWNER, ROSTER, RSM, SESSION, iq,
                                                    iq_result, q, stanza_error)
from conformance.adapters.xmpp.codec.xml import E, Element, split

if TYPE_CHECKING:
    from .c2s import Session
    from .service import Service

MAX_MAM_RESULTS = 500
ARCHIVE_HOLD_SECONDS = 30.0  # the longest the stand-in holds an archive query open


BLOCKING_LOOKUP = 0.015  # seconds; the flaw 'fetch-flood-unthrottled' only


class AccountIq:
    def __init__(self, service: "Service"):
        self.service = service
        self.store = service.store
        self._held: set[asyncio.Task] = set()  # archive answers waiting for the stand-in's gate

    # -- entry points ------------------------------------------------------------------------------------------------

    def handle(self, session: "Session | None", requester: JID, owner: str, request: Element) -> None:
        """An IQ get/set to `owner`'s bare JID (or to no one, when owner is the requester)."""
        child = request[0] if len(request) else None
        if child is None or len(request) != 1:
            self.reply(requester, stanza_error(request, "bad-request", "modify"))
            return
        ns, local = split(child.tag)
        is_owner = requester.local == owner and requester.domain == self.service.config.domain
        early_blocking = ns == BLOCKING and self.service.flawed("blocklist-writable-by-others")
        if not is_owner and not early_blocking and self.service.blocking.blocks(owner, requester):
            self.reply(requester, stanza_error(request, "service-unavailable"))
            return
        handler = {ROSTER: self.roster, BLOCKING: self.blocking, LAST: self.last, MAM: self.mam,
                   DISCO_INFO: self.disco_account, PING: self.ping, CARBONS: self.carbons,
                   SESSION: self.session_establishment, PUBSUB: self.service.pep.handle,
                   PUBSUB_OWNER: self.service.pep.handle_owner}.get(ns)
        if handler is None:
            self.reply(requester, stanza_error(request, "service-unavailable"))
            return
        handler(session, requester, owner, is_owner, request, child)

    def reply(self, requester: JID, answer: Element) -> None:
        self.service.deliver_direct(requester, answer)

    # -- roster ------------------------------------------------------------------------------------------------------

    def roster_element(self, owner: str) -> Element:
        query = E("query", ns=ROSTER)
        for contact, item in sorted(self.store.roster(owner).items()):
            query.append(self._item_element(item))
        return query

    @staticmethod
    def _item_element(item) -> Element:
        element = E("item", {"jid": item.jid, "subscription": item.subscription, "name": item.name,
                             "ask": "subscribe" if item.ask else None}, ns=ROSTER)
        for group in item.groups:
            element.append(E("group", text=group, ns=ROSTER))
        return element

    def push_roster_item(self, owner: str, contact: str) -> None:
        item = self.store.item(owner, contact)
        from .store import RosterItem
        element = self._item_element(item) if item is not None else \
            self._item_element(RosterItem(jid=contact, subscription="remove"))
        for session in self.service.sessions_of(owner):
            session.send(iq("set", E("query", None, element, ns=ROSTER), to=str(session.jid)))

    def roster(self, session, requester: JID, owner: str, is_owner: bool, request: Element, query: Element) -> None:
        if not is_owner:
            readable = request.get("type") == "get" and self.service.flawed("roster-readable-by-others")
            writable = request.get("type") == "set" and self.service.flawed("roster-writable-by-others")
            if not (readable or writable):
                # RFC 6121 §2.1.5 / §2.3.3: only the owner may read or change a roster.
                self.reply(requester, stanza_error(request, "forbidden", "auth"))
                return
        if request.get("type") == "get":
            self.reply(requester, iq_result(request, self.roster_element(owner)))
            return
        items = query.findall(q(ROSTER, "item"))
        if len(items) != 1:
            self.reply(requester, stanza_error(request, "bad-request", "modify"))
            return
        element = items[0]
        try:
            contact = str(JID.parse(element.get("jid", "")).bare)
        except JidError:
            self.reply(requester, stanza_error(request, "jid-malformed", "modify"))
            return
        if element.get("subscription") == "remove":
            self._remove_contact(owner, contact)
        else:
            self._set_contact(owner, contact, element)
        self.reply(requester, iq_result(request))

    def _set_contact(self, owner: str, contact: str, element: Element) -> None:
        from .store import SUBSCRIPTIONS, RosterItem
        roster = self.store.roster(owner)
        item = roster.setdefault(contact, RosterItem(jid=contact))
        item.name = element.get("name")
        item.groups = [g.text or "" for g in element.findall(q(ROSTER, "group"))]
        if self.service.flawed("roster-set-honours-subscription"):
            wanted = element.get("subscription")
            if wanted in SUBSCRIPTIONS:
                item.subscription = wanted
        # RFC 6121 §2.1.2.5: otherwise the 'subscription' and 'approved' attributes of a roster set are ignored.
        self.store.save()
        self.push_roster_item(owner, contact)

    def _remove_contact(self, owner: str, contact: str) -> None:
        from conformance.adapters.xmpp.codec.stanza import presence
        item = self.store.item(owner, contact)
        pending = self.store.pending_in.get(owner, {})
        user = JID.parse(f"{owner}@{self.service.config.domain}")
        target = JID.parse(contact)
        presences = self.service.presence
        # RFC 6121 §2.5.2: removing an item cancels subscriptions in both directions.
        if item is not None and (item.has_to or item.ask):
            presences.outbound(None, user, presence(to=contact, type_="unsubscribe"), target)
        if (item is not None and item.has_from) or contact in pending:
            presences.outbound(None, user, presence(to=contact, type_="unsubscribed"), target)
        self.store.roster(owner).pop(contact, None)
        pending.pop(contact, None)
        self.store.save()
        self.push_roster_item(owner, contact)

    # -- blocking ----------------------------------------------------------------------------------------------------

    def blocking(self, session, requester: JID, owner: str, is_owner: bool, request: Element, child: Element) -> None:
        _, action = split(child.tag)
        if not is_owner and not (request.get("type") == "set" and self.service.flawed("blocklist-writable-by-others")):
            self.reply(requester, stanza_error(request, "forbidden", "auth"))
            return
        blocking = self.service.blocking
        if request.get("type") == "get" and action == "blocklist":
            answer = E("blocklist", None, *(E("item", {"jid": j}, ns=BLOCKING) for j in blocking.items(owner)),
                       ns=BLOCKING)
            self.reply(requester, iq_result(request, answer))
            return
        if request.get("type") != "set" or action not in ("block", "unblock"):
            self.reply(requester, stanza_error(request, "bad-request", "modify"))
            return
        jids = [item.get("jid", "") for item in child.findall(q(BLOCKING, "item"))]
        if action == "block":
            ok = bool(jids) and blocking.block(owner, jids)
        else:
            ok = blocking.unblock(owner, jids or None)
        self.reply(requester, iq_result(request) if ok else stanza_error(request, "jid-malformed", "modify"))

    # -- last activity (XEP-0012) ------------------------------------------------------------------------------------

    def last(self, session, requester: JID, owner: str, is_owner: bool, request: Element, child: Element) -> None:
        if not is_owner and session is not None:
            if self.service.flawed("fetch-flood-unthrottled"):
                # Flaw: no limit on fetches, and each is answered from a synchronous lookup (here: 15 ms of a
                # blocking call, as a database query on the event loop would take) that holds up everything else.
                time.sleep(BLOCKING_LOOKUP)
            elif not session.fetches.take():
                # IMPP-5.3-1: a watcher fetching faster than the service allows is told to slow down
                # (RFC 6120 §8.3.3.12), while presence broadcasts to subscribers go on.
                self.reply(requester, stanza_error(request, "policy-violation", "wait", "fetching too fast"))
                return
        item = self.store.item(owner, str(requester.bare))
        authorized = is_owner or (item is not None and item.has_from)
        if not authorized and not self.service.flawed("last-activity-leaks"):
            # XEP-0012 §4: only entities authorized to see the user's presence may know their last activity.
            self.reply(requester, stanza_error(request, "forbidden", "auth"))
            return
        if self.service.available_sessions(owner):
            seconds = 0
        else:
            seconds = int(time.time() - self.store.last_seen.get(owner, time.time()))
        self.reply(requester, iq_result(request, E("query", {"seconds": str(max(seconds, 0))}, ns=LAST)))

    # -- message archive (XEP-0313 subset) ----------------------------------------------------------------------------

    def mam(self, session, requester: JID, owner: str, is_owner: bool, request: Element, query: Element) -> None:
        if not is_owner and not self.service.flawed("mam-readable-by-others"):
            # XEP-0313 §8.1: an archive may be queried by its owner only.
            self.reply(requester, stanza_error(request, "forbidden", "auth"))
            return
        if request.get("type") != "set":
            self.reply(requester, stanza_error(request, "bad-request", "modify"))
            return
        with_filter = None
        form = query.find(q(DATA_FORMS, "x"))
        if form is not None:
            for field in form.findall(q(DATA_FORMS, "field")):
                if field.get("var") == "with":
                    with_filter = field.findtext(q(DATA_FORMS, "value"))
        max_text = query.findtext(f"{q(RSM, 'set')}/{q(RSM, 'max')}")
        limit = min(int(max_text), MAX_MAM_RESULTS) if max_text and max_text.isdigit() else MAX_MAM_RESULTS
        gate = self.service.archive_gate
        if gate is not None and not gate.is_set():  # the stand-in holds the query open for a while (bounded)
            async def later() -> None:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(gate.wait(), ARCHIVE_HOLD_SECONDS)
                self._mam_answer(requester, request, query, owner, with_filter, limit)
            task = asyncio.get_running_loop().create_task(later())
            self._held.add(task)
            task.add_done_callback(self._held.discard)
            return
        self._mam_answer(requester, request, query, owner, with_filter, limit)

    def _mam_answer(self, requester: JID, request: Element, query: Element, owner: str, with_filter: str | None,
                    limit: int) -> None:
        """The archive as it is now (a held query also returns what was archived while it waited)."""
        entries = [e for e in self.service.archive_of(owner)
                   if with_filter is None or with_filter in (e["with"], e["with"].split("/")[0])][-limit:]
        queryid = query.get("queryid")
        for entry in entries:
            forwarded = E("forwarded", None, E("delay", {"stamp": entry["stamp"]}, ns=DELAY),
                          self.service.parse_stored(entry["xml"]), ns=FORWARD)
            result = E("result", {"queryid": queryid, "id": entry["id"]}, forwarded, ns=MAM)
            self.reply(requester, E("{jabber:client}message", {"to": str(requester), "from": f"{owner}@{self.service.config.domain}"},
                                    result))
        rsm = E("set", None, E("first", text=entries[0]["id"], ns=RSM) if entries else None,
                E("last", text=entries[-1]["id"], ns=RSM) if entries else None,
                E("count", text=str(len(entries)), ns=RSM), ns=RSM)
        self.reply(requester, iq_result(request, E("fin", {"complete": "true"}, rsm, ns=MAM)))

    # -- carbons, disco, ping, session --------------------------------------------------------------------------------

    def carbons(self, session, requester: JID, owner: str, is_owner: bool, request: Element, child: Element) -> None:
        _, action = split(child.tag)
        if not is_owner or session is None or action not in ("enable", "disable") or request.get("type") != "set":
            self.reply(requester, stanza_error(request, "bad-request", "modify"))
            return
        session.carbons = action == "enable"
        self.reply(requester, iq_result(request))

    def disco_account(self, session, requester: JID, owner: str, is_owner: bool, request: Element,
                      child: Element) -> None:
        pep = self.service.pep
        answer = E("query", None, E("identity", {"category": "account", "type": "registered"}, ns=DISCO_INFO),
                   pep.disco_identity(),
                   *(E("feature", {"var": f}, ns=DISCO_INFO) for f in [MAM, *pep.disco_features()]), ns=DISCO_INFO)
        self.reply(requester, iq_result(request, answer))

    def ping(self, session, requester: JID, owner: str, is_owner: bool, request: Element, child: Element) -> None:
        if is_owner:
            self.reply(requester, iq_result(request))
        else:
            self.reply(requester, stanza_error(request, "service-unavailable"))

    def session_establishment(self, session, requester: JID, owner: str, is_owner: bool, request: Element,
                              child: Element) -> None:
        self.reply(requester, iq_result(request))  # RFC 3921 session establishment: a no-op today
