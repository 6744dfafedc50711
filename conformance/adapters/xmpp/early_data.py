"""TLS 1.3 0-RTT early data at each of the IUT's TLS doors (IMPP-5.8-4): is what a client sends before the
handshake completes acted on, where anyone who recorded it could send it again?

At each door (the client port, after STARTTLS or at once for direct TLS, and every tcp:// listener of the profile):
1. a first connection collects the IUT's session tickets and reads what each allows (max_early_data_size);
2. if one allows early data, a second connection resumes with early data holding a stream header and a SASL
   <auth/> (SCRAM's first message, which names the account and no secret), and keeps its Finished back: anything
   the IUT answers to that <auth/> before the handshake is complete was acted on from 0-RTT data alone;
   then the Finished goes, and the IUT must answer (or be asked again, if it declined the early data): the control;
3. the first flight (ClientHello and early data) is sent again, twice, on new connections, and the ServerHello
   says whether the IUT resumed the recorded session again (single-use tickets would refuse it, RFC 8446 §8.1).
"""

from __future__ import annotations

import asyncio

from conformance.roles import EarlyData
from conformance.transport import early_data, tls_hello
from conformance.transport.connection import Connection, ConnectionClosed
from conformance.verdicts import SetupFailed

from .client import ProtocolViolation, StreamEnded
from .codec import sasl
from .codec.stanza import SASL, stream_header
from .codec.xml import E, Element, StreamParser, UnitReceived, XmlError, to_bytes
from .runtime import Runtime, TargetUnreachable

REPLAYS = 2  # the catalogue's "twice more"
MAX_UNITS = 256  # units kept per connection: a few are expected before authentication; a flood is not kept
SASL_ANSWERS = ("challenge", "success", "failure")
FEATURES = "{http://etherx.jabber.org/streams}features"


class NoTls(Exception):
    """Nothing at this door completes a TLS 1.3 handshake with the harness."""


class Door:
    """One way in: an address, and whether TLS starts at once or after STARTTLS."""

    def __init__(self, rt: Runtime, name: str, address: tuple[str, int], *, starttls: bool):
        self.rt, self.name, self.address, self.starttls = rt, name, address, starttls

    async def connect(self, role: str) -> Connection:
        """A TCP connection whose next bytes are TLS (after <proceed/> for a STARTTLS door)."""
        try:
            client = await self.rt.connect(role, self.address)
        except TargetUnreachable as exc:
            if self.address == self.rt.address:
                raise
            raise NoTls(f"no connection: {exc}") from None  # a listener the profile names, but nothing there
        if self.starttls:
            try:
                await client.open_stream()
                await client.request_tls()
            except (StreamEnded, ProtocolViolation, ConnectionClosed, asyncio.TimeoutError) as exc:
                client.conn.abort()
                raise NoTls(f"no STARTTLS: {exc or type(exc).__name__}") from None
        return client.conn


