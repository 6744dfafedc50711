"""Role verbs for integrity and replay: rich presence and messages that must arrive exactly as sent (RFC 6120 §8.4:
a server delivers unknown child elements unmodified), and replaying a recorded authentication exchange.
Mixed into XmppParty."""

from __future__ import annotations

import base64
import copy
import os
from typing import TYPE_CHECKING

from conformance.roles import Outcome, Update
from conformance.verdicts import SetupFailed, Violation

from .client import StreamEnded
from .codec import sasl
from .codec.stanza import CLIENT, SASL, STANZA_ID, message, presence, q
from .codec.xml import XML_NS, E, Element, serialize, split

if TYPE_CHECKING:
    from .party import XmppParty

EXTENSION = "urn:impp-conformance:extension"
CAPS = "http://jabber.org/protocol/caps"
OPENPGP = "urn:xmpp:openpgp:0"
LANG = q(XML_NS, "lang")
# Text a server must pass through code point by code point: XML specials, a non-BMP emoji, combining characters,
# a right-to-left override, and a quote of each kind.
TRICKY = "5 < 6 & 7 > 4 \"double\" 'single' \U0001F600 e\u0301 \u202Eevil\u202C \u05e9\u05dc\u05d5\u05dd"


def _extension() -> Element:
    return E(f"{{{EXTENSION}}}x", {"a": "1", "b": "q&'\"<"},
             E(f"{{{EXTENSION}}}y", {"z": "\t"}, text="inner text " + TRICKY), E(f"{{{EXTENSION}}}empty"))


