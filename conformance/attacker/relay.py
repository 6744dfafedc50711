"""The active attacker on the path: a TCP relay between one harness party and the IUT.

Every intercepted connection (a *leg*) is relayed to the profile's IUT and nowhere else, and recorded byte for byte
with timestamps on the relay-to-IUT side. Knobs, set by the test while it runs, decide what the attacker does:

* `strip_tls_offer`: remove the service's offer of TLS from what reaches the victim (STARTTLS stripping);
* `terminate_tls`: answer the victim's TLS itself with a certificate of the attacker's choice, open its own TLS to
  the IUT, and relay the plaintext (the classic MITM that channel binding exists to detect);
* `flip(where)`: flip one bit of the next TLS application-data record the victim sends (tampering without keys);
* `drop` / `delay` a direction;
* `replay(...)`: send what one side sent, recorded, again on a fresh connection to the IUT.

Limits: a byte cap per direction per leg, a bound on each leg's lifetime, and teardown at the end of the test;
the relay listens on loopback only. What the application protocol contributes (where TLS starts, what the TLS offer
looks like) comes from the adapter as `StreamHooks`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
import time
from typing import Literal, Protocol

from conformance.transport.wire import Recorder

from .records import APPLICATION_DATA, NotTls, RecordSplitter, flip_bit
from .terminator import TlsEnd, TlsEnded, TlsFailed

Side = Literal["out", "in"]  # "out": victim -> IUT; "in": IUT -> victim (the recorder's directions)
READ = 64 * 1024


class StreamHooks(Protocol):
    """What the relay needs to know about the application protocol."""

    direct_tls: bool  # TLS from the first byte (XEP-0368) instead of an upgrade

    def tls_go_ahead(self, from_iut: bytes) -> bool:
        """Does this chunk from the IUT end the plaintext phase (XMPP: <proceed/>)?"""

    def strip_tls_offer(self, from_iut: bytes) -> bytes:
        """The chunk with the service's offer of TLS removed (XMPP: <starttls/> out of the stream features)."""


@dataclasses.dataclass
class Flip:
    where: str
    done: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    detail: str = ""


@dataclasses.dataclass
class Leg:
    """One intercepted connection: victim <-> relay <-> IUT."""

    index: int
    label: str  # the relay-to-IUT connection in the recorder
    opened: float
    received: dict[str, list[tuple[float, bytes]]]  # side -> chunks as the relay received them from that side
    iut_closed: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    victim_closed: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    iut_closed_at: float | None = None
    phase: str = "plaintext"  # plaintext -> tls (passed through) or terminated (two TLS sessions)
    tls_failure: str | None = None
    counts: dict[str, int] = dataclasses.field(default_factory=lambda: {"out": 0, "in": 0})

    def sent_by(self, side: Side) -> bytes:
        return b"".join(chunk for _, chunk in self.received[side])


@dataclasses.dataclass
class ReplayResult:
    chunks: int  # recorded chunks available to replay
    sent: int  # chunks the IUT took before it closed
    closed: bool  # the IUT closed the replayed connection
    seconds: float  # from the first replayed byte to the close (or to giving up)
    answered: int  # bytes the IUT sent on the replayed connection

    def __str__(self) -> str:
        if self.closed:
            return (f"the IUT closed the replayed connection after {self.sent} of {self.chunks} recorded chunks, "
                    f"{self.seconds:.2f}s in, having sent {self.answered} bytes")
        return (f"the IUT took all {self.chunks} recorded chunks and kept the connection open for "
                f"{self.seconds:.2f}s, having sent {self.answered} bytes")


