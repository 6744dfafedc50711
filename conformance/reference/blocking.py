"""XEP-0191 blocklists: storage, matching, and the presence side effects of blocking and unblocking."""

from __future__ import annotations

from typing import TYPE_CHECKING

from conformance.adapters.xmpp.codec.jid import JID, JidError
from conformance.adapters.xmpp.codec.stanza import BLOCKING, iq, presence
from conformance.adapters.xmpp.codec.xml import E

if TYPE_CHECKING:
    from .service import Service


def _canonical(text: str) -> str | None:
    try:
        return str(JID.parse(text))
    except JidError:
        return None


def matches(item: str, sender: JID) -> bool:
    """XEP-0016 §2.1 JID matching, which XEP-0191 uses: full, bare, domain/resource or domain items."""
    try:
        blocked = JID.parse(item)
    except JidError:
        return False
    if blocked.domain != sender.domain:
        return False
    if blocked.local is None:
        return blocked.resource is None or blocked.resource == sender.resource
    if blocked.local != sender.local:
        return False
    return blocked.resource is None or blocked.resource == sender.resource


class Blocking:
    def __init__(self, service: "Service"):
        self.service = service

    def items(self, owner: str) -> list[str]:
        return list(self.service.store.blocklists.get(owner, []))

    def blocks(self, owner: str, sender: JID) -> bool:
        """Does `owner` block stanzas from (or to) `sender`?"""
        items = self.service.store.blocklists.get(owner, [])
        if self.service.flawed("blocklist-not-normalized"):
            raw = {str(sender), str(sender.bare), sender.domain}
            return any(item in raw for item in items)
        return any(matches(item, sender) for item in items)

    def block(self, owner: str, jids: list[str]) -> bool:
        store = self.service.store
        current = store.blocklists.setdefault(owner, [])
        added = []
        for text in jids:
            item = text if self.service.flawed("blocklist-not-normalized") else _canonical(text)
            if item is None:
                return False
            if item not in current:
                current.append(item)
                added.append(item)
        store.save()
        self._push(owner, "block", added)
        for item in added:
            self._hide_presence_from(owner, item)
        return True

    def unblock(self, owner: str, jids: list[str] | None) -> bool:
        store = self.service.store
        current = store.blocklists.setdefault(owner, [])
        if jids is None:
            removed, current[:] = list(current), []
        else:
            wanted = [text if self.service.flawed("blocklist-not-normalized") else _canonical(text) for text in jids]
            if None in wanted:
                return False
            removed = [item for item in current if item in wanted]
            current[:] = [item for item in current if item not in wanted]
        store.save()
        self._push(owner, "unblock", removed if jids is not None else [])
        for item in removed:
            self._show_presence_to(owner, item)
        return True

    def _push(self, owner: str, action: str, items: list[str]) -> None:
        for session in self.service.sessions_of(owner):
            element = E(action, None, *(E("item", {"jid": i}, ns=BLOCKING) for i in items), ns=BLOCKING)
            push = iq("set", element, to=str(session.jid))
            session.send(push)

    def _contacts_matching(self, owner: str, item: str) -> list[str]:
        return [contact for contact in self.service.store.roster(owner)
                if matches(item, JID.parse(contact))]

    def _hide_presence_from(self, owner: str, item: str) -> None:
        # XEP-0191 §3.3: blocked contacts that could see the user's presence get unavailable presence.
        if self.service.flawed("presence-ignores-blocklist"):
            return
        for contact in self._contacts_matching(owner, item):
            if self.service.store.item(owner, contact).has_from:
                for session in self.service.available_sessions(owner):
                    self.service.presence.send_to_contact(contact, presence(type_="unavailable", from_=str(session.jid)))

    def _show_presence_to(self, owner: str, item: str) -> None:
        for contact in self._contacts_matching(owner, item):
            if self.service.store.item(owner, contact).has_from:
                for session in self.service.available_sessions(owner):
                    if session.presence is not None:
                        self.service.presence.send_to_contact(contact, session.presence)
