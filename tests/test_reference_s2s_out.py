"""The reference service's outbound server-to-server side (conformance/reference/s2s_out.py): it connects to the
server of a domain in its peer map, requires STARTTLS and a certificate that proves that domain, authenticates with
SASL EXTERNAL and sends nothing before <success/>; and each of its outbound flaws. A small scripted receiving server
plays remote.test on loopback."""

from __future__ import annotations

import asyncio
import collections
import ssl
from pathlib import Path

from cryptography import x509

from conformance import profile as profiles
from conformance.adapters.xmpp.client import XmppClient
from conformance.adapters.xmpp.codec import sasl
from conformance.adapters.xmpp.codec.jid import JID
from conformance.adapters.xmpp.codec.stanza import (SASL, SERVER, TLS, error_condition, kind, message, presence, q,
                                                    stream_header)
from conformance.adapters.xmpp.codec.xml import (E, Element, Limits, StreamClosed, StreamOpened, StreamParser,
                                                 UnitReceived, to_bytes)
from conformance.reference.__main__ import _peer, profile_text
from conformance.reference.config import ServiceConfig
from conformance.reference.launcher import ReferenceProcess
from conformance.reference.service import Service
from conformance.reference.store import RosterItem
from conformance.transport.connection import Connection
from conformance.transport.wire import Recorder

DOMAIN = "iut.test"
REMOTE = "remote.test"
FEATURES = "{http://etherx.jabber.org/streams}features"


class RemoteServer:
    """remote.test's receiving server, scripted: STARTTLS offered (required) or not, a certificate of the test's
    choice, EXTERNAL offered after TLS and confirmed at once or when the test says; every stanza kept with the
    phase it arrived in ("clear", "tls" or "authenticated")."""

    def __init__(self, service: Service, *, certificate: str = REMOTE, offers_tls: bool = True,
                 confirm_at_once: bool = True):
        self.service = service
        self.certificate = certificate
        self.offers_tls = offers_tls
        self.confirm = asyncio.Event()
        if confirm_at_once:
            self.confirm.set()
        self.auth_requested = asyncio.Event()
        self.changed = asyncio.Event()
        self.stanzas: list[tuple[str, Element]] = []
        self.headers: list[dict[str, str]] = []
        self.auth: Element | None = None
        self.client_certificate: bytes | None = None
        self.connections = 0
        self.server: asyncio.base_events.Server | None = None
        self.tasks: set[asyncio.Task] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.server.close()
        for task in list(self.tasks):
            task.cancel()

    def _context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        peers = self.service.certs.peers
        context.load_cert_chain(peers / f"{self.certificate}.crt", peers / f"{self.certificate}.key")
        context.verify_mode = ssl.CERT_OPTIONAL  # ask for the initiating server's certificate
        context.load_verify_locations(cafile=str(self.service.certs.ca))
        return context

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.tasks.add(asyncio.current_task())
        self.connections += 1
        self.changed.set()
        parser, pending, phase = StreamParser(), collections.deque(), "clear"

        async def next_event():
            while not pending:
                data = await reader.read(65536)
                if not data:
                    raise EOFError
                pending.extend(parser.feed(data))
            return pending.popleft()

        async def open_stream(*features: Element) -> None:
            nonlocal parser, pending
            parser, pending = StreamParser(), collections.deque()
            header = await next_event()
            assert isinstance(header, StreamOpened) and header.default_ns == SERVER
            self.headers.append(header.attrs)
            writer.write(stream_header(to=header.attrs.get("from"), from_=REMOTE, content_ns=SERVER,
                                       stream_id="s1"))
            writer.write(to_bytes(E(FEATURES, None, *features), SERVER))

        try:
            await open_stream(E("starttls", None, E("required", ns=TLS), ns=TLS) if self.offers_tls else None)
            while True:
                event = await next_event()
                if isinstance(event, StreamClosed):
                    break
                unit = event.element
                if unit.tag == q(TLS, "starttls") and self.offers_tls:
                    writer.transport.pause_reading()  # the ClientHello is for the TLS layer
                    writer.write(to_bytes(E("proceed", ns=TLS), SERVER))
                    await writer.drain()
                    await writer.start_tls(self._context())
                    self.client_certificate = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
                    phase = "tls"
                    await open_stream(E("mechanisms", None, E("mechanism", text="EXTERNAL", ns=SASL), ns=SASL))
                elif unit.tag == q(SASL, "auth"):
                    self.auth = unit
                    self.auth_requested.set()
                    self.changed.set()
                    while not self.confirm.is_set():  # withholding <success/>, but still listening
                        reading = asyncio.ensure_future(next_event())
                        confirmed = asyncio.ensure_future(self.confirm.wait())
                        await asyncio.wait({reading, confirmed}, return_when=asyncio.FIRST_COMPLETED)
                        confirmed.cancel()
                        if not reading.done():
                            reading.cancel()
                            await asyncio.wait({reading})  # its read() is over before the next one starts
                            break
                        early = reading.result()
                        if isinstance(early, UnitReceived) and kind(early.element) is not None:
                            self.stanzas.append((phase, early.element))
                            self.changed.set()
                    writer.write(to_bytes(E("success", ns=SASL), SERVER))
                    phase = "authenticated"
                    await open_stream()
                elif kind(unit) is not None:
                    self.stanzas.append((phase, unit))
                    self.changed.set()
        except (EOFError, ConnectionError, ssl.SSLError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self.tasks.discard(asyncio.current_task())
            self.changed.set()

    async def wait(self, predicate, timeout: float = 5.0) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            if loop.time() >= deadline:
                return False
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), deadline - loop.time())
            except asyncio.TimeoutError:
                pass
        return True

    def bodies(self) -> list[tuple[str, str]]:
        return [(phase, unit.findtext(f"{{{SERVER}}}body")) for phase, unit in self.stanzas if kind(unit) == "message"]


