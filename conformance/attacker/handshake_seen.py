"""What a TLS handshake the attacker terminated looked like, read from the opening bytes each way (the relay keeps
them per leg): the versions the victim offered, what the attacker's own TLS end answered (version, downgrade
sentinel, extended master secret) and what the victim sent after that answer, record by record.

Sans-IO: bytes in, a HandshakeSeen out. Nothing here decides a verdict.
"""

from __future__ import annotations

import dataclasses

from scapy.layers.tls.record import _tls_alert_description

from conformance.transport import hello_bytes as hb
from conformance.transport.tls_hello import VERSION_NAMES

from .records import CONTENT_TYPES, NotTls, RecordSplitter

ALERT, HANDSHAKE, CHANGE_CIPHER_SPEC = 21, 22, 20
_HANDSHAKE_MESSAGES = {1: "ClientHello", 11: "Certificate", 15: "CertificateVerify", 16: "ClientKeyExchange",
                       20: "Finished"}


@dataclasses.dataclass(frozen=True)
class HandshakeSeen:
    offered: tuple[int, ...]  # the versions of the victim's ClientHello, as the victim sent it
    chosen: int | None  # the version of the attacker's ServerHello (None: it sent none)
    sentinel: str | None  # what the ServerHello's random said the server was downgraded to
    extended_master_secret: bool | None  # the ServerHello carried RFC 7627's extension
    victim_then: tuple[str, ...]  # the victim's records after its ClientHello, each said in a few words
    resumption_offered: bool = False  # the ClientHello offered a session to resume (pre_shared_key, RFC 8446)
    early_data_offered: bool = False  # the ClientHello announced early data (early_data, RFC 8446 §4.2.10)

    @property
    def offered_tls13(self) -> bool:
        return hb.TLS13 in self.offered

    @property
    def continued(self) -> bool:
        """The victim went on with the handshake after the ServerHello (key exchange, cipher change, data)."""
        return any(not said.startswith("alert") for said in self.victim_then)

    @property
    def alert(self) -> str | None:
        """The first alert the victim sent in clear, by its name."""
        return next((said[len("alert "):] for said in self.victim_then if said.startswith("alert ")), None)

    def __str__(self) -> str:
        offered = ", ".join(_version(v) for v in self.offered)
        answer = "no ServerHello" if self.chosen is None else f"a {_version(self.chosen)} ServerHello"
        if self.sentinel:
            answer += f" with the downgrade sentinel ({self.sentinel})"
        runs: list[list] = []  # consecutive repeats said once, with their count
        for said in self.victim_then:
            if runs and runs[-1][0] == said:
                runs[-1][1] += 1
            else:
                runs.append([said, 1])
        then = "; ".join(said if count == 1 else f"{said} ×{count}" for said, count in runs) or "nothing more"
        return f"the client offered {offered}; the attacker answered {answer}; the client then sent: {then}"


def read(from_victim: bytes, to_victim: bytes) -> HandshakeSeen:
    records = _records(from_victim)
    offered: tuple[int, ...] = ()
    extensions: dict[int, tuple[int, int]] = {}
    if records:
        try:
            hello = records[0]
            fields = hb.walk(hello)
            offered, extensions = hb.offered_versions(hello, fields), fields.extensions
        except hb.NotAHello:
            pass
    chosen = sentinel = ems = None
    answer = _records(to_victim)
    if answer:
        try:
            fields = hb.walk(answer[0])
            if fields.msg_type == hb.SERVER_HELLO:
                chosen = hb.chosen_version(answer[0], fields)
                sentinel = hb.downgrade_sentinel(fields)
                ems = hb.EXTENDED_MASTER_SECRET in fields.extensions
        except hb.NotAHello:
            pass
    return HandshakeSeen(offered, chosen, sentinel, ems, tuple(_said(records[1:])),
                         resumption_offered=hb.PRE_SHARED_KEY in extensions,
                         early_data_offered=hb.EARLY_DATA in extensions)


def _records(data: bytes) -> list[bytes]:
    try:
        return [bytes(record.data) for record in RecordSplitter().feed(data)]
    except NotTls:
        return []


def _said(records: list[bytes]) -> list[str]:
    said, encrypted = [], False
    for record in records:
        kind, fragment = record[0], record[5:]
        if encrypted:  # after the victim's ChangeCipherSpec its records are protected: only their type shows
            said.append(f"an encrypted {CONTENT_TYPES.get(kind, kind)} record")
        elif kind == ALERT and len(fragment) >= 2:
            said.append(f"alert {_tls_alert_description.get(fragment[1], fragment[1])}")
        elif kind == HANDSHAKE and fragment:
            said.append(_HANDSHAKE_MESSAGES.get(fragment[0], f"handshake message {fragment[0]}"))
        else:
            said.append(CONTENT_TYPES.get(kind, f"record type {kind}"))
        encrypted = encrypted or kind == CHANGE_CIPHER_SPEC
    return said


def _version(code: int) -> str:
    return "GREASE" if code == hb.GREASE_VERSION else VERSION_NAMES.get(code, f"0x{code:04x}")