class Relay:
    def __init__(self, target: tuple[str, int], recorder: Recorder, hooks: StreamHooks, *,
                 lifetime: float, cap: int = 16 * 1024 * 1024, keylog: str | None = None,
                 server_hostname: str | None = None):
        self.target = target
        self.recorder = recorder
        self.hooks = hooks
        self.lifetime = lifetime
        self.cap = cap
        self.keylog = keylog
        self.server_hostname = server_hostname
        self.legs: list[Leg] = []
        self.new_leg = asyncio.Event()
        # knobs
        self.strip_tls_offer = False
        self.victim_tls: ssl.SSLContext | None = None  # set: terminate TLS with this server context
        self.dropping: set[str] = set()
        self.delays: dict[str, float] = {}
        self._flips: list[Flip] = []
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    # -- life cycle ------------------------------------------------------------------------------------------------

    async def start(self) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, limit=READ)
        return self._server.sockets[0].getsockname()[:2]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2.0)

    def terminate_tls(self, context: ssl.SSLContext) -> None:
        self.victim_tls = context

    def flip(self, where: str) -> Flip:
        """Arm a bit flip in the next application-data record the victim sends after this call."""
        flip = Flip(where)
        self._flips.append(flip)
        return flip

    def latest_leg(self) -> Leg | None:
        return self.legs[-1] if self.legs else None

    # -- one intercepted connection ----------------------------------------------------------------------------------

    async def _accept(self, victim_r: asyncio.StreamReader, victim_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            await asyncio.wait_for(self._relay(victim_r, victim_w), self.lifetime)
        except asyncio.TimeoutError:
            self.recorder.event(f"mitm#{len(self.legs)}", f"relay gave up after its {self.lifetime:g}s lifetime")
        except asyncio.CancelledError:
            pass  # the relay is closing at the end of the test: end this connection's handler quietly
        finally:
            victim_w.close()
            self._tasks.discard(task)

    async def _relay(self, victim_r: asyncio.StreamReader, victim_w: asyncio.StreamWriter) -> None:
        endpoint = self.recorder.endpoint("mitm")
        leg = Leg(index=len(self.legs), label=endpoint.label, opened=time.monotonic(), received={"out": [], "in": []})
        self.legs.append(leg)
        self.new_leg.set()
        try:
            iut_r, iut_w = await asyncio.open_connection(*self.target, limit=READ)
        except OSError as exc:
            self.recorder.event(leg.label, f"cannot reach the IUT at {self.target[0]}:{self.target[1]}: {exc}")
            return
        sock = iut_w.get_extra_info("socket")
        if sock is not None:
            endpoint.local, endpoint.remote = sock.getsockname()[:2], sock.getpeername()[:2]
        self.recorder.event(leg.label, f"relaying a victim's connection to the IUT {self.target[0]}:{self.target[1]}")
        state = _LegState(self, leg, victim_w, iut_w)
        if self.hooks.direct_tls:
            await state.begin_tls()
        pumps = [asyncio.ensure_future(state.pump("out", victim_r)), asyncio.ensure_future(state.pump("in", iut_r))]
        try:
            # A side that ends its sending half-closes towards the other; the leg ends when both have ended
            # (or a pump gave up: a cap, a TLS failure), within the relay's lifetime.
            done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            if all(task.result() == "eof" for task in done if not task.cancelled() and not task.exception()):
                await asyncio.wait(pumps)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            iut_w.close()

    # -- replay ------------------------------------------------------------------------------------------------------

    async def replay(self, leg: Leg, *, side: Side = "out", offset: int = 0, settle: float = 0.3,
                     step: float = 5.0, close_within: float = 10.0) -> ReplayResult:
        """Send what `side` sent on `leg`, from byte `offset`, in its recorded chunks, on a fresh connection to
        the IUT; after each chunk let the IUT answer (until `settle` seconds of quiet, at most `step`). Then give
        the IUT `close_within` seconds to close."""
        if side != "out":
            raise ValueError("only what the victim sent can be replayed towards the IUT")
        chunks, skipped = [], 0
        for _, chunk in leg.received[side]:
            if skipped + len(chunk) <= offset:
                skipped += len(chunk)
                continue
            chunks.append(chunk[max(0, offset - skipped):])
            skipped += len(chunk)
        endpoint = self.recorder.endpoint("replay")
        reader, writer = await asyncio.open_connection(*self.target, limit=READ)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            endpoint.local, endpoint.remote = sock.getsockname()[:2], sock.getpeername()[:2]
        self.recorder.event(endpoint.label, f"replaying {len(chunks)} chunks ({sum(map(len, chunks))} bytes) that "
                                            f"{leg.label}'s victim sent")
        started = time.monotonic()
        answered, sent, closed = 0, 0, False
        loop = asyncio.get_running_loop()
        try:
            for chunk in chunks:
                try:
                    writer.write(chunk)
                    await writer.drain()
                except OSError:
                    closed = True
                    break
                self.recorder.add(endpoint.label, "out", "tcp", chunk)
                sent += 1
                got, closed = await _read_until_quiet(reader, settle, step, self.recorder, endpoint.label)
                answered += got
                if closed:
                    break
            deadline = loop.time() + close_within
            while not closed and loop.time() < deadline:
                got, closed = await _read_until_quiet(reader, deadline - loop.time(), deadline - loop.time(),
                                                      self.recorder, endpoint.label)
                answered += got
        finally:
            writer.close()
        seconds = time.monotonic() - started
        self.recorder.event(endpoint.label, "the IUT closed the replayed connection" if closed
                            else f"the replayed connection was still open after {seconds:.2f}s")
        return ReplayResult(chunks=len(chunks), sent=sent, closed=closed, seconds=seconds, answered=answered)


async def _read_until_quiet(reader: asyncio.StreamReader, settle: float, bound: float, recorder: Recorder,
                            label: str) -> tuple[int, bool]:
    """Read what the peer sends until it has been quiet for `settle` seconds or `bound` seconds passed.
    Returns (bytes read, whether the peer closed)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound
    total = 0
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return total, False
        try:
            data = await asyncio.wait_for(reader.read(READ), min(settle, remaining))
        except asyncio.TimeoutError:
            return total, False
        except OSError:
            recorder.event(label, "the IUT reset the connection")
            return total, True
        if not data:
            recorder.event(label, "the IUT closed the connection")
            return total, True
        recorder.add(label, "in", "tcp", data)
        total += len(data)


class _LegState:
    """The moving parts of one leg: both writers, the TLS framing or terminated sessions, and the pumps."""

    def __init__(self, relay: Relay, leg: Leg, victim_w: asyncio.StreamWriter, iut_w: asyncio.StreamWriter):
        self.relay = relay
        self.leg = leg
        self.writers = {"out": iut_w, "in": victim_w}  # where bytes read on each side go
        self.splitter = RecordSplitter()  # victim -> IUT records, once TLS passes through
        self.victim_end: TlsEnd | None = None
        self.iut_end: TlsEnd | None = None
        self.recorder = relay.recorder
        self._tail = b""  # end of the previous chunk from the IUT, so a split <proceed/> is still seen

    async def begin_tls(self) -> None:
        """From here on the bytes are TLS: framed and passed through, or terminated on both sides."""
        if self.relay.victim_tls is None:
            self.leg.phase = "tls"
            self.recorder.event(self.leg.label, "TLS starts (passed through)")
            return
        self.leg.phase = "terminated"
        self.victim_end = TlsEnd(self.relay.victim_tls, server_side=True)
        self.recorder.event(self.leg.label, "TLS starts: the attacker answers the victim's handshake itself")

    async def _open_iut_end(self) -> None:
        """Once the victim's TLS is up, the attacker opens its own to the IUT, at the same TLS version (a MITM that
        mirrors its victim, so the IUT offers what it would offer the victim)."""
        version = self.victim_end.version
        upstream = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        upstream.check_hostname = False
        upstream.verify_mode = ssl.CERT_NONE  # the attacker does not care whom it talks to
        upstream.minimum_version = ssl.TLSVersion.TLSv1_2
        if version == "TLSv1.2":
            upstream.maximum_version = ssl.TLSVersion.TLSv1_2
        if self.relay.keylog:
            upstream.keylog_filename = self.relay.keylog
        self.iut_end = TlsEnd(upstream, server_side=False, server_hostname=self.relay.server_hostname)
        self.recorder.event(self.leg.label, f"victim's TLS up ({version}); the attacker opens its own to the IUT")
        await self._write("out", self.iut_end.start(), record=True)

    async def _write(self, side: Side, data: bytes, *, record: bool) -> None:
        if not data:
            return
        if record and side == "out":
            self.recorder.add(self.leg.label, "out", "tcp", data)
        writer = self.writers[side]
        writer.write(data)
        await writer.drain()

    async def pump(self, side: Side, reader: asyncio.StreamReader) -> None:
        """Move what `side`'s peer sends to the other peer until either closes."""
        relay, leg = self.relay, self.leg
        while True:
            try:
                data = await reader.read(READ)
            except OSError:
                data = b""
            if not data:
                if side == "in":
                    leg.iut_closed_at = time.monotonic()
                    leg.iut_closed.set()
                    self.recorder.event(leg.label, "the IUT closed the connection")
                else:
                    leg.victim_closed.set()
                    self.recorder.event(leg.label, "the victim closed the connection")
                return await self._half_close(side)
            leg.received[side].append((time.monotonic(), data))
            leg.counts[side] += len(data)
            if side == "in":
                self.recorder.add(leg.label, "in", "tcp", data)
            if leg.counts[side] > relay.cap:
                self.recorder.event(leg.label, f"relay byte cap ({relay.cap}) reached on '{side}': tearing down")
                return
            if side in relay.dropping:
                self.recorder.event(leg.label, f"dropped {len(data)} bytes going '{side}'")
                continue
            if relay.delays.get(side):
                await asyncio.sleep(relay.delays[side])
            try:
                await self._forward(side, data)
            except (TlsFailed, TlsEnded) as exc:
                leg.tls_failure = str(exc)
                self.recorder.event(leg.label, f"TLS on the {'victim' if side == 'out' else 'IUT'} side ended: {exc}")
                await self._flush_alerts()
                return
            except NotTls as exc:
                self.recorder.event(leg.label, f"cannot frame the victim's bytes as TLS: {exc}")
                return
            except (ConnectionError, OSError):
                return

    async def _half_close(self, side: Side) -> str:
        """Pass an end of stream on: the other peer may still answer (and the relay still carries that)."""
        writer = self.writers[side]
        try:
            if writer.can_write_eof():
                writer.write_eof()
                return "eof"
        except (OSError, RuntimeError):
            pass
        return "closed"

    async def _forward(self, side: Side, data: bytes) -> None:
        phase = self.leg.phase
        if phase == "plaintext":
            if side == "in":
                if self.relay.strip_tls_offer:
                    stripped = self.relay.hooks.strip_tls_offer(data)
                    if stripped != data:
                        self.recorder.event(self.leg.label, "stripped the TLS offer from the IUT's features")
                    data = stripped
                go_ahead = self.relay.hooks.tls_go_ahead(self._tail + data)
                self._tail = data[-64:]
                if go_ahead:
                    await self.begin_tls()  # before the victim can answer <proceed/> with its ClientHello
                await self._write("in", data, record=False)
            else:
                await self._write("out", data, record=True)
        elif phase == "tls":
            if side == "in":
                await self._write("in", data, record=False)
                return
            records = self.splitter.feed(data)
            for record in records:
                if record.content_type == APPLICATION_DATA and self.relay._flips:
                    flip = self.relay._flips.pop(0)
                    offset = flip_bit(record, flip.where)
                    flip.detail = (f"flipped the low bit of byte {offset} ({flip.where}) of a {record.fragment_length}"
                                   f"-byte application_data record")
                    self.recorder.event(self.leg.label, flip.detail)
                    flip.done.set()
            await self._write("out", b"".join(record.data for record in records), record=True)
        else:  # terminated: decrypt from one side, encrypt for the other
            if side == "out":
                plaintext, reply = self.victim_end.receive(data)
                await self._write("in", reply, record=False)
                if self.iut_end is None and self.victim_end.established:
                    await self._open_iut_end()
                if plaintext:
                    self.recorder.add(self.leg.label, "out", "app", plaintext)
                    await self._write("out", self.iut_end.send(plaintext), record=True)
            else:
                if self.iut_end is None:
                    raise TlsFailed("the IUT sent data before the attacker's TLS to it began")
                plaintext, reply = self.iut_end.receive(data)
                await self._write("out", reply, record=True)
                if plaintext:
                    self.recorder.add(self.leg.label, "in", "app", plaintext)
                    await self._write("in", self.victim_end.send(plaintext), record=False)
                await self._write("out", self.iut_end.leftover(), record=True)  # what was held for the handshake

    async def _flush_alerts(self) -> None:
        for end, side in ((self.victim_end, "in"), (self.iut_end, "out")):
            if end is not None:
                try:
                    await self._write(side, end.leftover(), record=side == "out")
                except (ConnectionError, OSError):
                    pass
