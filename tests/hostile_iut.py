"""A hostile IUT that turns hostile in the middle of a case: the embedded reference service, unchanged until a
test's payload (a canary, `CAN-...`) reaches it, then misbehaving on the wire.

Run it as a script (`python tests/hostile_iut.py --data DIR --behaviour NAME`): it prints `READY <profile path>`
like `python -m conformance.reference`, and stops at SIGTERM, SIGINT or the end of its standard input.

The preflight and every case's set-up (logins, roster resets) see a working server, because they carry no canary.
When the service is about to write a stanza carrying a canary to a client (the delivery a positive control waits
for), the behaviour takes that connection over instead; the service's own later writes and closes on it are
swallowed, so only the behaviour speaks there (the session behind it lives on in the service, as a broken
server's would):

  billion-laughs  a DTD with nine levels of nested entities, then a stanza referencing the outermost one; and,
                  once that has happened, on every new connection the same DTD before the stream header that
                  follows STARTTLS (where a DTD is well-formed XML), with features referencing the entity
  endless-stanza  `<message ...><body>` and then body text that never ends
  trickle         the same, one byte every 20 ms: the stanza never ends, and never grows large
  flood           an endless stream of small, valid <message/> stanzas
  flood-large     an endless stream of valid <message/> stanzas of 200 KB each (under the parser's unit limit)
  iq-flood        stops reading, then an endless stream of <iq type='get'/> (pings) a client answers: the
                  client's answers pile up unread
  random-bytes    random bytes instead of XML (inside TLS: the XML parser gets them)
  reset           a TCP reset (SO_LINGER 0, then close)
  tls-stall       armed by the first canary: every later connection gets <proceed/> to STARTTLS and then no TLS
                  at all (the ClientHello is read and ignored)

Every behaviour stops by itself at MAX_BYTES written or MAX_SECONDS, or when the peer goes away.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import struct
import sys
import time
from pathlib import Path

from conformance.reference.__main__ import serve
from conformance.reference.config import ServiceConfig
from conformance.reference.service import Service

BEHAVIOURS = ("billion-laughs", "endless-stanza", "trickle", "flood", "flood-large", "iq-flood", "random-bytes",
              "reset", "tls-stall")
IN_STREAM = tuple(b for b in BEHAVIOURS if b != "tls-stall")
MAX_BYTES = 50 * 1024 * 1024  # what one behaviour writes at most on one connection
MAX_SECONDS = 30.0  # how long one behaviour goes on at most
CHUNK = 64 * 1024
CANARY = b"CAN-"
XML_DECLARATION = b"<?xml version='1.0'?>"
# Ten to the ninth 'lol's once expanded: about 3 GB from under 1 KB.
LAUGHS = b"<!DOCTYPE stream:stream [<!ENTITY lol0 'lol'>" + b"".join(
    b"<!ENTITY lol%d '%s'>" % (i, b"&lol%d;" % (i - 1) * 10) for i in range(1, 10)) + b"]>"


class _Taken:
    """A StreamWriter stand-in: passes everything to the real writer until the behaviour takes the connection
    over; from then on the service's writes, drains and closes on it are swallowed."""

    def __init__(self, writer: asyncio.StreamWriter, reader: asyncio.StreamReader, hostile: "HostileService"):
        self._writer = writer
        self._reader = reader
        self._hostile = hostile
        self.taken = False
        self.armed_before = hostile.fired  # accepted after the behaviour first fired

    def __getattr__(self, name):
        return getattr(self._writer, name)

    def write(self, data: bytes) -> None:
        if self.taken:
            return
        if CANARY in data and self._hostile.behaviour in IN_STREAM:
            self._hostile.fire(self)
            return
        if (self._hostile.behaviour == "billion-laughs" and self.armed_before and data.startswith(XML_DECLARATION)
                and self._writer.get_extra_info("ssl_object") is not None):
            self._hostile.fire(self, header=data)
            return
        self._writer.write(data)

    async def drain(self) -> None:
        if not self.taken:
            await self._writer.drain()

    def close(self) -> None:
        if not self.taken:
            self._writer.close()

    async def start_tls(self, context, **kwargs) -> None:
        if self._hostile.behaviour == "tls-stall" and self._hostile.fired:
            self._hostile.log("tls-stall: <proceed/> sent, no TLS will follow")
            await self._hostile.stall(self._writer, self._reader)
            raise ConnectionError("hostile: the TLS handshake was never answered")
        await self._writer.start_tls(context, **kwargs)