def run(tmp_path: Path, body, *flaws: str, remote: dict | None = None, **config) -> None:
    async def main() -> None:
        probe = Service(ServiceConfig(data_dir=tmp_path / "ref"))  # the certificates, before the peer needs them
        probe._log.close()
        server = RemoteServer(probe, **(remote or {}))
        port = await server.start()
        service = Service(ServiceConfig(data_dir=tmp_path / "ref", flaws=frozenset(flaws),
                                        peers={REMOTE: ("127.0.0.1", port)}, **config))
        await service.start()
        try:
            await asyncio.wait_for(body(service, server), 8)
        finally:
            await service.stop()
            await server.stop()
    asyncio.run(main())


async def _login(service: Service, user: str = "alice") -> XmppClient:
    port = service._server.sockets[0].getsockname()[1]
    conn = await Connection.open("127.0.0.1", port, role=user, recorder=Recorder(), timeout=5)
    client = XmppClient(conn, DOMAIN, limits=Limits(), timeout=5)
    await client.open_stream()
    await client.starttls(ssl.create_default_context(cafile=str(service.certs.ca)))
    assert (await client.authenticate(user, service.passwords[user])).success
    await client.bind("phone")
    client.start_pump()
    return client


async def _bounced(client: XmppClient, body_id: str, timeout: float = 5.0) -> str | None:
    """The error condition the service bounced to `client` for its message `body_id` (None: no bounce)."""
    got = await client.wait_for(lambda u: u.get("id") == body_id and u.get("type") == "error", timeout)
    return error_condition(got) if got is not None else None


# -- the honest path -------------------------------------------------------------------------------------------------

def test_a_message_goes_out_after_tls_and_sasl_external_and_the_link_is_kept(tmp_path):
    async def body(service, server):
        alice = await _login(service)
        await alice.send(message("r@remote.test", "first", id_="m1"))
        assert await server.wait(lambda: len(server.stanzas) == 1)
        await alice.send(message("r@remote.test/desk", "second", id_="m2"))
        assert await server.wait(lambda: len(server.stanzas) == 2)
        assert server.bodies() == [("authenticated", "first"), ("authenticated", "second")]
        assert server.connections == 1  # the second message took the same stream
        phase, first = server.stanzas[0]
        assert first.tag == q(SERVER, "message") and first.get("from") == "alice@iut.test/phone"
        assert first.get("to") == "r@remote.test" and server.stanzas[1][1].get("to") == "r@remote.test/desk"
        # three stream headers (initial, after TLS, after SASL), all from iut.test to remote.test
        assert [(h.get("from"), h.get("to"), h.get("version")) for h in server.headers] == [(DOMAIN, REMOTE, "1.0")] * 3
        assert server.auth.get("mechanism") == "EXTERNAL" and sasl.unb64(server.auth.text) == DOMAIN.encode()
        names = x509.load_der_x509_certificate(server.client_certificate).extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
        assert DOMAIN in names  # the service's own certificate, as TLS client certificate
        archived = [entry["with"] for entry in service.archive_of("alice")]
        assert archived == ["r@remote.test", "r@remote.test/desk"]
        await alice.close()
    run(tmp_path, body)


