"""The on-path relay's knobs, against a scripted loopback peer standing in for the IUT (no XMPP service needed).

The fake IUT speaks just enough STARTTLS-shaped protocol: it sends features offering TLS, answers "starttls" with
<proceed/>, then runs a real TLS server (trustme certificate) that echoes every line back with a prefix.
"""

from __future__ import annotations

import asyncio
import ssl

import pytest
import trustme

from conformance.adapters.xmpp.on_path import XmppStreamHooks
from conformance.attacker.certificates import forge
from conformance.attacker.records import RecordSplitter, flip_bit, NotTls
from conformance.attacker.relay import Relay
from conformance.transport.connection import Connection, ConnectionClosed, HandshakeFailed
from conformance.transport.wire import Recorder

FEATURES = b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>"
PROCEED = b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
DOMAIN = "iut.test"


@pytest.fixture(scope="module")
def pki():
    ca = trustme.CA()
    return ca, ca.issue_cert(DOMAIN)


class FakeIut:
    """Features, STARTTLS, then a TLS echo: every chunk comes back as b'echo:' + chunk."""

    def __init__(self, server_cert):
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_cert.configure_cert(self.context)
        self.closed_by_tls_error = asyncio.Event()
        self.connections = 0

    async def serve(self, reader, writer):
        self.connections += 1
        try:
            writer.write(FEATURES)
            await writer.drain()
            if b"starttls" not in await reader.read(1024):
                return
            writer.transport.pause_reading()
            writer.write(PROCEED)
            await writer.drain()
            await writer.start_tls(self.context)
            while data := await reader.read(1024):
                writer.write(b"echo:" + data)
                await writer.drain()
        except (ssl.SSLError, ConnectionError, OSError):
            self.closed_by_tls_error.set()
        finally:
            writer.close()


async def _scenario(server_cert, client_ca, body):
    iut = FakeIut(server_cert)
    server = await asyncio.start_server(iut.serve, "127.0.0.1", 0)
    recorder = Recorder()
    relay = Relay(server.sockets[0].getsockname()[:2], recorder, XmppStreamHooks(), lifetime=10,
                  server_hostname=DOMAIN, cap=64 * 1024)
    address = await relay.start()
    try:
        return await asyncio.wait_for(body(iut, relay, address, recorder, client_ca), 10)
    finally:
        await relay.close()
        server.close()


