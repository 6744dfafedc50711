"""TLS seen from the path, without keys: the record framing (RFC 8446 §5.1, RFC 5246 §6.2), which is all an
on-path attacker can parse in ciphertext, and the one bit it flips.

Sans-IO: bytes in, records out; nothing here touches a socket.
"""

from __future__ import annotations

import dataclasses

HEADER = 5
MAX_RECORD = (1 << 14) + 2048 + HEADER  # the largest TLSCiphertext any version allows
APPLICATION_DATA = 23
CONTENT_TYPES = {20: "change_cipher_spec", 21: "alert", 22: "handshake", 23: "application_data"}


class NotTls(Exception):
    """The bytes do not frame as TLS records."""


@dataclasses.dataclass
class Record:
    content_type: int
    data: bytearray  # header and fragment, as on the wire

    @property
    def fragment_length(self) -> int:
        return len(self.data) - HEADER

    @property
    def kind(self) -> str:
        return CONTENT_TYPES.get(self.content_type, str(self.content_type))


class RecordSplitter:
    """Cuts one direction of a TLS byte stream into whole records, holding back a partial one."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Record]:
        self._buffer += data
        records, start, buffer = [], 0, self._buffer
        while len(buffer) - start >= HEADER:
            content_type, major = buffer[start], buffer[start + 1]
            length = int.from_bytes(buffer[start + 3:start + 5], "big")
            if content_type not in CONTENT_TYPES or major != 3 or length + HEADER > MAX_RECORD:
                raise NotTls(f"bytes {bytes(buffer[start:start + HEADER]).hex()} are not a TLS record header")
            end = start + HEADER + length
            if len(buffer) < end:
                break
            records.append(Record(content_type, buffer[start:end]))
            start = end
        del buffer[:start]  # once per feed: cutting record by record would copy the rest each time
        return records

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def take_all(self) -> bytes:
        """Everything not yet returned as a record (after NotTls: from the record before the bad header on)."""
        data, self._buffer = bytes(self._buffer), bytearray()
        return data


POSITIONS = ("first", "middle", "last")


def flip_bit(record: Record, where: str) -> int:
    """Flip the low bit of one fragment byte: the first (start of the ciphertext), the middle, or the last (inside
    the AEAD tag or MAC). Returns the offset of that byte within the record."""
    if where not in POSITIONS:
        raise ValueError(f"unknown position {where!r}; one of {', '.join(POSITIONS)}")
    if record.fragment_length == 0:
        raise ValueError("an empty record has no bit to flip")
    index = {"first": 0, "middle": record.fragment_length // 2, "last": record.fragment_length - 1}[where]
    record.data[HEADER + index] ^= 0x01
    return HEADER + index
