"""The active attacker on the path: a TCP relay between one harness party and the IUT.

Every intercepted connection (a *leg*) is relayed to the profile's IUT and nowhere else, and recorded byte for byte
with timestamps on the relay-to-IUT side. Knobs, set by the test while it runs, decide what the attacker does:

* `strip_tls_offer`: remove the service's offer of TLS from what reaches the victim (STARTTLS stripping);
* `terminate_tls`: answer the victim's TLS itself with a certificate of the attacker's choice, open its own TLS to
  the IUT, and relay the plaintext (the classic MITM that channel binding exists to detect);
* `flip(where)`: flip one bit of the next TLS application-data record the victim sends (tampering without keys),
  or with `towards="victim"` of the next one the IUT sends the victim (passed-through TLS);
* `drop` / `delay` a direction;
* `replay(...)`: send what one side sent, recorded, again on a fresh connection to the IUT;
* `inject_to_victim(leg, data)`: write bytes to a leg's victim as if the IUT had sent them; each leg keeps the TLS
  records the IUT sent its victim (passed-through TLS: the latest MAX_KEPT_RECORDS / MAX_KEPT_BYTES, with their
  arrival times), so a flight of them can be sent again (a replay towards the victim);
* `fail_tls`: make every TLS attempt fail, on every leg while it is set: `refused` (the adapter's refusal instead of
  passing the victim's request for TLS on; with direct TLS, where nothing is requested, as `reset`), `reset` (a
  TCP RST once the victim's first TLS bytes arrive), `alert` (a fatal internal_error alert instead of a
  ServerHello; the IUT's side is closed too) or `silent` (the victim's TLS bytes go nowhere and nothing answers
  them: a ServerHello that never comes, until the victim gives up);
* `rewrite_to_victim`: a function applied to what goes to the victim in plaintext (before TLS, or inside TLS the
  attacker terminates), e.g. altering a SASL exchange. A unit may come in pieces, so while a rewrite is set the
  relay holds back what goes to the victim as long as the adapter says it ends inside a unit the rewrite may need
  whole (`StreamHooks.unit_incomplete`; XMPP: inside a tag, or in an unfinished SASL <success/>, <challenge/>,
  <mechanisms/> or stream features), up to HOLD_LIMIT bytes, and rewrites it once complete (or the IUT closes);
* `terminate_tls(EarlyDataTermination(...))`: the same with tickets that allow TLS 1.3 early data, which the leg
  keeps (`early_data_from_victim`) and passes on once the handshake is complete;
* `rewrite_client_hello`: with terminated TLS, a function applied to the record carrying the victim's ClientHello
  before the attacker's own TLS end answers it (e.g. TLS 1.3 taken out of its versions: a simulated downgrade).

When the victim is a client under test and the "IUT" behind the relay the harness's genuine service, the same
knobs attack the client; each leg keeps what the victim sent in clear (`cleartext_from_victim`, also on legs where
TLS never came up), where the attacker terminated TLS the victim's decrypted plaintext (`plaintext_from_victim`),
in `tls_failure` why TLS failed (the victim refusing the attacker's certificate, the attacker's own `fail_tls`,
...), and the opening TLS bytes each way of a terminated handshake (`tls_from_victim_head`, `tls_to_victim_head`).

Limits: a byte cap per direction per leg, a bound on each leg's lifetime, and teardown at the end of the test;
the relay listens on loopback only. What the application protocol contributes (where TLS starts, what the TLS offer
looks like) comes from the adapter as `StreamHooks`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import ssl
import struct
import time
from typing import Callable, Literal, Protocol

from conformance.transport.hello_bytes import NotAHello, complete_record
from conformance.transport.wire import Recorder

from .records import APPLICATION_DATA, NotTls, RecordSplitter, flip_bit
from .terminator import EarlyDataTermination, TlsEnd, TlsEnded, TlsFailed

Side = Literal["out", "in"]  # "out": victim -> IUT; "in": IUT -> victim (the recorder's directions)
READ = 64 * 1024
MAX_KEPT_RECORDS = 2000  # TLS records to the victim kept per leg for re-injection (the latest) ...
MAX_KEPT_BYTES = 4 * 1024 * 1024  # ... within this many bytes; also the bound on the victim's kept clear/plaintext
HOLD_LIMIT = 64 * 1024  # at most this much is held back for a rewrite waiting for a complete unit
HANDSHAKE_HEAD = 16 * 1024  # the first TLS bytes each way kept per terminated leg: the handshake's opening flights
FATAL_INTERNAL_ERROR = bytes([21, 3, 3, 0, 2, 2, 80])  # alert record: fatal (2), internal_error (80)
FAIL_TLS_MODES = ("refused", "reset", "alert", "silent")


class LegOver(Exception):
    """The attacker ended the leg on purpose (a TLS failure it caused, or a rewrite that failed)."""

    def __init__(self, note: str, *, tls_failure: bool = True):
        super().__init__(note)
        self.tls_failure = tls_failure


class StreamHooks(Protocol):
    """What the relay needs to know about the application protocol."""

    direct_tls: bool  # TLS from the first byte (XEP-0368) instead of an upgrade

    def tls_go_ahead(self, from_iut: bytes) -> bool:
        """Does this chunk from the IUT end the plaintext phase (XMPP: <proceed/>)?"""

    def strip_tls_offer(self, from_iut: bytes) -> bytes:
        """The chunk with the service's offer of TLS removed (XMPP: <starttls/> out of the stream features)."""

    def tls_request(self, from_victim: bytes) -> bool:
        """Does this chunk from the victim ask to start TLS (XMPP: <starttls/>)?"""

    def tls_refusal(self) -> bytes:
        """What refuses that request and ends the stream (XMPP: <failure/> and </stream:stream>)."""

    def unit_incomplete(self, to_victim: bytes) -> bool:
        """Does this plaintext for the victim end inside a unit a rewrite may need whole (then the relay waits for
        more before rewriting it)?"""


