"""The reference service's inbound server-to-server side (conformance/reference/s2s.py): STARTTLS required, SASL
EXTERNAL only for a certificate that proves the claimed domain (XEP-0178), stanzas only when authenticated and
only from that domain, and each of its s2s flaws. A small raw initiating server drives it on loopback."""

from __future__ import annotations

import asyncio
import collections
import datetime
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from conformance import profile as profiles
from conformance.adapters.xmpp.client import XmppClient
from conformance.adapters.xmpp.codec.stanza import (SASL, SERVER, STREAM_CLOSE, TLS, error_condition,
                                                    is_stream_error, message, presence, q, stream_header)
from conformance.adapters.xmpp.codec.xml import (E, Element, Limits, StreamOpened, StreamParser, UnitReceived,
                                                 to_bytes)
from conformance.reference.__main__ import profile_text
from conformance.reference.config import ServiceConfig
from conformance.reference.launcher import ReferenceProcess
from conformance.reference.s2s import XMPP_ADDR, SRV_NAME, certificate_names
from conformance.reference.service import Service
from conformance.transport.connection import Connection
from conformance.transport.wire import Recorder

DOMAIN = "iut.test"
REMOTE = "remote.test"
FEATURES = "{http://etherx.jabber.org/streams}features"


class Peer:
    """A minimal initiating server: a raw stream over asyncio, parsed with the harness's codec."""

    def __init__(self, service: Service, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.service = service
        self.reader, self.writer = reader, writer
        self.parser = StreamParser()
        self.pending: collections.deque[Element] = collections.deque()
        self.header: dict[str, str] = {}
        self.ended = False  # the service closed the stream or the connection

    @classmethod
    async def connect(cls, service: Service) -> "Peer":
        reader, writer = await asyncio.open_connection("127.0.0.1", service.s2s_port)
        return cls(service, reader, writer)

    async def send(self, data: bytes | Element) -> None:
        self.writer.write(data if isinstance(data, bytes) else to_bytes(data, SERVER))
        await self.writer.drain()

    async def unit(self, timeout: float = 5.0) -> Element | None:
        """The next unit the service sent; None once it ended the stream or the connection."""
        async def read() -> Element | None:
            while not self.pending:
                if self.ended:
                    return None
                try:
                    data = await self.reader.read(65536)
                except (ssl.SSLError, ConnectionError):
                    data = b""
                if not data:
                    self.ended = True
                    return None
                for event in self.parser.feed(data):
                    if isinstance(event, StreamOpened):
                        self.header = event.attrs
                    elif isinstance(event, UnitReceived):
                        self.pending.append(event.element)
                    else:
                        self.ended = True
            return self.pending.popleft()
        return await asyncio.wait_for(read(), timeout)

    async def open(self, *, from_: str | None = REMOTE, to: str = DOMAIN, ns: str = SERVER) -> Element | None:
        """Send a stream header; return the service's features (or its stream error, or None)."""
        self.parser, self.pending = StreamParser(), collections.deque()
        await self.send(stream_header(to=to, from_=from_, content_ns=ns))
        return await self.unit()

    async def starttls(self, certificate: str | None) -> bool:
        """STARTTLS presenting peers/<certificate>.crt; False when the TLS handshake fails."""
        await self.send(E("starttls", ns=TLS))
        assert (await self.unit()).tag == q(TLS, "proceed")
        context = ssl.create_default_context(cafile=str(self.service.certs.ca))
        if certificate:
            peers = self.service.certs.peers
            context.load_cert_chain(peers / f"{certificate}.crt", peers / f"{certificate}.key")
        try:
            await asyncio.wait_for(self.writer.start_tls(context, server_hostname=DOMAIN), 5)
        except (ssl.SSLError, ConnectionError):
            self.ended = True
            return False
        return True

    async def secure(self, certificate: str | None = REMOTE, *, from_: str = REMOTE) -> Element | None:
        """Up to the features after TLS (None if TLS or the stream was refused)."""
        features = await self.open(from_=from_)
        assert features.tag == FEATURES
        assert [child.tag for child in features] == [q(TLS, "starttls")]
        assert features.find(f"{q(TLS, 'starttls')}/{q(TLS, 'required')}") is not None
        if not await self.starttls(certificate):
            return None
        return await self.open(from_=from_)

    async def authenticate(self, authzid: str = "=") -> Element:
        await self.send(E("auth", {"mechanism": "EXTERNAL"}, text=authzid, ns=SASL))
        return await self.unit()

    async def authenticated(self, certificate: str = REMOTE) -> None:
        features = await self.secure(certificate)
        assert mechanisms(features) == ["EXTERNAL"]
        assert (await self.authenticate()).tag == q(SASL, "success")
        features = await self.open()
        assert features.tag == FEATURES and len(features) == 0  # nothing left to negotiate

    async def stream_error(self) -> str | None:
        """The condition of the stream error the service ends with (None: it ended without one)."""
        while (unit := await self.unit()) is not None:
            if is_stream_error(unit):
                assert await self.unit() is None  # and the stream is closed
                return error_condition(unit)
        return None

    async def close(self) -> None:
        """Close the stream and wait for the service's closing tag: it processed everything sent before."""
        if not self.ended:
            await self.send(STREAM_CLOSE)
            assert await self.unit() is None
        self.writer.close()


def mechanisms(features: Element | None) -> list[str]:
    if features is None:
        return []
    return [m.text for m in features.iterfind(f"{q(SASL, 'mechanisms')}/{q(SASL, 'mechanism')}")]


def chat(to: str, body: str, from_: str | None = "x@remote.test") -> Element:
    return message(to, body, from_=from_, ns=SERVER)


def offline_bodies(service: Service, user: str) -> list[str]:
    return [service.parse_stored(raw).findtext("{jabber:client}body") for raw in service.store.offline.get(user, [])]


def run(tmp_path: Path, body, *flaws: str, dialback: bool = True) -> None:
    async def main() -> None:
        service = Service(ServiceConfig(data_dir=tmp_path / "ref", flaws=frozenset(flaws), s2s_dialback=dialback))
        await service.start()
        try:
            await asyncio.wait_for(body(service), 8)
        finally:
            await service.stop()
    asyncio.run(main())


# -- an honest peer --------------------------------------------------------------------------------------------------

async def _alice(service: Service) -> XmppClient:
    conn = await Connection.open("127.0.0.1", _c2s_port(service), role="alice", recorder=Recorder(), timeout=5)
    client = XmppClient(conn, DOMAIN, limits=Limits(), timeout=5)
    await client.open_stream()
    await client.starttls(ssl.create_default_context(cafile=str(service.certs.ca)))
    assert (await client.authenticate("alice", service.passwords["alice"])).success
    await client.bind("phone")
    client.start_pump()
    await client.send(presence())
    return client


def _c2s_port(service: Service) -> int:
    return service._server.sockets[0].getsockname()[1]


def test_an_authenticated_peer_reaches_a_logged_in_user(tmp_path):
    async def body(service):
        alice = await _alice(service)
        peer = await Peer.connect(service)
        assert peer.header == {} and (await peer.open()).tag == FEATURES
        assert peer.header["from"] == DOMAIN and peer.header["to"] == REMOTE
        assert await peer.starttls(REMOTE)
        features = await peer.open()
        assert mechanisms(features) == ["EXTERNAL"]
        assert (await peer.authenticate()).tag == q(SASL, "success")
        assert len(await peer.open()) == 0
        await peer.send(chat("alice@iut.test", "hello from afar"))
        got = await alice.wait_for(lambda u: u.findtext("{jabber:client}body") == "hello from afar", 5)
        assert got is not None and got.get("from") == "x@remote.test"
        await peer.close()
        await alice.close()
    run(tmp_path, body)


def test_an_authenticated_peer_stores_offline_subscribes_and_is_subject_to_blocklists(tmp_path):
    async def body(service):
        service.store.blocklists["bob"] = ["spam@remote.test"]
        peer = await Peer.connect(service)
        await peer.authenticated()
        await peer.send(E("auth", {"mechanism": "EXTERNAL"}, text="=", ns=SASL))  # SASL is over: not a stanza
        assert await peer.stream_error() == "unsupported-stanza-type"
        peer = await Peer.connect(service)
        await peer.authenticated()
        await peer.send(chat("bob@iut.test", "stored for later"))
        await peer.send(chat("bob@iut.test", "blocked", from_="spam@remote.test"))
        await peer.send(presence("bob@iut.test", "subscribe", from_="x@remote.test/laptop", ns=SERVER))
        await peer.send(presence("bob@iut.test", "probe", from_="y@remote.test", ns=SERVER))
        await peer.close()
        assert offline_bodies(service, "bob") == ["stored for later"]
        assert list(service.store.pending_in.get("bob", {})) == ["x@remote.test"]
    run(tmp_path, body)


def test_external_with_an_explicit_authzid_and_without_an_initial_response(tmp_path):
    async def body(service):
        peer = await Peer.connect(service)
        await peer.secure()
        assert (await peer.authenticate("ZXZpbC50ZXN0")).tag == q(SASL, "failure")  # authzid evil.test
        await peer.send(E("auth", {"mechanism": "EXTERNAL"}, ns=SASL))
        assert (await peer.unit()).tag == q(SASL, "challenge")
        await peer.send(E("response", text="cmVtb3RlLnRlc3Q=", ns=SASL))  # authzid remote.test
        assert (await peer.unit()).tag == q(SASL, "success")
        assert (await peer.open()).tag == FEATURES
        await peer.close()
    run(tmp_path, body)


# -- IMPP-2-2: nothing before authentication ---------------------------------------------------------------------------

@pytest.mark.parametrize("stage", ["before TLS", "after TLS"])
def test_stanzas_before_authentication_end_the_stream_with_not_authorized(tmp_path, stage):
    async def body(service):
        peer = await Peer.connect(service)
        if stage == "before TLS":
            await peer.open()
        else:
            await peer.secure()
        await peer.send(chat("bob@iut.test", "C50"))
        assert await peer.stream_error() == "not-authorized"
        assert offline_bodies(service, "bob") == []
    run(tmp_path, body)


def test_flaw_s2s_unauthenticated_stanzas_accepted(tmp_path):
    async def body(service):
        peer = await Peer.connect(service)
        await peer.secure(None)  # no certificate: nothing offered, nothing proved
        await peer.send(chat("bob@iut.test", "C50"))
        await peer.close()
        assert offline_bodies(service, "bob") == ["C50"]
    run(tmp_path, body, "s2s-unauthenticated-stanzas-accepted")


# -- IMPP-2-3: only from the authenticated domain ----------------------------------------------------------------------

@pytest.mark.parametrize("stanza,condition", [
    (chat("bob@iut.test", "C51", from_="x@other.test"), "invalid-from"),
    (presence("bob@iut.test", from_="alice@iut.test", ns=SERVER), "invalid-from"),
    (chat("bob@iut.test", "no from", from_=None), "improper-addressing"),
    (chat("bob@other.test", "relay me"), "host-unknown"),
    (message("bob@iut.test", "client namespace", from_="x@remote.test"), "invalid-namespace"),
])
def test_an_authenticated_peer_cannot_send_for_other_domains(tmp_path, stanza, condition):
    async def body(service):
        peer = await Peer.connect(service)
        await peer.authenticated()
        await peer.send(stanza)
        assert await peer.stream_error() == condition
        assert offline_bodies(service, "bob") == []
    run(tmp_path, body)


def test_flaw_s2s_from_not_checked(tmp_path):
    async def body(service):
        peer = await Peer.connect(service)
        await peer.authenticated()
        await peer.send(chat("bob@iut.test", "C51", from_="x@other.test"))
        await peer.close()
        assert offline_bodies(service, "bob") == ["C51"]
    run(tmp_path, body, "s2s-from-not-checked")


# -- IMPP-2-4: certificates --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("certificate", ["evil.test", None])
def test_a_certificate_that_does_not_prove_the_domain_gets_no_external(tmp_path, certificate):
    async def body(service):
        peer = await Peer.connect(service)
        features = await peer.secure(certificate)
        assert features.tag == FEATURES and mechanisms(features) == []
        answer = await peer.authenticate()
        assert answer.tag == q(SASL, "failure") and error_condition(answer) == "not-authorized"
        await peer.send(chat("bob@iut.test", "as remote.test"))
        assert await peer.stream_error() == "not-authorized"
        assert offline_bodies(service, "bob") == []
    run(tmp_path, body)


def test_an_expired_certificate_ends_the_tls_handshake(tmp_path):
    async def body(service):
        peer = await Peer.connect(service)
        # TLS 1.2: the handshake fails; TLS 1.3: the client finishes first, then the service closes.
        assert await peer.secure("remote.test-expired") is None
        assert peer.ended
    run(tmp_path, body)


@pytest.mark.parametrize("certificate", ["evil.test", "remote.test-expired"])
def test_flaw_s2s_any_certificate_accepted(tmp_path, certificate):
    async def body(service):
        peer = await Peer.connect(service)
        await peer.authenticated(certificate)
        await peer.send(chat("bob@iut.test", "C52"))
        await peer.close()
        assert offline_bodies(service, "bob") == ["C52"]
    run(tmp_path, body, "s2s-any-certificate-accepted")


# -- stream headers ----------------------------------------------------------------------------------------------------

def test_stream_headers_are_checked(tmp_path):
    async def body(service):
        cases = [({"ns": "jabber:client"}, "invalid-namespace"), ({"to": "other.test"}, "host-unknown"),
                 ({"from_": "x@remote.test"}, "invalid-from"), ({"from_": DOMAIN}, "invalid-from")]
        for header, condition in cases:
            peer = await Peer.connect(service)
            assert error_condition(await peer.open(**header)) == condition, header
        peer = await Peer.connect(service)  # 'from' may wait until TLS, but not longer
        assert (await peer.open(from_=None)).tag == FEATURES
        assert await peer.starttls(REMOTE)
        assert error_condition(await peer.open(from_=None)) == "improper-addressing"
        peer = await Peer.connect(service)  # after SASL the stream stays that domain's
        await peer.secure()
        assert (await peer.authenticate()).tag == q(SASL, "success")
        assert error_condition(await peer.open(from_="evil.test")) == "invalid-from"
    run(tmp_path, body)


DIALBACK_KEY = b"<db:result xmlns:db='jabber:server:dialback' from='remote.test' to='iut.test'>k</db:result>"


@pytest.mark.parametrize("dialback", [True, False])
def test_a_dialback_key_needs_its_authoritative_server_or_is_not_taken_at_all(tmp_path, dialback):
    """With dialback on, a key is checked with the claimed domain's server, which this service reaches only through
    its peer map (empty here): no answer, no authentication. With certificates only, dialback is a policy
    violation. Before TLS it is never taken."""
    async def body(service):
        peer = await Peer.connect(service)
        features = await peer.secure()
        assert (features.find("{urn:xmpp:features:dialback}dialback") is not None) == dialback
        await peer.send(DIALBACK_KEY)
        if dialback:
            answer = await peer.unit()
            assert answer.tag == "{jabber:server:dialback}result" and answer.get("type") == "error"
            assert await peer.stream_error() == "not-authorized"
        else:
            assert await peer.stream_error() == "policy-violation"
        peer = await Peer.connect(service)
        await peer.open()
        await peer.send(DIALBACK_KEY)
        assert await peer.stream_error() == "policy-violation"
    run(tmp_path, body, dialback=dialback)


# -- the certificate name check (RFC 6125 as XEP-0178 uses it) ---------------------------------------------------------

def _certificate(cn: str | None, *names: x509.GeneralName) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
               .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1)))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)


