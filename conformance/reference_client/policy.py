"""Whom the reference client believes and whom it answers, as pure functions of the stanza's sender and what the
client knows (its own JID, the messages it sent, its roster). Every comparison is on canonical bare JIDs (RFC 7622):
the service stamps each stanza with its sender's address (RFC 6120 §8.1.2.1), so that address is what counts.
"""

from __future__ import annotations

from typing import Mapping

from conformance.adapters.xmpp.codec.jid import try_parse

from .flaws import NO_FLAWS, Flawed

# Roster subscriptions under which the contact may see our presence (RFC 6121 §3), hence may learn we are online
PRESENCE_VISIBLE_TO = ("from", "both")


def bare(address: str | None) -> str | None:
    """The canonical bare JID of `address`; None if it is absent or not a JID."""
    jid = try_parse(address)
    return str(jid.bare) if jid is not None else None


def from_own_account(sender: str | None, own_bare: str) -> bool:
    """`sender` is the client's own account, its bare JID: the address its server speaks for it with."""
    parsed = try_parse(sender)
    return parsed is not None and parsed.is_bare and str(parsed) == bare(own_bare)


def receipt_accepted(sender: str | None, message_id: str | None, sent: Mapping[str, str], *,
                     flawed: Flawed = NO_FLAWS) -> bool:
    """A XEP-0184 receipt for `message_id` counts only for a message this client sent (`sent`: id -> addressee) and
    only from that message's addressee: anyone else saying "delivered" is lying (XEP-0184 §8)."""
    if not message_id or message_id not in sent:
        return False
    if flawed("client-receipts-from-anyone"):
        return True  # "a receipt carries the message id: that is proof enough"
    sender_bare = bare(sender)
    return sender_bare is not None and sender_bare == bare(sent[message_id])


def error_accepted(sender: str | None, message_id: str | None, sent: Mapping[str, str], *,
                   flawed: Flawed = NO_FLAWS) -> bool:
    """An error stanza marks a message this client sent (`sent`: id -> addressee) failed only when it comes from
    the addressee or the addressee's domain, whose server answers for it (RFC 6120 §8.3.1, §10.4.3); the service
    stamps 'from' (§8.1.2.1), so anyone else's error names someone else."""
    if not message_id or message_id not in sent:
        return False
    if flawed("client-errors-from-anyone"):
        return True  # "an error carries the message id: that is proof enough"
    sender_bare, addressee = bare(sender), try_parse(sent[message_id])
    return sender_bare is not None and addressee is not None and \
        sender_bare in (str(addressee.bare), addressee.domain)


def archive_result_accepted(sender: str | None, queryid: str | None, open_queries: set[str], own_bare: str, *,
                            flawed: Flawed = NO_FLAWS) -> bool:
    """XEP-0313 §4.2: a result counts only for an open query of this client and only from the archive queried, the
    account itself (no 'from', or its own bare JID): anyone else's "archived message" is a forgery."""
    if not queryid or queryid not in open_queries:
        return False
    if flawed("client-archive-results-from-anyone"):
        return True  # "the queryid is ours: it must be the answer"
    return sender is None or from_own_account(sender, own_bare)


def roster_push_accepted(sender: str | None, own_bare: str, *, flawed: Flawed = NO_FLAWS) -> bool:
    """RFC 6121 §2.1.6: a roster push counts only without 'from' or from the client's own bare JID (the account's
    server speaks for it); from anyone else it is a forgery."""
    if flawed("client-roster-pushes-from-anyone"):
        return True  # "only the server sends roster pushes"
    return sender is None or from_own_account(sender, own_bare)


def carbon_accepted(sender: str | None, own_bare: str, *, flawed: Flawed = NO_FLAWS) -> bool:
    """XEP-0280 §11: a carbon copy counts only when the wrapping message comes from the client's own bare JID."""
    if flawed("client-carbons-from-anyone"):
        return True  # "a carbon is a carbon"
    return from_own_account(sender, own_bare)


def receipt_answer_allowed(sender: str | None, roster: Mapping[str, str], *, flawed: Flawed = NO_FLAWS) -> bool:
    """XEP-0184 §8: a receipt tells the sender we are online, so it goes only to contacts allowed to see our
    presence (`roster`: bare JID -> subscription)."""
    if flawed("client-receipts-to-strangers"):
        return True  # "receipts are a courtesy to whoever asks"
    sender_bare = bare(sender)
    return sender_bare is not None and roster.get(sender_bare) in PRESENCE_VISIBLE_TO


class Shown:
    """The XEP-0359 stanza-ids (assigned by the client's own account) of messages already shown: a message that
    arrives again with one of them (an archive sync, a resumed stream, a replay) is not shown again."""

    def __init__(self, limit: int = 100_000):
        self._ids: dict[str, None] = {}
        self._limit = limit

    def first_time(self, stanza_id: str | None, *, flawed: Flawed = NO_FLAWS) -> bool:
        if stanza_id is None:
            return True  # nothing to recognise it by
        seen = stanza_id in self._ids
        if not seen:
            self._ids[stanza_id] = None
            if len(self._ids) > self._limit:
                del self._ids[next(iter(self._ids))]
        if seen and flawed("client-duplicates-shown"):
            return True  # "every delivery is a message"
        return not seen
