"""A passive eavesdropper: searches every byte the harness's connections carried on the wire (ciphertext once TLS
is up) for the canaries a test planted, in every encoding a careless implementation might use, so a canary seen in
clear is found wherever it hides. The offset and encoding of each hit are the evidence."""

from __future__ import annotations

import base64
import dataclasses
from typing import Iterable

from conformance.roles import Update
from conformance.transport.wire import Recorder
from conformance.verdicts import SetupFailed, Violation, negative_check


@dataclasses.dataclass(frozen=True)
class Hit:
    canary: str
    encoding: str
    connection: str
    direction: str
    offset: int  # into that direction's byte stream on that connection

    def __str__(self) -> str:
        arrow = "to the IUT" if self.direction == "out" else "from the IUT"
        return f"{self.canary} ({self.encoding}) at byte {self.offset} {arrow} on {self.connection}"


def encodings(canary: str) -> dict[str, bytes]:
    """The forms of `canary` to look for: text encodings, base64 at its three alignments, XML character references."""
    raw = canary.encode("utf-8")
    forms = {"utf-8": raw, "utf-16-le": canary.encode("utf-16-le"), "utf-16-be": canary.encode("utf-16-be"),
             "xml-decimal": "".join(f"&#{ord(c)};" for c in canary).encode(),
             "xml-hex": "".join(f"&#x{ord(c):x};" for c in canary).encode()}
    for shift in range(3):
        # Base64 of the canary preceded by `shift` unknown bytes: the characters that depend only on the canary.
        encoded = base64.b64encode(b"\0" * shift + raw)
        start = {0: 0, 1: 4, 2: 4}[shift]
        usable = (len(raw) + shift) // 3 * 4
        forms[f"base64+{shift}"] = encoded[start:usable]
    return forms


def search(canaries: Iterable[str], streams: dict[tuple[str, str], bytes]) -> list[Hit]:
    patterns = [(c, name, form) for c in canaries if c for name, form in encodings(c).items() if len(form) >= 8]
    hits = []
    for (connection, direction), data in streams.items():
        for canary, name, form in patterns:
            offset = data.find(form)
            if offset >= 0:
                hits.append(Hit(canary, name, connection, direction, offset))
    return hits


class Eavesdropper:
    """Taps every connection of one test (what the recorder saw on the `tcp` layer)."""

    def __init__(self, recorder: Recorder):
        self.recorder = recorder

    def wire(self) -> dict[tuple[str, str], bytes]:
        streams: dict[tuple[str, str], bytearray] = {}
        for chunk in self.recorder.chunks:
            if chunk.layer == "tcp":
                streams.setdefault((chunk.connection, chunk.direction), bytearray()).extend(chunk.data)
        return {key: bytes(value) for key, value in streams.items()}

    def finds_nothing_of(self, *updates: Update) -> None:
        """None of the updates' canaries crossed the wire readably, on any link, in either direction."""
        negative_check("the eavesdropper finds no canary")
        wire = self.wire()
        if not wire:
            raise Violation("the eavesdropper saw no traffic at all, so it cannot vouch for anything")
        hits = search([u.canary for u in updates], wire)
        if hits:
            raise Violation(f"a passive eavesdropper reads {len(hits)} planted value(s) in clear: "
                            + "; ".join(str(h) for h in hits[:5]))
        if self.recorder.truncated:  # what the byte limit cut off may hold a canary
            raise SetupFailed("the recording of this case reached its byte limit, so the eavesdropper cannot vouch "
                              "for what was not kept")