async def _victim(address, recorder, ca, *, starttls=True):
    conn = await Connection.open(*address, role="victim", recorder=recorder, timeout=5)
    features = await conn.recv()
    if starttls:
        await conn.send(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        assert PROCEED in await conn.recv()
        context = ssl.create_default_context()
        ca.configure_trust(context)
        await conn.start_tls(context, server_hostname=DOMAIN, timeout=5)
    return conn, features


def test_passes_traffic_through_untouched_and_records_both_sides(pki):
    ca, cert = pki

    async def body(iut, relay, address, recorder, ca):
        conn, _ = await _victim(address, recorder, ca)
        await conn.send(b"hello")
        assert await conn.recv() == b"echo:hello"
        leg = relay.latest_leg()
        assert leg.phase == "tls" and leg.counts["out"] > 0 and leg.counts["in"] > 0
        assert any(c.connection == leg.label and c.layer == "tcp" for c in recorder.chunks)
        await conn.close()
    asyncio.run(_scenario(cert, ca, body))


def test_strips_the_tls_offer(pki):
    ca, cert = pki

    async def body(iut, relay, address, recorder, ca):
        relay.strip_tls_offer = True
        conn, features = await _victim(address, recorder, ca, starttls=False)
        assert b"starttls" not in features and b"<stream:features>" in features
        await conn.close()
    asyncio.run(_scenario(cert, ca, body))


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_flipped_bit_breaks_the_tls_session(pki, where):
    ca, cert = pki

    async def body(iut, relay, address, recorder, ca):
        conn, _ = await _victim(address, recorder, ca)
        flip = relay.flip(where)
        await conn.send(b"tampered")
        await asyncio.wait_for(iut.closed_by_tls_error.wait(), 5)
        assert flip.done.is_set() and where in flip.detail
        with pytest.raises(ConnectionClosed):
            await conn.recv()
    asyncio.run(_scenario(cert, ca, body))


def test_terminates_tls_with_a_forged_certificate_and_reads_the_plaintext(pki):
    ca, cert = pki

    async def body(iut, relay, address, recorder, ca):
        forged = forge("rogue-ca", DOMAIN)
        relay.terminate_tls(forged.server_context())
        conn = await Connection.open(*address, role="victim", recorder=recorder, timeout=5)
        await conn.recv()
        await conn.send(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        assert PROCEED in await conn.recv()
        context = ssl.create_default_context(cafile=str(forged.ca_file))  # a victim that trusts CA-R
        await conn.start_tls(context, server_hostname=DOMAIN, timeout=5)
        await conn.send(b"secret")
        assert await conn.recv() == b"echo:secret"
        leg = relay.latest_leg()
        assert leg.phase == "terminated"
        seen = b"".join(c.data for c in recorder.chunks if c.connection == leg.label and c.layer == "app")
        assert b"secret" in seen and b"echo:secret" in seen  # the attacker read both directions
        await conn.close()
    asyncio.run(_scenario(cert, ca, body))


def test_a_victim_that_checks_certificates_refuses_the_forgery(pki):
    ca, cert = pki

    async def body(iut, relay, address, recorder, ca):
        relay.terminate_tls(forge("rogue-ca", DOMAIN).server_context())
        with pytest.raises(HandshakeFailed):
            await _victim(address, recorder, ca)  # trusts only the real CA
    asyncio.run(_scenario(cert, ca, body))


def test_replays_what_the_victim_sent_and_sees_the_iut_refuse_it(pki):
    ca, cert = pki

    async def body(iut, relay, address, recorder, ca):
        conn, _ = await _victim(address, recorder, ca)
        await conn.send(b"once")
        assert await conn.recv() == b"echo:once"
        await conn.close()
        result = await relay.replay(relay.latest_leg(), settle=0.1, step=2, close_within=3)
        assert result.closed and result.sent < result.chunks + 1 and iut.connections == 2
    asyncio.run(_scenario(cert, ca, body))


def test_drops_a_direction_and_caps_bytes(pki):
    ca, cert = pki

    async def body(iut, relay, address, recorder, ca):
        relay.dropping.add("in")
        conn = await Connection.open(*address, role="victim", recorder=recorder, timeout=5)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(conn.recv(), 0.3)  # the features never arrive
        relay.dropping.clear()
        await conn.send(b"x" * (relay.cap + 1))  # more than the relay will carry
        await asyncio.wait_for(_closed(conn), 5)  # the relay tore the leg down at its cap
    asyncio.run(_scenario(cert, ca, body))


async def _closed(conn):
    with pytest.raises(ConnectionClosed):
        while True:
            await conn.recv()


def test_record_splitter_frames_records_across_chunks_and_rejects_non_tls():
    splitter = RecordSplitter()
    record = bytes([23, 3, 3, 0, 4]) + b"abcd"
    assert splitter.feed(record[:3]) == [] and splitter.pending == 3
    (got,) = splitter.feed(record[3:] + record[:1])
    assert bytes(got.data) == record and got.kind == "application_data"
    offset = flip_bit(got, "last")
    assert offset == 8 and got.data[8] == ord("d") ^ 1
    with pytest.raises(NotTls):
        RecordSplitter().feed(b"<stream:stream>")


def test_an_iut_that_stalls_mid_handshake_ends_in_a_bounded_failure_not_a_hang(pki):
    ca, cert = pki

    async def body():
        async def stall(reader, writer):  # features and <proceed/>, then silence: the ClientHello is never answered
            writer.write(FEATURES)
            await reader.read(1024)
            writer.write(PROCEED)
            await writer.drain()
            await asyncio.sleep(30)
        server = await asyncio.start_server(stall, "127.0.0.1", 0)
        recorder = Recorder()
        relay = Relay(server.sockets[0].getsockname()[:2], recorder, XmppStreamHooks(), lifetime=5)
        address = await relay.start()
        conn = await Connection.open(*address, role="victim", recorder=recorder, timeout=5)
        await conn.recv()
        await conn.send(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        await conn.recv()
        context = ssl.create_default_context()
        ca.configure_trust(context)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(HandshakeFailed, match="no TLS handshake within"):
            await conn.start_tls(context, server_hostname=DOMAIN, timeout=0.5)
        assert loop.time() - started < 2
        await relay.close()  # tears the stalled leg down at once
        assert all(task.done() for task in relay._tasks) or not relay._tasks
        server.close()
        assert any("TLS handshake timed out" in c.note for c in recorder.chunks if c.layer == "event")
    asyncio.run(asyncio.wait_for(body(), 10))
