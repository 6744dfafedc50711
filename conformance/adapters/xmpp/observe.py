"""Reading what a party received: matching stanzas against an Update, and describing them for verdict messages."""

from __future__ import annotations

from conformance.roles import Update

from .codec.jid import try_parse
from .codec.stanza import CLIENT, error_condition, kind
from .codec.xml import Element, serialize


def describe(unit: Element, limit: int = 300) -> str:
    text = serialize(unit, CLIENT)
    return text if len(text) <= limit else text[:limit] + "…"


def bare_of(address: str | None) -> str | None:
    jid = try_parse(address)
    return str(jid.bare) if jid else None


def carries(unit: Element, canary: str) -> bool:
    return canary in serialize(unit, CLIENT)


def is_available_presence_from(unit: Element, bare: str) -> bool:
    return kind(unit) == "presence" and unit.get("type") is None and bare_of(unit.get("from")) == bare


def reveals(unit: Element, update: Update) -> bool:
    """Does this unit disclose what `update` published: its canary, or (for presence) the sender's availability?"""
    if update.canary and carries(unit, update.canary):
        return True
    sender_jid = getattr(update.sender, "bare", None)
    return update.kind == "presence" and sender_jid is not None and update.reveal_availability and \
        is_available_presence_from(unit, sender_jid)


def delivers(unit: Element, update: Update) -> bool:
    """Is this unit the delivery of `update` (not an error bounce of it)?"""
    if unit.get("type") == "error" or not carries(unit, update.canary):
        return False
    return kind(unit) == update.kind


def error_of(unit: Element) -> str | None:
    return error_condition(unit) if unit.get("type") == "error" else None
