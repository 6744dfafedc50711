"""The harness as another domain's *receiving* server: it accepts the server-to-server connections the IUT opens
to deliver to remote users (RFC 6120 §4, XEP-0178), with a certificate of the test's choice, with or without
STARTTLS, confirming the IUT's SASL EXTERNAL at once or only when the test says. Whatever the IUT sends is kept,
so a test can tell what it sent, when (before or after authentication), and whether in clear.

It listens on loopback at the profile's `federation.listen_port`, where the IUT is configured to find the remote
domain's server, only while a test holds it, and every connection is bounded in bytes and time.
"""

from __future__ import annotations

import asyncio
import collections
import secrets
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

from conformance.roles import Update
from conformance.transport import loopback_dns
from conformance.transport.connection import Connection, ConnectionClosed, HandshakeFailed
from conformance.verdicts import SetupFailed, Violation, negative_check, note

from .codec.stanza import SASL, SERVER, STREAM_CLOSE, TLS, kind, q, stream_header
from .codec.xml import E, Element, StreamClosed, StreamOpened, StreamParser, UnitReceived, XmlError, to_bytes
from .observe import describe, reveals

if TYPE_CHECKING:
    from .runtime import Runtime

STREAM_FEATURES = "{http://etherx.jabber.org/streams}features"
DIALBACK = "jabber:server:dialback"
RESEND_LOOK = 0.1  # seconds between looks for a bounce of what a positive control waits for