def test_presence_goes_to_remote_subscribers_and_authorized_probers(tmp_path):
    async def body(service, server):
        roster = service.store.roster("alice")
        roster["w@remote.test"] = RosterItem(jid="w@remote.test", subscription="from")
        roster["x@remote.test"] = RosterItem(jid="x@remote.test", subscription="to")  # alice sees x; x sees nothing
        alice = await _login(service)
        await alice.send(presence(status="here"))
        assert await server.wait(lambda: any(u.get("type") == "probe" for _, u in server.stanzas))
        assert await server.wait(lambda: any(u.findtext(f"{{{SERVER}}}status") == "here" for _, u in server.stanzas))
        # an authorized remote prober gets the current presence, an unauthorized one nothing
        for prober in ("x@remote.test", "w@remote.test"):
            service.handle_remote_stanza(JID.parse(prober), presence("alice@iut.test", "probe", from_=prober),
                                         JID.parse("alice@iut.test"))
        assert await server.wait(lambda: sum(u.findtext(f"{{{SERVER}}}status") == "here"
                                             for _, u in server.stanzas) == 2)
        await alice.close()
        assert await server.wait(lambda: any(u.get("type") == "unavailable" for _, u in server.stanzas))
        sent = [(u.get("type"), u.get("from"), u.get("to")) for _, u in server.stanzas if kind(u) == "presence"]
        assert ("probe", "alice@iut.test", "x@remote.test") in sent
        assert sent.count((None, "alice@iut.test/phone", "w@remote.test")) == 2  # broadcast, then the probe answer
        assert ("unavailable", "alice@iut.test/phone", "w@remote.test") in sent
        assert not any(to == "x@remote.test" and type_ != "probe" for type_, _, to in sent)
        assert all(phase == "authenticated" for phase, _ in server.stanzas)
    run(tmp_path, body)


def test_unknown_domains_are_dropped_and_an_unreachable_peer_fails_fast(tmp_path):
    async def body(service, server):
        alice = await _login(service)
        await alice.send(message("x@elsewhere.test", "nowhere", id_="m1"))
        assert await _bounced(alice, "m1") == "remote-server-not-found"
        await server.stop()  # remote.test's server is gone: connection refused
        await alice.send(message("r@remote.test", "refused", id_="m2"))
        assert await _bounced(alice, "m2", 3) == "remote-server-not-found"
        log = (service.config.data_dir / "service.log").read_text()
        assert "cannot connect to 127.0.0.1" in log and "elsewhere.test" not in log  # no attempt, no lookup
        await alice.close()
    run(tmp_path, body)


def test_the_queue_is_bounded(tmp_path):
    async def body(service, server):
        alice = await _login(service)
        for n in range(3):
            await alice.send(message("r@remote.test", f"n{n}", id_=f"m{n}"))
        assert await _bounced(alice, "m2") == "resource-constraint"
        server.confirm.set()
        assert await server.wait(lambda: len(server.stanzas) == 2)
        assert server.bodies() == [("authenticated", "n0"), ("authenticated", "n1")]
        await alice.close()
    run(tmp_path, body, remote={"confirm_at_once": False}, s2s_out_max_queue=2)


# -- IMPP-5.9-2, IMPP-5.14-2: never in clear ---------------------------------------------------------------------------

def test_a_peer_without_starttls_gets_nothing(tmp_path):
    async def body(service, server):
        alice = await _login(service)
        await alice.send(message("r@remote.test", "secret", id_="m1"))
        assert await _bounced(alice, "m1") == "remote-server-not-found"
        assert server.connections == 1 and server.stanzas == []
        await alice.close()
    run(tmp_path, body, remote={"offers_tls": False})


def test_flaw_s2s_out_plaintext(tmp_path):
    async def body(service, server):
        alice = await _login(service)
        await alice.send(message("r@remote.test", "secret", id_="m1"))
        assert await server.wait(lambda: server.stanzas)
        assert server.bodies() == [("clear", "secret")] and server.auth is None
        await alice.close()
    run(tmp_path, body, "s2s-out-plaintext", remote={"offers_tls": False})