@dataclasses.dataclass
class Flip:
    where: str
    towards: str = "iut"  # whose records: "iut" (what the victim sends) or "victim" (what the IUT sends it)
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
    cleartext_from_victim: bytearray = dataclasses.field(default_factory=bytearray)  # before any TLS
    plaintext_from_victim: bytearray = dataclasses.field(default_factory=bytearray)  # inside terminated TLS
    # passed-through TLS: the complete records the IUT sent the victim, (time.monotonic() on arrival, record), the
    # latest MAX_KEPT_RECORDS within MAX_KEPT_BYTES; `records_to_victim_dropped` older ones were let go
    records_to_victim: list[tuple[float, bytes]] = dataclasses.field(default_factory=list)
    records_to_victim_bytes: int = 0
    records_to_victim_dropped: int = 0
    rewrites: int = 0  # chunks to the victim that `rewrite_to_victim` changed
    # terminated TLS: the first HANDSHAKE_HEAD bytes of TLS each way, as sent (the victim's as it sent them, before
    # any `rewrite_client_hello`), so that what each end said in the handshake can be read afterwards
    tls_from_victim_head: bytearray = dataclasses.field(default_factory=bytearray)
    tls_to_victim_head: bytearray = dataclasses.field(default_factory=bytearray)
    early_data_from_victim: bytearray = dataclasses.field(default_factory=bytearray)  # TLS 1.3 0-RTT, decrypted
    victim_writer: asyncio.StreamWriter | None = None

    @property
    def records_to_victim_seen(self) -> int:
        """How many records to the victim the leg has kept so far, counting those let go (a position for marks)."""
        return self.records_to_victim_dropped + len(self.records_to_victim)

    def records_to_victim_since(self, position: int) -> list[tuple[float, bytes]] | None:
        """The kept records from `position` (a `records_to_victim_seen` value) on; None if some were let go."""
        start = position - self.records_to_victim_dropped
        return None if start < 0 else self.records_to_victim[start:]

    def keep_record_to_victim(self, record: bytes) -> None:
        kept = self.records_to_victim
        kept.append((time.monotonic(), record))
        self.records_to_victim_bytes += len(record)
        drop = 0
        while drop < len(kept) - 1 and (len(kept) - drop > MAX_KEPT_RECORDS
                                        or self.records_to_victim_bytes > MAX_KEPT_BYTES):
            self.records_to_victim_bytes -= len(kept[drop][1])
            drop += 1
        if drop:
            self.records_to_victim_dropped += drop
            del kept[:drop]

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
        self.victim_tls: ssl.SSLContext | EarlyDataTermination | None = None  # set: terminate TLS with it
        self.dropping: set[str] = set()
        self.delays: dict[str, float] = {}
        self.fail_tls: str | None = None  # one of FAIL_TLS_MODES: every TLS attempt fails that way
        self.rewrite_to_victim: Callable[[bytes], bytes] | None = None  # on plaintext going to the victim
        # terminated TLS: applied to the record carrying the victim's ClientHello before the attacker's TLS end
        # reads it (the victim's transcript then differs from the attacker's: the handshake cannot complete)
        self.rewrite_client_hello: Callable[[bytes], bytes] | None = None
        self._flips: list[Flip] = []
        self._flips_to_victim: list[Flip] = []
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

    def terminate_tls(self, context: ssl.SSLContext | EarlyDataTermination) -> None:
        self.victim_tls = context

    def flip(self, where: str, towards: str = "iut") -> Flip:
        """Arm a bit flip in the next application-data record the victim sends after this call (`towards="iut"`),
        or in the next one the IUT sends the victim (`towards="victim"`)."""
        if towards not in ("iut", "victim"):
            raise ValueError(f"flip towards 'iut' or 'victim', not {towards!r}")
        flip = Flip(where, towards)
        (self._flips if towards == "iut" else self._flips_to_victim).append(flip)
        return flip

    async def inject_to_victim(self, leg: Leg, data: bytes) -> int:
        """Write `data` (typically TLS records the leg kept) to the victim of `leg`, as if the IUT had sent them.
        Returns the bytes written: 0 if the victim's connection is already closed. The relay writes what the IUT
        sends a victim in whole records in the passed-through TLS phase, so injected records never split one."""
        writer = leg.victim_writer
        if writer is None or writer.is_closing():
            self.recorder.event(leg.label, f"cannot re-inject {len(data)} bytes: the victim's connection is closed")
            return 0
        try:
            records = f"{len(RecordSplitter().feed(data))} records"
        except NotTls:
            records = "not TLS records"
        try:
            writer.write(data)
            await writer.drain()
        except (ConnectionError, OSError) as exc:
            self.recorder.event(leg.label, f"cannot re-inject {len(data)} bytes towards the victim: {exc}")
            return 0
        self.recorder.event(leg.label, f"re-injected {len(data)} bytes ({records}) towards the victim")
        return len(data)

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
        leg = Leg(index=len(self.legs), label=endpoint.label, opened=time.monotonic(), received={"out": [], "in": []},
                  victim_writer=victim_w)
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
        self.splitter_in: RecordSplitter | None = RecordSplitter()  # IUT -> victim records (None: unframeable)
        self.victim_end: TlsEnd | None = None
        self.iut_end: TlsEnd | None = None
        self.recorder = relay.recorder
        self._tail = b""  # end of the previous chunk from the IUT, so a split <proceed/> is still seen
        self._victim_tls_seen = False  # the victim's first TLS bytes (its ClientHello) arrived
        self._silenced = False  # fail_tls 'silent': the victim's TLS bytes are swallowed, never answered
        self._held = b""  # plaintext for the victim held back for a rewrite until its unit is complete
        self._hello = b""  # the victim's first TLS bytes, held until its ClientHello record is whole (for a rewrite)
        self._hello_done = False
        self._early = b""  # the victim's 0-RTT plaintext, for the IUT once the attacker's TLS to it is up

    async def begin_tls(self) -> None:
        """From here on the bytes are TLS: framed and passed through, or terminated on both sides."""
        if self.relay.victim_tls is None:
            self.leg.phase = "tls"
            self.recorder.event(self.leg.label, "TLS starts (passed through)")
            return
        self.leg.phase = "terminated"
        if isinstance(self.relay.victim_tls, EarlyDataTermination):
            self.victim_end = self.relay.victim_tls.end()
        else:
            self.victim_end = TlsEnd(self.relay.victim_tls, server_side=True)
        self.recorder.event(self.leg.label, "TLS starts: the attacker answers the victim's handshake itself")

    async def _open_iut_end(self) -> None:
        """Once the victim's TLS is up, the attacker opens its own to the IUT. It mirrors a victim at TLS 1.2 (so
        the IUT offers what it would offer the victim, e.g. tls-unique); otherwise, including a victim the attacker
        lured to a legacy version on purpose, it takes whatever version from 1.2 up the IUT agrees to."""
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

    async def pump(self, side: Side, reader: asyncio.StreamReader) -> str | None:
        """Move what `side`'s peer sends to the other peer until either closes."""
        relay, leg = self.relay, self.leg
        while True:
            reset = None
            try:
                data = await reader.read(READ)
            except OSError as exc:
                data, reset = b"", exc
            if not data:
                if side == "in":
                    leg.iut_closed_at = time.monotonic()
                    leg.iut_closed.set()
                    self.recorder.event(leg.label, "the IUT closed the connection" if reset is None
                                        else f"the IUT reset the connection ({reset})")
                    try:
                        await self._flush_held()
                    except LegOver as exc:
                        self.recorder.event(leg.label, str(exc))
                    except (TlsFailed, TlsEnded, ConnectionError, OSError):
                        pass
                else:
                    leg.victim_closed.set()
                    self.recorder.event(leg.label, "the victim closed the connection" if reset is None
                                        else f"the victim reset the connection ({reset})")
                    self._victim_left_mid_handshake("closed" if reset is None else "reset")
                return await self._half_close(side)
            leg.received[side].append((time.monotonic(), data))
            leg.counts[side] += len(data)
            if side == "in":
                self.recorder.add(leg.label, "in", "tcp", data)
            if leg.counts[side] > relay.cap:
                self.recorder.event(leg.label, f"relay byte cap ({relay.cap}) reached on '{side}': tearing down")
                return None
            if side in relay.dropping:
                self.recorder.event(leg.label, f"dropped {len(data)} bytes going '{side}'")
                continue
            if relay.delays.get(side):
                await asyncio.sleep(relay.delays[side])
            try:
                await self._forward(side, data)
            except (TlsFailed, TlsEnded) as exc:
                victim = side == "out"
                if victim and isinstance(exc, TlsFailed) and self.victim_end is not None \
                        and not self.victim_end.established:
                    leg.tls_failure = f"the victim's TLS handshake with the attacker failed: {exc}"
                else:
                    leg.tls_failure = f"TLS on the {'victim' if victim else 'IUT'} side ended: {exc}"
                self.recorder.event(leg.label, leg.tls_failure)
                await self._flush_alerts()
                return None
            except NotTls as exc:
                self.recorder.event(leg.label, f"cannot frame the victim's bytes as TLS: {exc}")
                return None
            except LegOver as exc:
                self.recorder.event(leg.label, str(exc))
                if exc.tls_failure:
                    leg.tls_failure = str(exc)
                for writer in self.writers.values():
                    writer.close()
                return None
            except (ConnectionError, OSError):
                return None

    def _victim_left_mid_handshake(self, how: str) -> None:
        """A victim that closes during the attacker's handshake has (most likely) refused its certificate."""
        if self.leg.phase == "terminated" and self.victim_end is not None and not self.victim_end.established \
                and self.leg.tls_failure is None:
            self.leg.tls_failure = f"the victim {how} the connection during its TLS handshake with the attacker"
            self.recorder.event(self.leg.label, self.leg.tls_failure)

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

    # -- what goes to the victim in plaintext ------------------------------------------------------------------------

    def _release(self, data: bytes) -> bytes:
        """Plaintext from the IUT that may go on to the victim now: while a rewrite is set, nothing as long as what
        came so far ends inside a unit (the adapter says; up to HOLD_LIMIT), then all of it."""
        pending = self._held + data
        self._held = b""
        if self.relay.rewrite_to_victim is not None and len(pending) < HOLD_LIMIT \
                and self.relay.hooks.unit_incomplete(pending):
            self._held = pending
            return b""
        return pending

    def _stripped(self, data: bytes) -> bytes:
        if not self.relay.strip_tls_offer:
            return data
        stripped = self.relay.hooks.strip_tls_offer(data)
        if stripped != data:
            self.recorder.event(self.leg.label, "stripped the TLS offer from the IUT's features")
        return stripped

    def _rewritten(self, data: bytes) -> bytes:
        rewrite = self.relay.rewrite_to_victim
        if rewrite is None or not data:
            return data
        try:
            changed = rewrite(data)
        except Exception as exc:  # a broken rewrite must not let the unaltered bytes through
            raise LegOver(f"the rewrite of what goes to the victim failed ({exc!r}): tearing down",
                          tls_failure=False) from None
        if changed != data:
            self.leg.rewrites += 1
            self.recorder.event(self.leg.label, f"rewrote what goes to the victim ({len(data)} -> {len(changed)} "
                                                f"bytes)")
        return changed

    async def _flush_held(self) -> None:
        """The IUT closed: what was held back for a rewrite goes to the victim as it is (rewritten)."""
        if not self._held:
            return
        data, self._held = self._held, b""
        if self.leg.phase == "plaintext":
            await self._write("in", self._rewritten(self._stripped(data)), record=False)
        elif self.leg.phase == "terminated" and self.victim_end is not None:
            data = self._rewritten(data)
            if data:
                await self._write("in", self.victim_end.send(data), record=False)

    # -- the attacker's own TLS failures -----------------------------------------------------------------------------

    async def _fail_tls(self, how: str) -> None:
        """The victim's first TLS bytes arrived and the attacker makes TLS fail (reset or alert)."""
        victim = self.writers["in"]
        if how == "alert":
            victim.write(FATAL_INTERNAL_ERROR)
            await victim.drain()
            raise LegOver("answered the victim's ClientHello with a fatal internal_error alert and closed")
        sock = victim.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST
        raise LegOver("reset the victim's connection after its ClientHello" +
                      (" (direct TLS: nothing to refuse)" if how == "refused" else ""))

    async def _refuse_tls(self) -> None:
        victim = self.writers["in"]
        victim.write(self.relay.hooks.tls_refusal())
        await victim.drain()
        raise LegOver("refused the victim's request for TLS (not passed on) and closed")

    # -- moving bytes ------------------------------------------------------------------------------------------------

    async def _forward(self, side: Side, data: bytes) -> None:
        phase = self.leg.phase
        if side == "out" and phase != "plaintext" and not self._victim_tls_seen:
            self._victim_tls_seen = True
            how = self.relay.fail_tls
            if how in ("reset", "alert") or (how == "refused" and self.relay.hooks.direct_tls):
                await self._fail_tls(how)
            if how == "silent":
                self._silenced = True
                self.leg.tls_failure = "the attacker never answered the victim's ClientHello"
                self.recorder.event(self.leg.label, f"{self.leg.tls_failure}: its TLS bytes go nowhere")
        if side == "out" and self._silenced:
            return
        if phase == "plaintext":
            if side == "in":
                data = self._release(data)
                if not data:
                    return
                data = self._rewritten(self._stripped(data))
                go_ahead = self.relay.hooks.tls_go_ahead(self._tail + data)
                self._tail = data[-64:]
                if go_ahead:
                    await self.begin_tls()  # before the victim can answer <proceed/> with its ClientHello
                await self._write("in", data, record=False)
            else:
                _keep(self.leg.cleartext_from_victim, data)
                if self.relay.fail_tls == "refused" and self.relay.hooks.tls_request(data):
                    await self._refuse_tls()
                await self._write("out", data, record=True)
        elif phase == "tls":
            if side == "in":
                if self.splitter_in is None:  # the IUT's bytes did not frame as TLS: passed on as they come
                    await self._write("in", data, record=False)
                    return
                try:
                    records = self.splitter_in.feed(data)
                except NotTls as exc:
                    self.recorder.event(self.leg.label, f"cannot frame the IUT's bytes as TLS ({exc}): passing them "
                                                        f"on unframed (no flips or kept records towards the victim)")
                    data, self.splitter_in = self.splitter_in.take_all(), None
                    await self._write("in", data, record=False)
                    return
                for record in records:
                    self._flip_if_armed(record, self.relay._flips_to_victim, " to the victim")
                    self.leg.keep_record_to_victim(bytes(record.data))
                await self._write("in", b"".join(record.data for record in records), record=False)
                return
            records = self.splitter.feed(data)
            for record in records:
                self._flip_if_armed(record, self.relay._flips, "")
            await self._write("out", b"".join(record.data for record in records), record=True)
        else:  # terminated: decrypt from one side, encrypt for the other
            if side == "out":
                _keep_head(self.leg.tls_from_victim_head, data)
                data = self._client_hello_rewritten(data)
                if not data:
                    return
                plaintext, reply = self.victim_end.receive(data)
                _keep_head(self.leg.tls_to_victim_head, reply)
                await self._write("in", reply, record=False)
                if plaintext:
                    self.recorder.add(self.leg.label, "out", "app", plaintext)
                    _keep(self.leg.plaintext_from_victim, plaintext)
                    if not self.victim_end.established:  # 0-RTT: kept for the IUT until the handshake completes
                        self.recorder.event(self.leg.label, f"the victim sent {len(plaintext)} bytes as TLS 1.3 "
                                                            f"early data")
                        _keep(self.leg.early_data_from_victim, plaintext)
                        self._early += plaintext
                        plaintext = b""
                if self.iut_end is None and self.victim_end.established:
                    await self._open_iut_end()
                    plaintext, self._early = self._early + plaintext, b""
                if plaintext:
                    await self._write("out", self.iut_end.send(plaintext), record=True)
            else:
                if self.iut_end is None:
                    raise TlsFailed("the IUT sent data before the attacker's TLS to it began")
                plaintext, reply = self.iut_end.receive(data)
                await self._write("out", reply, record=True)
                if plaintext:
                    self.recorder.add(self.leg.label, "in", "app", plaintext)
                    released = self._rewritten(self._release(plaintext))
                    if released:
                        await self._write("in", self.victim_end.send(released), record=False)
                await self._write("out", self.iut_end.leftover(), record=True)  # what was held for the handshake

    def _client_hello_rewritten(self, data: bytes) -> bytes:
        """The victim's TLS bytes for the attacker's TLS end: while a ClientHello rewrite is set, nothing until the
        first record is whole, then that record rewritten and the rest as it came."""
        rewrite = self.relay.rewrite_client_hello
        if rewrite is None or self._hello_done:
            return data
        self._hello += data
        try:
            end = complete_record(self._hello)
        except NotAHello as exc:
            raise LegOver(f"cannot rewrite the victim's ClientHello: {exc}") from None
        if end is None:
            if len(self._hello) > HANDSHAKE_HEAD:
                raise LegOver("cannot rewrite the victim's ClientHello: no whole record in its first bytes")
            return b""
        self._hello_done = True
        held, self._hello = self._hello, b""
        try:
            record = rewrite(held[:end])
        except NotAHello as exc:
            raise LegOver(f"cannot rewrite the victim's ClientHello: {exc}") from None
        if record != held[:end]:
            self.leg.rewrites += 1
            self.recorder.event(self.leg.label, "rewrote the victim's ClientHello before answering it")
        return record + held[end:]

    def _flip_if_armed(self, record, flips: list[Flip], towards: str) -> None:
        """Flip a bit of `record` for the first armed flip of `flips`, if it is application data."""
        if record.content_type != APPLICATION_DATA or not flips:
            return
        flip = flips.pop(0)
        offset = flip_bit(record, flip.where)
        flip.detail = (f"flipped the low bit of byte {offset} ({flip.where}) of a {record.fragment_length}-byte "
                       f"application_data record{towards}")
        self.recorder.event(self.leg.label, flip.detail)
        flip.done.set()

    async def _flush_alerts(self) -> None:
        for end, side in ((self.victim_end, "in"), (self.iut_end, "out")):
            if end is not None:
                try:
                    await self._write(side, end.leftover(), record=side == "out")
                except (ConnectionError, OSError):
                    pass


def _keep_head(buffer: bytearray, data: bytes) -> None:
    buffer += data[:max(0, HANDSHAKE_HEAD - len(buffer))]


def _keep(buffer: bytearray, data: bytes) -> None:
    if len(buffer) < MAX_KEPT_BYTES:
        buffer += data[:MAX_KEPT_BYTES - len(buffer)]
