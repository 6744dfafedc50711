"""The fields of a ClientHello or ServerHello found by walking its bytes (RFC 8446 §4.1.2, §4.1.3), and the one
rewrite a downgrade test needs, with every other byte left where it was.

scapy parses hellos elsewhere (tls_hello.py); this walk is for the two places where that will not do: an attacker
that must change a ClientHello in place (a rebuilt hello may differ in more than the change), and the reference
client, which checks the ServerHello before OpenSSL sees it and must stay quick to start.

Sans-IO, standard library only. A hello that does not walk raises NotAHello.
"""

from __future__ import annotations

import dataclasses

HANDSHAKE = 22
CLIENT_HELLO, SERVER_HELLO = 1, 2
TLS12, TLS13 = 0x0303, 0x0304
SUPPORTED_VERSIONS = 43  # RFC 8446 §4.2.1
EXTENDED_MASTER_SECRET = 23  # RFC 7627
PRE_SHARED_KEY, EARLY_DATA = 41, 42  # RFC 8446 §4.2.11, §4.2.10
RENEGOTIATION_INFO = 0xFF01  # RFC 5746
# RFC 8446 §4.1.3: the end of a TLS 1.3-capable server's random when it negotiates TLS 1.2 (or, ...00, below)
DOWNGRADE_SENTINELS = {b"DOWNGRD\x01": "TLS 1.2", b"DOWNGRD\x00": "TLS 1.1 or below"}
GREASE_VERSION = 0x7A7A  # RFC 8701: a value every server must ignore in supported_versions
_HEADER = 5  # record header: type, version, length


class NotAHello(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class HelloFields:
    """Where things are in one record carrying a hello (offsets into the record's bytes)."""

    msg_type: int
    legacy_version: int
    random: bytes
    extensions: dict[int, tuple[int, int]]  # extension type -> (offset of its body, length of its body)
    random_at: int
    record_length: int  # the whole record, header included

    def body(self, record: bytes, extension: int) -> bytes | None:
        if extension not in self.extensions:
            return None
        at, length = self.extensions[extension]
        return bytes(record[at:at + length])


def complete_record(data: bytes) -> int | None:
    """The length of the first record in `data` if it is all there (None: wait for more). NotAHello when `data`
    cannot start a handshake record."""
    if len(data) >= 1 and data[0] != HANDSHAKE:
        raise NotAHello(f"the first record is of type {data[0]}, not a handshake")
    if len(data) < _HEADER:
        return None
    length = _HEADER + int.from_bytes(data[3:5], "big")
    return length if len(data) >= length else None


def walk(record: bytes) -> HelloFields:
    """The hello that starts the handshake record `record` (it must hold the whole hello)."""
    try:
        return _walk(record)
    except IndexError:
        raise NotAHello("the hello ends before its fields do") from None


def _walk(record: bytes) -> HelloFields:
    end = complete_record(record)
    if end is None:
        raise NotAHello("not a whole record")
    msg_type = record[_HEADER]
    if msg_type not in (CLIENT_HELLO, SERVER_HELLO):
        raise NotAHello(f"handshake message type {msg_type}, not a hello")
    msg_end = _HEADER + 4 + int.from_bytes(record[_HEADER + 1:_HEADER + 4], "big")
    if msg_end > end:
        raise NotAHello("the hello does not fit in its first record")
    at = _HEADER + 4
    legacy_version = int.from_bytes(record[at:at + 2], "big")
    random_at = at + 2
    at = random_at + 32
    at += 1 + record[at]  # legacy_session_id
    if msg_type == CLIENT_HELLO:
        at += 2 + int.from_bytes(record[at:at + 2], "big")  # cipher_suites
        at += 1 + record[at]  # legacy_compression_methods
    else:
        at += 2 + 1  # cipher_suite, legacy_compression_method
    extensions: dict[int, tuple[int, int]] = {}
    if at < msg_end:
        ext_end = at + 2 + int.from_bytes(record[at:at + 2], "big")
        if ext_end > msg_end:
            raise NotAHello("the extensions run past the hello")
        at += 2
        while at < ext_end:
            kind, length = int.from_bytes(record[at:at + 2], "big"), int.from_bytes(record[at + 2:at + 4], "big")
            if at + 4 + length > ext_end:
                raise NotAHello(f"extension {kind} runs past the hello")
            extensions[kind] = (at + 4, length)
            at += 4 + length
    return HelloFields(msg_type, legacy_version, bytes(record[random_at:random_at + 32]), extensions, random_at, end)


def offered_versions(record: bytes, fields: HelloFields) -> tuple[int, ...]:
    """A ClientHello's versions: its supported_versions list, or legacy_version alone without one."""
    body = fields.body(record, SUPPORTED_VERSIONS)
    if body is None:
        return (fields.legacy_version,)
    return tuple(int.from_bytes(body[i:i + 2], "big") for i in range(1, 1 + body[0], 2))


def chosen_version(record: bytes, fields: HelloFields) -> int:
    """A ServerHello's version: supported_versions if present, else legacy_version (RFC 8446 §4.2.1)."""
    body = fields.body(record, SUPPORTED_VERSIONS)
    return int.from_bytes(body[:2], "big") if body and len(body) >= 2 else fields.legacy_version


def downgrade_sentinel(fields: HelloFields) -> str | None:
    """What a ServerHello's random says the server was downgraded to, if it carries a sentinel."""
    return DOWNGRADE_SENTINELS.get(fields.random[-8:])


def without_tls13(record: bytes) -> tuple[bytes, bool]:
    """The ClientHello record with TLS 1.3 taken out of supported_versions, replaced by a GREASE value so that no
    length changes: a server that can do TLS 1.3 then negotiates TLS 1.2 and, if it follows RFC 8446 §4.1.3, marks
    its random with the downgrade sentinel. Returns (record, whether TLS 1.3 was offered)."""
    fields = walk(record)
    if fields.msg_type != CLIENT_HELLO or SUPPORTED_VERSIONS not in fields.extensions:
        return record, False
    at, length = fields.extensions[SUPPORTED_VERSIONS]
    changed = bytearray(record)
    offered = False
    for i in range(at + 1, at + 1 + min(record[at], length - 1) - 1, 2):
        version = int.from_bytes(record[i:i + 2], "big")
        if version == TLS13 or version >> 8 == 0x7F:  # TLS 1.3 and its drafts (0x7fxx)
            changed[i:i + 2] = GREASE_VERSION.to_bytes(2, "big")
            offered = True
    return bytes(changed), offered


def hide_downgrade_sentinel(record: bytes) -> bytes:
    """The ServerHello record with a downgrade sentinel at the end of its random replaced by other bytes (what a TLS
    stack that never checks the sentinel would amount to)."""
    fields = walk(record)
    if fields.msg_type != SERVER_HELLO or downgrade_sentinel(fields) is None:
        return record
    tail = fields.random_at + 24
    return record[:tail] + bytes(8) + record[tail + 8:]
