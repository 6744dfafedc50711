"""Pcap evidence: the `tcp` layer of a Recorder written as TCP conversations that Wireshark follows and decodes.

Why synthesize packets instead of capturing them: capturing needs privileges and an interface on the path, and a
remote target is not on ours. The recorder already holds every byte each harness connection put on its socket and
took from it, in order and with times, so the packets are rebuilt from it. Each connection becomes one TCP
conversation: a three-way handshake at its first recorded moment, its bytes as PSH/ACK segments whose sequence and
acknowledgement numbers are consistent in both directions (split so every IP packet fits), and a FIN exchange at
its last recorded moment. Direction "out" is harness -> IUT (local -> remote). What the pcap cannot tell (nothing
was captured): retransmissions, real segment boundaries, window sizes; packet times are the recorder's times
(wall clock at the start of the case plus the offset of each chunk).

Addresses and ports are the real ones of each connection (IPv4 or IPv6); where a connection's addresses are not
known, stable fake loopback addresses are used instead (remote port 5222). Wireshark dissects XMPP by port: 5222
is recognised without help; for any other port (the embedded reference service listens on a random one) say so:

    tshark -r capture.pcap -d tcp.port==PORT,xmpp -o tls.keylog_file:tls-keys.log

`tls-keys.log` (written beside the pcap for every case) lets Wireshark decrypt what follows STARTTLS.

`segments()` is the whole job, pure and without I/O; `write_pcap()` only frames each segment (headers built by
scapy) and writes it with scapy's PcapWriter, one at a time: the recorder is byte-capped, so the pcap is bounded
by the same cap plus some 60 bytes a packet.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import socket
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

from .wire import Recorder

MAX_SEGMENT = 60_000  # payload bytes per packet: with IP and TCP headers well under the 65535 of an IP length
LINKTYPE_RAW = 101  # pcap link type "raw IP": each packet starts with its IPv4 or IPv6 header
XMPP_PORT = 5222  # remote port of a connection whose address was not recorded
_MOD = 1 << 32


@dataclasses.dataclass(frozen=True)
class Segment:
    time: float  # seconds since the epoch
    src: tuple[str, int]
    dst: tuple[str, int]
    flags: str  # scapy's TCP flag letters: S, SA, A, PA, FA
    seq: int
    ack: int
    payload: bytes = b""


def _address(host: str) -> str:
    return host.split("%", 1)[0]  # an IPv6 link-local address may carry its zone ("fe80::1%eth0")


def _pair(recorder: Recorder, label: str, index: int) -> tuple[tuple[str, int], tuple[str, int]]:
    """(local, remote) of a connection: the recorded ones, or stable fake loopback ones, in one address family."""
    endpoint = recorder.endpoints.get(label)
    local = endpoint.local if endpoint is not None else None
    remote = endpoint.remote if endpoint is not None else None
    six = any(p is not None and ":" in p[0] for p in (local, remote))
    loopback = "::1" if six else "127.0.0.1"
    local = (_address(local[0]), int(local[1])) if local else (loopback, 40000 + index % 20000)
    remote = (_address(remote[0]), int(remote[1])) if remote else (loopback, XMPP_PORT)
    if six:  # one end known as IPv4, the other IPv6: write the IPv4 one as IPv4-mapped
        local, remote = [(f"::ffff:{h}" if ":" not in h else h, p) for h, p in (local, remote)]
    return local, remote


class _Conversation:
    """Sequence numbers of one TCP connection; every method returns the segments of one step."""

    def __init__(self, label: str, local: tuple[str, int], remote: tuple[str, int]):
        self.local, self.remote = local, remote
        # Stable initial sequence numbers, different per connection and side, so pcaps of one case compare well.
        self.next = {"out": zlib.crc32(f"{label}>".encode()), "in": zlib.crc32(f"{label}<".encode())}

    def _segment(self, time: float, direction: str, flags: str, payload: bytes = b"", ack: bool = True) -> Segment:
        other = "in" if direction == "out" else "out"
        src, dst = (self.local, self.remote) if direction == "out" else (self.remote, self.local)
        return Segment(time, src, dst, flags, self.next[direction] % _MOD, self.next[other] % _MOD if ack else 0,
                       payload)

    def open(self, time: float) -> list[Segment]:
        syn = self._segment(time, "out", "S", ack=False)
        self.next["out"] += 1
        syn_ack = self._segment(time, "in", "SA")
        self.next["in"] += 1
        return [syn, syn_ack, self._segment(time, "out", "A")]

    def data(self, time: float, direction: str, data: bytes) -> list[Segment]:
        out = []
        for start in range(0, len(data), MAX_SEGMENT):
            piece = data[start:start + MAX_SEGMENT]
            out.append(self._segment(time, direction, "PA", piece))
            self.next[direction] += len(piece)
        return out

    def close(self, time: float) -> list[Segment]:
        fin = self._segment(time, "out", "FA")
        self.next["out"] += 1
        fin_ack = self._segment(time, "in", "FA")
        self.next["in"] += 1
        return [fin, fin_ack, self._segment(time, "out", "A")]


def segments(recorder: Recorder) -> Iterator[Segment]:
    """Every packet of the pcap, in recorded order: one TCP conversation per connection that has `tcp` chunks."""
    chunks = list(recorder.chunks)
    with_bytes = {c.connection for c in chunks if c.layer == "tcp" and c.data}
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for i, chunk in enumerate(chunks):
        if chunk.connection in with_bytes:
            first.setdefault(chunk.connection, i)
            last[chunk.connection] = i
    opens = {i: label for label, i in first.items()}
    closes: dict[int, list[str]] = {}
    for label, i in last.items():
        closes.setdefault(i, []).append(label)
    conversations: dict[str, _Conversation] = {}
    for i, chunk in enumerate(chunks):
        time = recorder.wall_started + chunk.t
        if i in opens:  # the connection's first record: its handshake happened just before
            label = opens[i]
            conversation = conversations[label] = _Conversation(label, *_pair(recorder, label, len(conversations)))
            yield from conversation.open(time)
        if chunk.layer == "tcp" and chunk.data:
            yield from conversations[chunk.connection].data(time, chunk.direction, chunk.data)
        for label in closes.get(i, ()):  # the connection's last record: the harness hangs up
            yield from conversations[label].close(time)


class _Framer:
    """Turns segments into raw IP packets. scapy builds the headers, once per address family and set of flags,
    because building every packet with scapy takes some 0.3 ms and a suite run writes some 15 000 packets: that
    was seconds, nearly doubling the run. Each packet copies its header and sets its own addresses, ports,
    sequence and acknowledgement numbers, lengths and checksums."""

    def __init__(self):
        logging.getLogger("scapy").setLevel(logging.ERROR)  # no start-up chatter in a test run's output
        from scapy.config import conf
        conf.verb = 0
        from scapy.layers.inet import IP, TCP
        from scapy.layers.inet6 import IPv6
        from scapy.utils import checksum
        self._ip, self._ipv6, self._tcp, self._checksum = IP, IPv6, TCP, checksum
        self._headers: dict[tuple[bool, str], bytes] = {}

    def _header(self, six: bool, flags: str) -> bytes:
        """IP and TCP headers with zero addresses, ports, numbers and checksums."""
        if (six, flags) not in self._headers:
            network = self._ipv6(src="::", dst="::") if six else self._ip(src="0.0.0.0", dst="0.0.0.0", chksum=0)
            # The largest window scale in the handshake: no pure ACKs are written, so a whole recording may be in
            # flight at once, and Wireshark should not call that a full window.
            options = [("MSS", 65495), ("WScale", 14)] if "S" in flags else []
            tcp = self._tcp(sport=0, dport=0, flags=flags, seq=0, ack=0, window=65535, options=options, chksum=0)
            self._headers[six, flags] = bytes(network / tcp)
        return self._headers[six, flags]

    def frame(self, segment: Segment) -> bytes:
        six = ":" in segment.src[0]
        family, ip = (socket.AF_INET6, 40) if six else (socket.AF_INET, 20)  # scapy adds no IP options
        packet = bytearray(self._header(six, segment.flags))
        addresses = socket.inet_pton(family, segment.src[0]) + socket.inet_pton(family, segment.dst[0])
        tcp_length = len(packet) - ip + len(segment.payload)
        struct.pack_into("!HHII", packet, ip, segment.src[1], segment.dst[1], segment.seq, segment.ack)
        if six:  # payload length; the TCP checksum covers addresses, length and next header
            packet[8:40] = addresses
            struct.pack_into("!H", packet, 4, tcp_length)
            pseudo = addresses + struct.pack("!I3xB", tcp_length, socket.IPPROTO_TCP)
        else:  # total length and header checksum; the TCP checksum covers addresses, protocol and length
            packet[12:20] = addresses
            struct.pack_into("!H", packet, 2, ip + tcp_length)
            struct.pack_into("!H", packet, 10, self._checksum(bytes(packet[:20])))
            pseudo = addresses + struct.pack("!xBH", socket.IPPROTO_TCP, tcp_length)
        struct.pack_into("!H", packet, ip + 16, self._checksum(pseudo + bytes(packet[ip:]) + segment.payload))
        return bytes(packet) + segment.payload


def write_pcap(recorder: Recorder, path: Path) -> bool:
    """Writes the recorder's `tcp` layer to `path` as a pcap; False, and no file, when there is nothing to write.

    Raises whatever scapy or the file system raise; a half-written file is never left behind."""
    packets = segments(recorder)
    head = next(packets, None)
    if head is None:
        return False
    framer = _Framer()
    from scapy.utils import PcapWriter
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with PcapWriter(str(tmp), linktype=LINKTYPE_RAW, sync=False) as writer:
            writer.write_header(None)
            for segment in itertools.chain([head], packets):
                sec, usec = divmod(round(segment.time * 1_000_000), 1_000_000)
                writer.write_packet(framer.frame(segment), sec=sec, usec=usec)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return True