class HostileService(Service):
    def __init__(self, config: ServiceConfig, behaviour: str):
        super().__init__(config)
        self.behaviour = behaviour
        self.fired = False
        self._hostile_tasks: set[asyncio.Task] = set()

    async def _accept(self, reader, writer, **kwargs) -> None:
        await super()._accept(reader, _Taken(writer, reader, self), **kwargs)

    def handle_stanza(self, session, unit, *args, **kwargs):
        if self.behaviour == "tls-stall" and not self.fired and CANARY in b"".join(
                t.encode() for t in unit.itertext()):
            self.fired = True  # arms: connections from now on stall in their TLS handshake
            self.log("hostile: tls-stall armed")
        return super().handle_stanza(session, unit, *args, **kwargs)

    def fire(self, taken: _Taken, header: bytes | None = None) -> None:
        self.fired = True
        taken.taken = True
        self.log(f"hostile: {self.behaviour} takes over a connection" + (" at its stream header" if header else ""))
        task = asyncio.get_running_loop().create_task(self._misbehave(taken._writer, header))
        self._hostile_tasks.add(task)
        task.add_done_callback(self._hostile_tasks.discard)

    async def _misbehave(self, writer: asyncio.StreamWriter, header: bytes | None) -> None:
        started = time.monotonic()
        written = 0

        async def put(data: bytes) -> bool:
            """Write and wait for the peer to take it; False once a bound is reached or the peer is gone."""
            nonlocal written
            if written + len(data) > MAX_BYTES or time.monotonic() - started > MAX_SECONDS:
                return False
            try:
                writer.write(data)
                await asyncio.wait_for(writer.drain(), max(0.1, MAX_SECONDS - (time.monotonic() - started)))
            except (ConnectionError, RuntimeError, OSError, asyncio.TimeoutError):
                return False
            written += len(data)
            return not writer.transport.is_closing()

        try:
            if self.behaviour == "billion-laughs" and header is not None:
                await put(XML_DECLARATION + LAUGHS + header[len(XML_DECLARATION):]
                          + b"<stream:features>&lol9;</stream:features>")
                await self._hold(writer, started)
            elif self.behaviour == "billion-laughs":
                await put(LAUGHS + b"<message to='alice@iut.test' type='chat'><body>&lol9;</body></message>")
                await self._hold(writer, started)
            elif self.behaviour == "endless-stanza":
                if await put(b"<message to='alice@iut.test' type='chat'><body>"):
                    for _ in range(MAX_BYTES // CHUNK):
                        if not await put(b"lol " * (CHUNK // 4)):
                            break
            elif self.behaviour == "trickle":
                if await put(b"<message to='alice@iut.test' type='chat'><body>"):
                    for _ in range(int(MAX_SECONDS / 0.02)):
                        if not await put(b"l"):
                            break
                        await asyncio.sleep(0.02)  # the pace of the behaviour, not a wait for anything
            elif self.behaviour in ("flood", "flood-large", "iq-flood"):
                if self.behaviour == "flood":
                    batch = b"".join(b"<message from='bob@iut.test/flood' to='alice@iut.test' type='chat' "
                                     b"id='f%d'><body>flood %d</body></message>" % (i, i) for i in range(600))
                elif self.behaviour == "flood-large":
                    batch = (b"<message from='bob@iut.test/flood' to='alice@iut.test' type='chat'><body>"
                             + b"flood " * (200 * 1024 // 6) + b"</body></message>")
                else:
                    writer.transport.pause_reading()
                    batch = b"".join(b"<iq type='get' from='bob@iut.test/flood' to='alice@iut.test/x' id='p%d'>"
                                     b"<ping xmlns='urn:xmpp:ping'/></iq>" % i for i in range(600))
                for _ in range(MAX_BYTES // len(batch)):
                    if not await put(batch):
                        break
            elif self.behaviour == "random-bytes":
                for _ in range(16):  # 1 MB
                    if not await put(os.urandom(CHUNK)):
                        break
                await self._hold(writer, started)
            elif self.behaviour == "reset":
                sock = writer.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
        finally:
            self.log(f"hostile: {self.behaviour} done after {written} bytes, {time.monotonic() - started:.1f}s")
            writer.transport.abort()

    async def _hold(self, writer: asyncio.StreamWriter, started: float) -> None:
        """Say nothing more, keep the connection open until the peer goes (or the time bound)."""
        for _ in range(int(MAX_SECONDS * 10)):
            if writer.transport.is_closing() or time.monotonic() - started > MAX_SECONDS:
                return
            await asyncio.sleep(0.1)  # polls the transport's state; nothing to wait on but the peer's close

    async def stall(self, writer: asyncio.StreamWriter, reader: asyncio.StreamReader) -> None:
        """Read (and ignore) what comes, answer nothing, until the peer closes or the time bound."""
        writer.transport.resume_reading()
        deadline = time.monotonic() + MAX_SECONDS
        for _ in range(100_000):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                if not await asyncio.wait_for(reader.read(CHUNK), remaining):
                    return
            except (asyncio.TimeoutError, ConnectionError, OSError):
                return

    async def stop(self) -> None:
        for task in list(self._hostile_tasks):
            task.cancel()
        await super().stop()


def announce(_service, _port, profile: Path) -> None:
    print(f"READY {profile}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--behaviour", required=True, choices=BEHAVIOURS)
    args = parser.parse_args()
    asyncio.run(serve(ServiceConfig(data_dir=args.data), announce, exit_with_parent=True,
                      make=lambda config: HostileService(config, args.behaviour)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