# -- IMPP-2-5: only to a server that proves the domain -----------------------------------------------------------------

def test_a_peer_whose_certificate_names_another_domain_gets_nothing(tmp_path):
    async def body(service, server):
        alice = await _login(service)
        await alice.send(message("r@remote.test", "secret", id_="m1"))
        assert await _bounced(alice, "m1") == "remote-server-not-found"
        assert server.connections == 1 and server.stanzas == [] and server.auth is None
        assert "TLS handshake failed" in (service.config.data_dir / "service.log").read_text()
        await alice.close()
    run(tmp_path, body, remote={"certificate": "evil.test"})


def test_flaw_s2s_out_certificate_unchecked(tmp_path):
    async def body(service, server):
        alice = await _login(service)
        await alice.send(message("r@remote.test", "secret", id_="m1"))
        assert await server.wait(lambda: server.stanzas)
        assert server.bodies() == [("authenticated", "secret")]
        await alice.close()
    run(tmp_path, body, "s2s-out-certificate-unchecked", remote={"certificate": "evil.test"})


# -- IMPP-5.9-1, IMPP-5.14-1: nothing before SASL success --------------------------------------------------------------

def test_nothing_goes_out_before_the_peer_confirms_the_authentication(tmp_path):
    async def body(service, server):
        alice = await _login(service)
        await alice.send(message("r@remote.test", "wait for it", id_="m1"))
        await alice.send(presence("w@remote.test", status="directed"))
        assert await server.wait(lambda: server.auth_requested.is_set())
        await asyncio.sleep(1.5)  # longer than the flawed service's patience
        assert server.stanzas == []
        server.confirm.set()
        assert await server.wait(lambda: len(server.stanzas) == 2)
        assert [phase for phase, _ in server.stanzas] == ["authenticated", "authenticated"]
        await alice.close()
    run(tmp_path, body, remote={"confirm_at_once": False})


def test_flaw_s2s_out_before_authentication(tmp_path):
    async def body(service, server):
        alice = await _login(service)
        await alice.send(message("r@remote.test", "wait for it", id_="m1"))
        assert await server.wait(lambda: server.stanzas, 4)
        assert server.bodies() == [("tls", "wait for it")] and not server.confirm.is_set()
        server.confirm.set()
        await alice.send(message("r@remote.test", "later", id_="m2"))
        assert await server.wait(lambda: len(server.stanzas) == 2)
        assert server.bodies()[1] == ("authenticated", "later")
        await alice.close()
    run(tmp_path, body, "s2s-out-before-authentication", remote={"confirm_at_once": False})


def test_flaw_s2s_out_before_authentication_changes_nothing_with_a_prompt_peer(tmp_path):
    async def body(service, server):
        alice = await _login(service)
        await alice.send(message("r@remote.test", "prompt", id_="m1"))
        assert await server.wait(lambda: server.stanzas)
        assert server.bodies() == [("authenticated", "prompt")]
        await alice.close()
    run(tmp_path, body, "s2s-out-before-authentication")


# -- configuration: --peer, the profile's listen_port, the launcher ----------------------------------------------------

def test_peer_option_profile_listen_port_and_the_launcher_keeps_the_port(tmp_path):
    assert _peer("Remote.Test=127.0.0.1:5269") == ("remote.test", ("127.0.0.1", 5269))
    assert _peer("v6.test=[::1]:5269") == ("v6.test", ("::1", 5269))
    for bad in ("remote.test", "remote.test=127.0.0.1", "=127.0.0.1:1", "remote.test=127.0.0.1:0"):
        try:
            _peer(bad)
        except Exception:
            continue
        raise AssertionError(f"{bad!r} accepted")

    async def body(service, server):
        path = tmp_path / "profile.toml"
        path.write_text(profile_text(service, 5222), encoding="utf-8")
        assert profiles.load(path).federation.listen_port == service.config.peers[REMOTE][1]
    run(tmp_path, body)

    process = ReferenceProcess(tmp_path / "launched")
    try:
        first = process.start()
        again = process.restart()
        assert first.federation.listen_port == again.federation.listen_port == process.remote_port > 0
    finally:
        process.stop()