class ReceivingServer:
    def __init__(self, rt: "Runtime", domain: str, port: int, certificate: tuple[Path, Path], *, offers_tls: bool,
                 confirms: str, dns_port: int | None = None, also_for: dict[str, tuple[Path, Path]] | None = None,
                 issued_keys: set[str] | None = None):
        self.rt = rt
        self.domain = domain
        self.port = port
        self.certificate = certificate
        self.offers_tls = offers_tls
        self.confirms = confirms  # "at-once" or "later"
        self.stanzas: list[tuple[str, Element]] = []  # (phase: "clear" / "tls" / "authenticated", stanza)
        self.auth_requested = asyncio.Event()
        self.confirmed = asyncio.Event()
        self.connections = 0  # the IUT's connections so far
        self.resends = 0  # updates sent again because the IUT bounced them (see _wait)
        self.open_connections = 0
        self._changed = asyncio.Event()
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self.dns_port = dns_port
        self._dns = None  # the DNS responder's transport, while it runs
        # As the authoritative server of `domain` and of the domains in `also_for` (with their certificates, chosen
        # by the IUT's SNI): the dialback keys the harness's own streams sent, and what the IUT asked about them.
        self.also_for = also_for or {}
        self.issued_keys = issued_keys if issued_keys is not None else set()
        self.verifications: list[tuple[str, str]] = []  # (domain asked about, answer)

    def __repr__(self) -> str:
        return f"{self.domain}'s receiving server"

    # -- life cycle (on the harness loop) ------------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)
        except OSError as exc:
            raise SetupFailed(f"cannot listen on 127.0.0.1:{self.port} (federation.listen_port) as {self.domain}'s "
                              f"server: {exc.strerror or exc}") from None
        if self.dns_port is not None:
            records = {(f"_xmpp-server._tcp.{name}.", "SRV"): [f"0 0 {self.port} localhost."]
                       for name in (self.domain, *self.also_for)}
            records[("localhost.", "A")] = ["127.0.0.1"]
            try:
                self._dns, self._dns_protocol = await loopback_dns.serve(self.dns_port, records)
            except OSError as exc:
                await self.stop()
                raise SetupFailed(f"cannot answer DNS on 127.0.0.1:{self.dns_port} (federation.dns_port): "
                                  f"{exc.strerror or exc}") from None

    async def stop(self) -> None:
        if self._dns is not None:
            self._dns.close()
            self._dns = None
            asked = self._dns_protocol.answered
            self.rt.recorder.event(f"{self.domain}-dns", f"loopback DNS on port {self.dns_port} answered "
                                                          f"{len(asked)} question(s): {', '.join(asked[:10]) or '-'}")
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2.0)

    def _context(self, certificate: tuple[Path, Path] | None = None, *, sni: bool = True) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(*(certificate or self.certificate))
        if sni and self.also_for:  # the IUT asking another domain's authoritative server names it in SNI
            others = {name: self._context(pair, sni=False) for name, pair in self.also_for.items()}

            def choose(sock, server_name, _context):
                if server_name in others:
                    sock.context = others[server_name]
            context.sni_callback = choose
        ca_file = self.rt.profile.target.ca_file
        if ca_file is not None:  # see the IUT's certificate (not needed to accept it: EXTERNAL is the harness's call)
            context.verify_mode = ssl.CERT_OPTIONAL
            context.load_verify_locations(cafile=str(ca_file))
        if self.rt.keylog is not None:
            context.keylog_filename = str(self.rt.keylog)
        return context

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        self.connections += 1
        self.open_connections += 1
        endpoint = self.rt.recorder.endpoint(f"{self.domain}-server")
        sock = writer.get_extra_info("socket")
        if sock is not None:
            endpoint.local, endpoint.remote = sock.getpeername()[:2], sock.getsockname()[:2]  # the IUT is the client
        conn = Connection(reader, writer, endpoint, self.rt.recorder)
        conn.recorder.event(conn.label, f"the IUT connected to {self.domain}'s server")
        try:
            await asyncio.wait_for(self._serve(conn), self.rt.timeouts.case)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            pass
        except (ConnectionClosed, HandshakeFailed, XmlError) as exc:
            conn.recorder.event(conn.label, f"connection from the IUT ended: {exc}")
        finally:
            conn.abort()
            self.open_connections -= 1
            self._tasks.discard(task)
            self._changed.set()

    async def _serve(self, conn: Connection) -> None:
        stream = _IutStream(conn, self.rt)
        phase = "clear"

        async def open_stream(features: Element) -> None:
            header = await stream.next()
            if not isinstance(header, StreamOpened):
                raise ConnectionClosed("the IUT sent no stream header")
            await conn.send(self._header(header))
            await conn.send(_features(features))

        tls_offer = E("starttls", None, E("required", ns=TLS), ns=TLS) if self.offers_tls else None
        await open_stream(E(STREAM_FEATURES, None, tls_offer))
        succeeded = False  # <success/> went out: the IUT's next stream header starts the authenticated stream

        async def confirm_later():
            nonlocal succeeded
            await self.confirmed.wait()
            await conn.send(to_bytes(E("success", ns=SASL), SERVER))
            stream.restart()
            succeeded = True

        while True:
            unit = await stream.next()
            if isinstance(unit, StreamOpened):
                if not succeeded:
                    raise ConnectionClosed("unexpected stream restart")
                succeeded = False
                phase = "authenticated"
                await conn.send(self._header(unit))
                await conn.send(_features(E(STREAM_FEATURES)))
                continue
            if unit.tag == q(TLS, "starttls") and self.offers_tls and not conn.tls_active:
                await conn.send(to_bytes(E("proceed", ns=TLS), SERVER))
                await conn.start_tls(self._context(), server_side=True, timeout=self.rt.timeouts.handshake)
                stream.restart()
                phase = "tls"
                await open_stream(E(STREAM_FEATURES, None, E("mechanisms", None,
                                                             E("mechanism", text="EXTERNAL", ns=SASL), ns=SASL)))
            elif unit.tag == q(SASL, "auth"):
                self.auth_requested.set()
                self._changed.set()
                if self.confirms == "later":  # keep reading meanwhile: what the IUT sends now is evidence
                    confirming = asyncio.ensure_future(confirm_later())
                    self._tasks.add(confirming)
                    confirming.add_done_callback(self._tasks.discard)
                    continue
                await conn.send(to_bytes(E("success", ns=SASL), SERVER))
                stream.restart()
                phase = "authenticated"
                await open_stream(E(STREAM_FEATURES))
            elif unit.tag == q(DIALBACK, "verify") and unit.get("type") is None:
                await conn.send(to_bytes(self._verify(unit), SERVER))
            elif kind(unit) is not None:
                self.stanzas.append((phase, unit))
                self._changed.set()
            elif unit.tag == q(TLS, "starttls"):  # asked for TLS this server did not offer (RFC 6120 §5.4.2.2)
                await conn.send(to_bytes(E("failure", ns=TLS), SERVER) + STREAM_CLOSE)
                raise ConnectionClosed("the IUT asked for TLS, which this server does not offer")

    def _header(self, opened: StreamOpened) -> bytes:
        """Our stream header, as the domain the IUT asked for (when it is one this server answers for)."""
        asked = (opened.attrs.get("to") or "").lower()
        return stream_header(to=opened.attrs.get("from"), from_=asked if asked in self.also_for else self.domain,
                             content_ns=SERVER, stream_id=secrets.token_hex(8), extra_ns={"db": DIALBACK})

    def _verify(self, request: Element) -> Element:
        """XEP-0220 §2.3.2, as the authoritative server of the domain the IUT asks about: a key is genuine only if
        one of the harness's own streams sent it."""
        asked = (request.get("to") or "").lower()
        ours = asked in (self.domain, *self.also_for)
        answer = "valid" if ours and (request.text or "").strip() in self.issued_keys else "invalid"
        self.verifications.append((asked, answer))
        self.rt.recorder.event(f"{self.domain}-server", f"the IUT asked {asked}'s authoritative server about a "
                                                        f"dialback key: {answer}")
        self._changed.set()
        return E(q(DIALBACK, "verify"), {"from": asked, "to": request.get("from"), "id": request.get("id"),
                                         "type": answer})

    # -- what the tests ask (on the harness loop) ------------------------------------------------------------------------

    def _copies(self, update: Update) -> list[tuple[str, Element]]:
        return [(phase, unit) for phase, unit in self.stanzas if reveals(unit, update)]

    async def _wait(self, predicate, timeout: float, resending: Update | None = None) -> bool:
        """Until `predicate` holds, or `timeout`. With `resending`, the sender sends that update again each time the
        IUT bounces it (`Update.resend`): a bounce arrives on the sender's stream, not here, so the wait then looks
        every RESEND_LOOK seconds, and the count of resends is bounded by the timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        resend = resending.resend if resending is not None else None
        while not predicate():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(remaining, RESEND_LOOK) if resend else remaining)
            except asyncio.TimeoutError:
                if resend is None or loop.time() >= deadline:
                    return predicate()
            if resend is not None and await resend():
                self.resends += 1
        return True


class ReceivingServerRole:
    """The synchronous sentences over a ReceivingServer."""

    def __init__(self, rt: "Runtime", server: ReceivingServer):
        self.rt = rt
        self.server = server

    def __repr__(self) -> str:
        return repr(self.server)

    @property
    def domain(self) -> str:
        return self.server.domain

    def receives(self, update: Update) -> Element:
        """`update` reaches this server, over an authenticated stream, within T_POS."""
        async def run():
            got = await self.server._wait(lambda: any(p == "authenticated" for p, _ in self.server._copies(update)),
                                          self.rt.timeouts.positive, resending=update)
            if not got:
                raise Violation(f"{self.server} did not receive {update.sender}'s {update.kind} ({update.canary}) "
                                f"within {self.rt.timeouts.positive:g}s; the IUT connected "
                                f"{self.server.connections} time(s)")
            return next(u for p, u in self.server._copies(update) if p == "authenticated")
        before = self.server.resends
        got = self.rt.call(run)
        if self.server.resends > before:
            note(f"the IUT bounced {update.sender}'s {update.kind} {self.server.resends - before} time(s) before "
                 f"delivering it to {self.server} (it refuses a domain for a while after failing to reach it)")
        return got

    def does_not_receive(self, update: Update, *, before_confirming: bool = False) -> None:
        """Nothing disclosing `update` reaches this server: at all, or (`before_confirming`) before it confirmed the
        IUT's authentication. Server-to-server delivery has no ordering point the harness can use, so this waits,
        after the sender's own round trip: until the IUT gave up every connection it opened (or T_CLOSE); and while
        withholding the confirmation, T_NEG after the IUT asked for it."""
        negative_check(f"{self.server} does not receive {update.sender}'s {update.kind}")
        server = self.server

        async def run():
            if update.fence is not None:
                await update.fence()
            if before_confirming:  # (a bounce means the IUT did not even try yet: the update goes again)
                await server._wait(lambda: server.auth_requested.is_set(), self.rt.timeouts.close, resending=update)
                await server._wait(lambda: bool(server._copies(update)), self.rt.timeouts.negative)
            else:
                await server._wait(lambda: bool(server._copies(update)) or
                                   (server.connections > 0 and server.open_connections == 0), self.rt.timeouts.close,
                                   resending=update)
            leaked = [(p, u) for p, u in self.server._copies(update)
                      if not before_confirming or p != "authenticated"]
            if leaked:
                phase, unit = leaked[0]
                where = {"clear": "in clear, over a stream without TLS", "tls": "before it was authenticated",
                         "authenticated": "over an authenticated stream"}[phase]
                raise Violation(f"the IUT sent {update.sender}'s {update.kind} to {self.server} {where}: "
                                f"{describe(unit)}")
        self.rt.call(run)

    def confirms_the_iut(self) -> None:
        """Answer the IUT's pending SASL EXTERNAL with <success/> (after having made it wait)."""
        async def run():
            if not await self.server._wait(lambda: self.server.auth_requested.is_set(), self.rt.timeouts.positive):
                raise SetupFailed(f"the IUT never asked {self.server} to authenticate it")
            self.server.confirmed.set()
        self.rt.call(run)

    def hangs_up(self) -> None:
        """Stop listening and drop every connection (the IUT must connect anew for what it sends next)."""
        self.rt.call(self.server.stop, timeout=5)


def _features(features: Element) -> bytes:
    """<stream:features/> with the stream prefix the header declared: some servers (ejabberd 23.01) recognise stream
    features by that prefixed name only, not by an equivalent default-namespace declaration."""
    inner = b"".join(to_bytes(child, SERVER) for child in features)
    return b"<stream:features>" + inner + b"</stream:features>" if inner else b"<stream:features/>"


class _IutStream:
    """The IUT's side of one connection, parsed: stream headers and top-level elements, in order."""

    def __init__(self, conn: Connection, rt: "Runtime"):
        self.conn = conn
        self.limits = rt.limits
        self.restart()

    def restart(self) -> None:
        self.parser = StreamParser(self.limits)
        self.pending: collections.deque = collections.deque()

    async def next(self) -> "Element | StreamOpened":
        while True:
            while not self.pending:
                data = await self.conn.recv()
                self.pending.extend(self.parser.feed(data))
            event = self.pending.popleft()
            if isinstance(event, StreamOpened):
                return event
            if isinstance(event, UnitReceived):
                return event.element
            if isinstance(event, StreamClosed):
                raise ConnectionClosed("the IUT closed its stream")