def _utf8(text: str, tag: int = 0x0C) -> bytes:
    return bytes([tag, len(text)]) + text.encode()


def test_certificate_names_follow_rfc_6125():
    wildcard = _certificate(None, x509.DNSName("*.remote.test"))
    assert certificate_names(wildcard, "chat.remote.test")
    assert not certificate_names(wildcard, "remote.test")
    assert not certificate_names(wildcard, "a.chat.remote.test")
    assert not certificate_names(_certificate(None, x509.DNSName("*.test")), "remote.test")
    assert certificate_names(_certificate(None, x509.DNSName("Remote.Test.")), "remote.test")
    # the CN counts only when no subjectAltName identifier is there
    assert certificate_names(_certificate("remote.test"), "remote.test")
    assert not certificate_names(_certificate("remote.test", x509.DNSName("evil.test")), "remote.test")
    xmpp_addr = _certificate(None, x509.OtherName(XMPP_ADDR, _utf8("remote.test")))
    assert certificate_names(xmpp_addr, "remote.test") and not certificate_names(xmpp_addr, "evil.test")
    srv = _certificate(None, x509.OtherName(SRV_NAME, _utf8("_xmpp-server.remote.test", 0x16)))
    assert certificate_names(srv, "remote.test")
    assert not certificate_names(_certificate(None, x509.OtherName(SRV_NAME, _utf8("_xmpp-client.remote.test",
                                                                                    0x16))), "remote.test")


# -- the generated profile, and the port across restarts ---------------------------------------------------------------

def test_the_profile_declares_federation_and_a_restart_keeps_the_port(tmp_path):
    async def body(service):
        path = tmp_path / "profile.toml"
        path.write_text(profile_text(service, _c2s_port(service)), encoding="utf-8")
        federation = profiles.load(path).federation
        assert federation.port == service.s2s_port and federation.remote_domain == REMOTE
        assert (federation.certificates / "remote.test.crt").is_file()
    run(tmp_path, body)

    process = ReferenceProcess(tmp_path / "launched")
    try:
        first = process.start()
        again = process.restart()
        assert first.federation is not None and again.federation.port == first.federation.port
    finally:
        process.stop()
