"""Presence and subscriptions (RFC 6121 §3 and §4): the heart of who may see whose presence.

Presence is broadcast only to contacts whose subscription is 'from' or 'both' and who are not blocked; probes are
answered only for the same contacts; subscription state changes only by the protocol's own handshakes.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from conformance.adapters.xmpp.codec.jid import JID
from conformance.adapters.xmpp.codec.stanza import CLIENT, presence, q
from conformance.adapters.xmpp.codec.xml import Element, to_bytes

if TYPE_CHECKING:
    from .c2s import Session
    from .service import Service

SUBSCRIPTION_TYPES = ("subscribe", "subscribed", "unsubscribe", "unsubscribed")


class Presence:
    def __init__(self, service: "Service"):
        self.service = service
        self.store = service.store
        self.last_unavailable: dict[str, Element] = {}  # user -> their last unavailable presence (for probes)

    # -- delivery helpers -----------------------------------------------------------------------------------------

    def send_to_contact(self, contact: str, stanza: Element) -> None:
        """Deliver a presence stanza to every available resource of a local contact (bare JID string), or to a
        contact of another domain through that domain's server (outbound s2s)."""
        jid = JID.parse(contact)
        if jid.domain != self.service.config.domain:
            copy_ = copy.deepcopy(stanza)
            copy_.set("to", str(jid))
            self.service.deliver_direct(jid, copy_)
            return
        for session in self.service.available_sessions(jid.local):
            copy_ = copy.deepcopy(stanza)
            copy_.set("to", str(session.jid))
            session.send(copy_)

    def _push_roster(self, owner: str, contact: str) -> None:
        self.service.account_iq.push_roster_item(owner, contact)

    def watchers(self, owner: str) -> list[str]:
        """Contacts that may receive `owner`'s broadcast presence."""
        result = []
        for contact, item in self.store.roster(owner).items():
            if not item.has_from:
                continue
            if not self.service.flawed("presence-ignores-blocklist") and \
                    self.service.blocking.blocks(owner, JID.parse(contact)):
                continue
            result.append(contact)
        if self.service.flawed("presence-to-pending-subscribers"):
            result.extend(c for c in self.store.pending_in.get(owner, {}) if c not in result)
        return result

    # -- outbound presence from a client ------------------------------------------------------------------------

    def outbound(self, session: "Session | None", sender: JID, stanza: Element, to: JID | None) -> None:
        ptype = stanza.get("type")
        if ptype in SUBSCRIPTION_TYPES:
            if to is None or to.local is None:
                return
            stanza.set("from", str(sender.bare))  # RFC 6121 §3: subscription stanzas carry the bare JID
            stanza.set("to", str(to.bare))
            getattr(self, f"_out_{ptype}")(sender.bare, to.bare, stanza)
        elif ptype == "probe":
            if (session is not None and not self.service.flawed("fetch-flood-unthrottled")
                    and not session.fetches.take()):
                return  # IMPP-5.3-1: probing faster than the service allows; a probe has no error to answer with
            if to is not None and to.local is not None:
                if to.domain != self.service.config.domain:  # RFC 6121 §4.3.1: the contact's server answers
                    stanza.set("from", str(sender.bare))
                    stanza.set("to", str(to.bare))
                    self.service.deliver_direct(to.bare, stanza)
                else:
                    self.inbound_probe(to.local, sender.bare)
        elif ptype == "error":
            if to is not None:
                self.service.deliver_direct(to, stanza)
        elif to is None:
            self.broadcast(session, sender, stanza)
        else:
            self.directed(session, sender, stanza, to)

    def broadcast(self, session: "Session | None", sender: JID, stanza: Element) -> None:
        if self.service.flawed("presence-extensions-dropped"):
            # Flaw: presence rebuilt from the fields the service understands; everything else is lost.
            for child in list(stanza):
                if child.tag not in (q(CLIENT, "show"), q(CLIENT, "status"), q(CLIENT, "priority")):
                    stanza.remove(child)
        unavailable = stanza.get("type") == "unavailable"
        owner = sender.local
        initial = session is not None and not session.available and not unavailable
        for contact in self.watchers(owner):
            self.send_to_contact(contact, stanza)
        for other in self.service.available_sessions(owner):
            if other is not session:
                copy_ = copy.deepcopy(stanza)
                copy_.set("to", str(other.jid))
                other.send(copy_)
        if session is None:
            return
        if unavailable:
            self.last_unavailable[owner] = copy.deepcopy(stanza)
            for target in list(session.directed):
                self.service.deliver_direct(JID.parse(target), copy.deepcopy(stanza))
            session.directed.clear()
            session.available = False
            session.presence = None
            return
        session.presence = copy.deepcopy(stanza)
        session.available = True
        if initial:
            self._on_initial_presence(session)

    def _on_initial_presence(self, session: "Session") -> None:
        owner = session.jid.local
        # RFC 6121 §4.3: probe the contacts this user is subscribed to (local contacts answer directly, other
        # domains' servers through outbound s2s).
        user = JID.parse(f"{owner}@{self.service.config.domain}")
        for contact, item in self.store.roster(owner).items():
            if item.has_to:
                contact_jid = JID.parse(contact)
                if contact_jid.domain != self.service.config.domain:
                    self.service.deliver_direct(contact_jid, presence(to=contact, type_="probe", from_=str(user)))
                else:
                    self.inbound_probe(contact_jid.local, user, only=session)
        for other in self.service.available_sessions(owner):
            if other is not session and other.presence is not None:
                copy_ = copy.deepcopy(other.presence)
                copy_.set("to", str(session.jid))
                session.send(copy_)
        # RFC 6121 §3.1.3: pending inbound subscription requests are (re)delivered on login.
        for requester, raw in self.store.pending_in.get(owner, {}).items():
            request = presence(to=str(session.jid.bare), type_="subscribe", from_=requester)
            session.send(request)
        self.service.flush_offline(session)

    def directed(self, session: "Session | None", sender: JID, stanza: Element, to: JID) -> None:
        if self.service.blocking.blocks(sender.local, to):
            return  # XEP-0191: nothing goes to a blocked entity
        if session is not None:
            if stanza.get("type") == "unavailable":
                session.directed.discard(str(to))
            else:
                session.directed.add(str(to))
        self.service.deliver_direct(to, stanza)

    def inbound_probe(self, owner: str | None, prober: JID, only: "Session | None" = None) -> None:
        """Answer a probe from `prober` (bare) for `owner`'s presence, if `owner` authorized it."""
        if owner is None or owner not in self.store.accounts:
            return
        item = self.store.item(owner, str(prober.bare))
        authorized = item is not None and item.has_from and not self.service.blocking.blocks(owner, prober)
        if not authorized and not self.service.flawed("probe-answers-anyone"):
            return  # RFC 6121 §4.3.2 / §11: reveal nothing to an unauthorized prober
        if prober.domain != self.service.config.domain:
            self._answer_remote_probe(owner, prober.bare)
            return
        targets = [only] if only is not None else self.service.available_sessions(prober.local)
        owner_sessions = self.service.available_sessions(owner)
        if not owner_sessions:
            # RFC 6121 §4.3.2: an authorized prober of an offline user learns the last unavailable presence.
            last = self.last_unavailable.get(owner, presence(type_="unavailable",
                                                            from_=f"{owner}@{self.service.config.domain}"))
            for target in targets:
                copy_ = copy.deepcopy(last)
                copy_.set("to", str(target.jid))
                target.send(copy_)
            return
        for session in owner_sessions:
            if session.presence is None:
                continue
            for target in targets:
                copy_ = copy.deepcopy(session.presence)
                copy_.set("from", str(session.jid))
                copy_.set("to", str(target.jid))
                target.send(copy_)

    def _answer_remote_probe(self, owner: str, prober: JID) -> None:
        """An authorized prober of another domain gets the owner's current presence, one stanza per available
        resource, or the last unavailable presence (RFC 6121 §4.3.2), through outbound s2s."""
        owner_sessions = [s for s in self.service.available_sessions(owner) if s.presence is not None]
        if not owner_sessions:
            last = self.last_unavailable.get(owner, presence(type_="unavailable",
                                                            from_=f"{owner}@{self.service.config.domain}"))
            answer = copy.deepcopy(last)
            answer.set("to", str(prober))
            self.service.deliver_direct(prober, answer)
            return
        for session in owner_sessions:
            answer = copy.deepcopy(session.presence)
            answer.set("from", str(session.jid))
            answer.set("to", str(prober))
            self.service.deliver_direct(prober, answer)

    def send_current_presence(self, owner: str, contact: str) -> None:
        for session in self.service.available_sessions(owner):
            if session.presence is not None:
                self.send_to_contact(contact, session.presence)

    def send_unavailable(self, owner: str, contact: str) -> None:
        for session in self.service.available_sessions(owner):
            self.send_to_contact(contact, presence(type_="unavailable", from_=str(session.jid)))

    # -- presence from other domains' users (s2s.py) ---------------------------------------------------------------

    def inbound_remote(self, sender: JID, stanza: Element, to: JID) -> None:
        """Presence from a user of another domain, off an authenticated server-to-server stream, to a local JID:
        subscription stanzas and probes are handled as for a local sender (RFC 6121 §3, §4.3), other presence is
        delivered like directed presence unless the recipient blocks the sender (XEP-0191 §3.3)."""
        if to.local is None or to.local not in self.store.accounts:
            return
        owner = to.local
        ptype = stanza.get("type")
        if ptype in SUBSCRIPTION_TYPES:
            stanza.set("from", str(sender.bare))  # RFC 6121 §3: subscription stanzas carry bare JIDs
            stanza.set("to", str(to.bare))
            getattr(self, f"_in_{ptype}")(owner, stanza)
        elif ptype == "probe":
            self.inbound_probe(owner, sender.bare)
        elif ptype in (None, "unavailable", "error") and not self.service.blocking.blocks(owner, sender):
            self.service.deliver_direct(to, stanza)

    # -- subscription handshakes, user side (RFC 6121 §3) -------------------------------------------------------------

    def _route(self, to: JID, stanza: Element, inbound) -> None:
        if to.domain != self.service.config.domain:
            self.service.deliver_direct(to, stanza)  # to that domain's server (outbound s2s), if it is known
            return
        if to.local not in self.store.accounts:
            return
        inbound(to.local, stanza)

    def _item(self, owner: str, contact: str):
        from .store import RosterItem
        roster = self.store.roster(owner)
        if contact not in roster:
            roster[contact] = RosterItem(jid=contact)
        return roster[contact]

    def _out_subscribe(self, user: JID, contact: JID, stanza: Element) -> None:
        item = self._item(user.local, str(contact))
        if not item.has_to:
            item.ask = True
        self.store.save()
        self._push_roster(user.local, str(contact))
        self._route(contact, stanza, self._in_subscribe)

    def _out_subscribed(self, contact: JID, user: JID, stanza: Element) -> None:
        # `contact` approves `user`'s request.
        pending = self.store.pending_in.get(contact.local, {})
        if str(user) not in pending:
            if self.service.flawed("unsolicited-subscribed-accepted"):
                self._route(user, stanza, self._in_subscribed)  # flaw: pass it on and let the other side decide
            return  # RFC 6121 §3.1.5: no pending request and no pre-approval support: ignore
        del pending[str(user)]
        item = self._item(contact.local, str(user))
        item.subscription = {"none": "from", "to": "both"}.get(item.subscription, item.subscription)
        self.store.save()
        self._push_roster(contact.local, str(user))
        self._route(user, stanza, self._in_subscribed)
        self.send_current_presence(contact.local, str(user))

    def _out_unsubscribe(self, user: JID, contact: JID, stanza: Element) -> None:
        item = self.store.item(user.local, str(contact))
        if item is not None:
            item.subscription = {"to": "none", "both": "from"}.get(item.subscription, item.subscription)
            item.ask = False
            self.store.save()
            self._push_roster(user.local, str(contact))
        self._route(contact, stanza, self._in_unsubscribe)

    def _out_unsubscribed(self, contact: JID, user: JID, stanza: Element) -> None:
        # `contact` refuses `user`'s request, or cancels `user`'s existing subscription.
        pending = self.store.pending_in.get(contact.local, {})
        changed = pending.pop(str(user), None) is not None
        item = self.store.item(contact.local, str(user))
        had_from = item is not None and item.has_from
        if had_from and not self.service.flawed("revocation-keeps-subscription"):
            item.subscription = {"from": "none", "both": "to"}[item.subscription]
            changed = True
        if not changed and not had_from:
            return  # RFC 6121 §3.2.3: nothing to cancel, ignore
        self.store.save()
        self._push_roster(contact.local, str(user))
        self._route(user, stanza, self._in_unsubscribed)
        if had_from and not self.service.flawed("revocation-keeps-subscription"):
            self.send_unavailable(contact.local, str(user))

    # -- subscription handshakes, contact side -------------------------------------------------------------------------

    def _deliver_to_user(self, owner: str, stanza: Element) -> None:
        for session in self.service.available_sessions(owner):
            copy_ = copy.deepcopy(stanza)
            session.send(copy_)

    def _in_subscribe(self, owner: str, stanza: Element) -> None:
        requester = JID.parse(stanza.get("from"))
        if self.service.blocking.blocks(owner, requester):
            return
        item = self.store.item(owner, str(requester))
        if item is not None and item.has_from:
            # Already subscribed: auto-reply on the contact's behalf (RFC 6121 §3.1.3).
            reply = presence(to=str(requester), type_="subscribed", from_=f"{owner}@{self.service.config.domain}")
            if requester.domain != self.service.config.domain:
                self.service.deliver_direct(requester, reply)  # another domain's user: through outbound s2s
            else:
                self._in_subscribed(requester.local, reply)
            return
        pending = self.store.pending_in.setdefault(owner, {})
        if (str(requester) not in pending and len(pending) >= self.service.config.max_pending_in
                and not self.service.flawed("subscription-requests-unbounded")):
            # IMPP-5.3-4, RFC 6120 §13.12: no more requests wait for a user than they can reasonably answer; the
            # rest are not delivered (the requester may ask again once the user has answered some).
            self.service.log(f"dropping {requester}'s subscription request to {owner}: "
                             f"{len(pending)} requests are waiting already")
            return
        pending[str(requester)] = to_bytes(stanza, CLIENT).decode()
        self.store.save()
        self._deliver_to_user(owner, stanza)

    def _in_subscribed(self, owner: str, stanza: Element) -> None:
        contact = str(JID.parse(stanza.get("from")).bare)
        item = self.store.item(owner, contact)
        solicited = item is not None and item.ask
        if not solicited and not self.service.flawed("unsolicited-subscribed-accepted"):
            return  # RFC 6121 §3.1.6: an unsolicited 'subscribed' changes nothing and is not delivered
        item = self._item(owner, contact)
        item.subscription = {"none": "to", "from": "both"}.get(item.subscription, item.subscription)
        item.ask = False
        self.store.save()
        self._push_roster(owner, contact)
        self._deliver_to_user(owner, stanza)

    def _in_unsubscribe(self, owner: str, stanza: Element) -> None:
        requester = str(JID.parse(stanza.get("from")).bare)
        pending = self.store.pending_in.get(owner, {})
        changed = pending.pop(requester, None) is not None
        item = self.store.item(owner, requester)
        had_from = item is not None and item.has_from
        if had_from:
            item.subscription = {"from": "none", "both": "to"}[item.subscription]
        if not changed and not had_from:
            return
        self.store.save()
        self._push_roster(owner, requester)
        self._deliver_to_user(owner, stanza)
        if had_from:
            self.send_unavailable(owner, requester)

    def _in_unsubscribed(self, owner: str, stanza: Element) -> None:
        contact = str(JID.parse(stanza.get("from")).bare)
        item = self.store.item(owner, contact)
        if item is None or not (item.has_to or item.ask):
            return  # RFC 6121 §3.2.3: silently ignore
        item.subscription = {"to": "none", "both": "from"}.get(item.subscription, item.subscription)
        item.ask = False
        self.store.save()
        self._push_roster(owner, contact)
        self._deliver_to_user(owner, stanza)