def _fill(canary: str, length: int) -> str:
    text = f"{canary} {TRICKY} "
    return (text * (length // len(text) + 1))[:length]


def _shape(element: Element) -> tuple:
    return (element.tag, dict(element.attrib), element.text or "", [_shape(c) for c in element],
            (element.tail or "").strip() and element.tail)


def _key(element: Element) -> tuple[str, str | None]:
    return element.tag, element.get(LANG)


def _difference(sent: Element, got: Element) -> str:
    """The first place where `got` departs from `sent`, in words."""
    name = split(sent.tag)[1]
    want, have = sent.text or "", got.text or ""
    if want != have:
        if want.startswith(have):
            return f"the text of <{name}/> cut from {len(want)} to {len(have)} characters"
        at = next((i for i, (a, b) in enumerate(zip(want, have)) if a != b), min(len(want), len(have)))
        return f"the text of <{name}/> differs from character {at}: sent {want[at:at + 20]!r}, got {have[at:at + 20]!r}"
    for attribute, value in sent.attrib.items():
        if got.get(attribute) != value:
            return f"attribute {split(attribute)[1]} of <{name}/>: sent {value!r}, got {got.get(attribute)!r}"
    if len(got) < len(sent):
        return f"<{name}/> lost {len(sent) - len(got)} child element(s)"
    for mine, theirs in zip(sent, got):
        if _shape(mine) != _shape(theirs):
            return _difference(mine, theirs)
    text = serialize(got, CLIENT)
    return f"now {text[:160]}{'…' if len(text) > 160 else ''}"


def alterations(sent: Element, received: Element) -> list[str]:
    """How `received` differs from `sent` in the children the sender put there (additions by the service, such as
    <delay/> or <stanza-id/>, are allowed)."""
    found = {}
    for child in received:
        found.setdefault(_key(child), []).append(child)
    problems = []
    for child in sent:
        candidates = found.get(_key(child), [])
        name = split(child.tag)[1] + (f"[xml:lang={child.get(LANG)}]" if child.get(LANG) else "")
        if not candidates:
            problems.append(f"<{name}/> is missing")
        elif not any(_shape(c) == _shape(child) for c in candidates):
            problems.append(f"<{name}/> was altered ({_difference(child, candidates[0])})")
    return problems


class IntegrityVerbs:
    """Verbs of XmppParty for integrity and replay; `self` is an XmppParty."""

    def publishes_detailed_presence(self: "XmppParty") -> Update:
        """Presence with everything a watcher must see unaltered: show, two statuses (one 1000 characters of tricky
        text with a canary, one in another language), priority, an unknown extension element, entity capabilities."""
        canary = self.rt.canary(f"{self.name}-detailed-status")
        self.last_canary = canary
        stanza = presence(
            None, None,
            E(q(CLIENT, "status"), {LANG: "de"}, text=f"Im Gespräch {TRICKY}"),
            E(q(CLIENT, "priority"), text="7"),
            _extension(),
            E("c", {"hash": "sha-1", "node": "https://impp-conformance.test",
                    "ver": "QgayPKawpkPSDYmwT/WM94uAlu0="}, ns=CAPS),
            status=_fill(canary, 1000), show="away")

        async def run():
            await self._ensure_online()
            update = self._update("presence", canary)
            update.payload = copy.deepcopy(stanza)
            await self.main.send(stanza)
            return update
        return self._call(run)

    def sends_detailed_message(self: "XmppParty", to: "XmppParty") -> Update:
        """A message with everything an inbox must see unaltered: a 9000-character body of tricky text with a canary,
        a second body in another language, a thread, an origin-id, an unknown extension element and an opaque
        end-to-end encrypted payload (XEP-0373 style)."""
        canary = self.rt.canary(f"{self.name}-detailed-msg")
        sealed = base64.b64encode(os.urandom(96)).decode()
        stanza = message(to.bare, _fill(canary, 9000),
                         E(q(CLIENT, "body"), {LANG: "de"}, text=f"Hallo {TRICKY}"),
                         E(q(CLIENT, "thread"), text=f"thread-{canary[-10:]}"),
                         E("origin-id", {"id": f"origin-{canary[-10:]}"}, ns=STANZA_ID),
                         _extension(),
                         E("openpgp", text=sealed, ns=OPENPGP))

        async def run():
            await self._ensure_online()
            update = self._update("message", canary)
            update.payload = copy.deepcopy(stanza)
            await self.main.send(stanza)
            await self._ping()
            return update
        return self._call(run)

    def receives_unaltered(self: "XmppParty", update: Update) -> None:
        """`update` arrives (a positive control in itself) with every element its sender put in it unmodified."""
        got = self.receives(update)
        problems = alterations(update.payload, got)
        if problems:
            raise Violation(f"{update.sender}'s {update.kind} reached {self.name} altered: " + "; ".join(problems))

    def replays_own_login(self: "XmppParty") -> Outcome:
        """Log in once recording the client's SCRAM messages, then send exactly those messages again on a new
        stream, as an eavesdropper who recorded the exchange would (the TLS layer is the harness's own, so only the
        SASL layer is replayed). Granted means the IUT accepted the recorded proof a second time."""
        async def run():
            first = await self.rt.secure_stream(self.name)
            result = await first.authenticate(self.account.username, self.account.password)
            if not result.success or not result.mechanism.startswith("SCRAM"):
                await first.close()
                raise SetupFailed(f"{self.name}'s own SCRAM login failed or was not SCRAM ({result.mechanism}: "
                                  f"<{result.condition}/>)")
            recorded = list(first.sasl_sent)
            await first.close()
            second = await self.rt.secure_stream(self.name)
            try:
                await second.send(E("auth", {"mechanism": result.mechanism}, text=sasl.b64(recorded[0]), ns=SASL))
                answer = await second.read_unit()
                if answer.tag == q(SASL, "challenge"):
                    await second.send(E("response", text=sasl.b64(recorded[1]), ns=SASL))
                    answer = await second.read_unit()
                if answer.tag == q(SASL, "challenge"):  # additional data with success (RFC 6120 §6.4.6)
                    await second.send(E("response", ns=SASL))
                    answer = await second.read_unit()
            except StreamEnded as ended:
                return Outcome(refused=True, condition=ended.condition or "stream closed", detail=str(ended))
            finally:
                await second.close()
            granted = answer.tag == q(SASL, "success")
            return Outcome(refused=not granted, condition=None if granted else split(answer.tag)[1],
                           detail=f"{result.mechanism} replayed: <{split(answer.tag)[1]}/>")
        return self._call(run)