class TlsStream:
    """The harness's TLS end over a connection's raw socket, and the XMPP units it decrypts."""

    def __init__(self, rt: Runtime, conn: Connection, tls: early_data.ClientConnection):
        self.rt, self.conn, self.tls = rt, conn, tls
        self.parser = StreamParser(rt.limits)
        self.units: list[Element] = []
        self.held = b""  # what the harness's TLS end has to send and the harness keeps back (its Finished)

    async def send_flight(self) -> None:
        await self.conn._write_socket(self.tls.start())

    async def send(self, plaintext: bytes, *, release: bool = True) -> None:
        self.conn.recorder.add(self.conn.label, "out", "app", plaintext)
        data = (self.held if release else b"") + self.tls.send(plaintext)
        if release:
            self.held = b""
        if data:
            await self.conn._write_socket(data)

    async def read(self) -> None:
        """Read once from the socket; what the TLS end wants to send back is held (see `release`)."""
        plaintext, back = self.tls.receive(await self.conn._read_socket())
        self.held += back
        if plaintext:
            self.conn.recorder.add(self.conn.label, "in", "app", plaintext)
            for event in self.parser.feed(plaintext):
                if isinstance(event, UnitReceived) and len(self.units) < MAX_UNITS:
                    self.units.append(event.element)

    async def release(self) -> None:
        held, self.held = self.held, b""
        if held:
            await self.conn._write_socket(held)

    async def until(self, done, timeout: float, *, release: bool = True) -> bool:
        """Read until `done()` or `timeout`; False on timeout. With `release`, what TLS has to send goes out."""
        async def loop() -> None:
            while not done():
                await self.read()
                if release:
                    await self.release()
        try:
            await asyncio.wait_for(loop(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    def sasl_answer(self) -> Element | None:
        return next((u for u in self.units if u.tag.startswith(f"{{{SASL}}}") and
                     u.tag.split("}")[1] in SASL_ANSWERS), None)

    def features_arrived(self) -> bool:
        return any(unit.tag == FEATURES for unit in self.units)

    def mechanisms(self) -> list[str]:
        for unit in self.units:
            mechanisms = unit.find(f"{{{SASL}}}mechanisms")
            if mechanisms is not None:
                return [(m.text or "").strip() for m in mechanisms.findall(f"{{{SASL}}}mechanism")]
        return []


def opening(rt: Runtime, username: str, mechanisms: list[str]) -> bytes:
    """A stream header and a SASL <auth/>: SCRAM's client-first-message where one is offered (it names the account
    and carries no secret), else the first offered mechanism without an initial response."""
    scram = next((m for m in sasl.SCRAM_PREFERENCE if m in mechanisms), None)
    if scram is not None:
        first = sasl.scram_client(scram, username, "").get_client_first()
        auth = E("auth", ns=SASL, attrs={"mechanism": scram}, text=sasl.b64(first.encode()))
    else:
        auth = E("auth", ns=SASL, attrs={"mechanism": mechanisms[0] if mechanisms else "PLAIN"})
    return stream_header(to=rt.domain) + to_bytes(auth)


async def attempt(rt: Runtime, door: Door, username: str) -> EarlyData:
    try:
        context = early_data.ClientContext(server_name=rt.domain, keylog=rt.keylog)
    except early_data.EarlyDataUnavailable as exc:
        return EarlyData(door=door.name, unsupported=str(exc))
    t_hs, t_neg, t_step = rt.timeouts.handshake, rt.timeouts.negative, rt.timeouts.step

    async def handshake(stream: TlsStream) -> None:
        await stream.send_flight()
        if not await stream.until(lambda: stream.tls.established, t_hs, release=False):
            raise NoTls(f"no TLS 1.3 handshake within {t_hs:g}s")

    # 1. the tickets
    first = TlsStream(rt, await door.connect("early-data-tickets"), context.connection())
    try:
        await handshake(first)
        await first.release()
        await first.send(stream_header(to=rt.domain))
        # TLS 1.3 tickets come right after the handshake, so before the answer to the stream header (OpenSSL-based
        # servers send them at once); a ticket sent later still would go unseen here
        await first.until(first.features_arrived, t_step)
    except (ConnectionClosed, early_data.TlsFailed, early_data.TlsEnded, XmlError) as exc:
        raise NoTls(str(exc)) from None
    finally:
        first.conn.abort()
    tickets = tuple(first.tls.seen.tickets)
    ticket = first.tls.ticket()
    outcome = EarlyData(door=door.name, tickets=tickets)
    if ticket is None or ticket.max_early_data == 0:
        return outcome

    # 2. resuming with early data, the Finished kept back
    payload = opening(rt, username, first.mechanisms())
    second = TlsStream(rt, await door.connect("early-data-resumption"),
                       context.connection(ticket=ticket, early_data=payload))
    rt.recorder.add(second.conn.label, "out", "app", payload)
    flight = b""
    try:
        flight = second.tls.start()
        await second.conn._write_socket(flight)
        if not await second.until(lambda: second.tls.established, t_hs, release=False):
            raise SetupFailed(f"{door.name}: no answer to a resumption with early data within {t_hs:g}s")
        accepted = bool(second.tls.seen.early_data_accepted)
        if accepted:  # only then can anything have been acted on: wait for it before the Finished goes
            await second.until(lambda: second.sasl_answer() is not None, t_neg, release=False)
        early_answer = second.sasl_answer()
        await second.release()
        if not accepted:  # declined: a client sends it all again after the handshake (RFC 8446 §4.2.10)
            await second.send(payload)
        await second.until(lambda: second.sasl_answer() is not None, t_step)
        control = second.sasl_answer()
    except (ConnectionClosed, early_data.TlsFailed, early_data.TlsEnded, XmlError) as exc:
        raise SetupFailed(f"{door.name}: the resumption with early data failed: {exc}") from None
    finally:
        second.conn.abort()
    outcome = EarlyData(door=door.name, tickets=tickets, resumed=second.tls.resumed, accepted=accepted,
                        answered_early=_describe(early_answer), answered=_describe(control))

    # 3. the first flight again, later, as whoever recorded it would send it
    resumed_again = 0
    for _ in range(REPLAYS):
        conn = await door.connect("early-data-replay")
        try:
            answer = await tls_hello.send_and_read(conn, flight, timeout=t_hs)
        finally:
            conn.abort()
        resumed_again += isinstance(answer, tls_hello.ServerHello) and answer.resumed
    return outcome.replayed(REPLAYS, resumed_again)


def _describe(unit: Element | None) -> str | None:
    if unit is None:
        return None
    condition = next((child.tag.split("}")[1] for child in unit), None)
    name = unit.tag.split("}")[1]
    return f"<{name}>" + (f" <{condition}/>" if condition and name == "failure" else "")
