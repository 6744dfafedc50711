"""The relay's knobs for attacking a victim that is a *client*: what goes to the victim (a flipped bit, records sent
again, rewritten plaintext), TLS made to fail, and what the victim sent in clear.

Behind the relay sits a scripted stand-in for the genuine service: features offering STARTTLS, <proceed/>, then a
real TLS server (trustme certificate) that answers each chunk with `answer(chunk)` (pieces written apart, so that a
unit reaches the relay split). The victim is scripted with asyncio streams and ssl (or, for the synchronous
OnPathAttacker verbs, a blocking socket).
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import ssl
import threading
import types

import pytest
import trustme

from conformance.adapters.xmpp.on_path import XmppStreamHooks
from conformance.attacker import relay as relay_module
from conformance.attacker.certificates import forge
from conformance.attacker.on_path import OnPathAttacker, RecordMark
from conformance.attacker.relay import FATAL_INTERNAL_ERROR, Leg, Relay
from conformance.transport.wire import Recorder

TLS_NS = "urn:ietf:params:xml:ns:xmpp-tls"
SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"
FEATURES = (f"<stream:features><starttls xmlns='{TLS_NS}'><required/></starttls>"
            f"<mechanisms xmlns='{SASL_NS}'><mechanism>SCRAM-SHA-1-PLUS</mechanism>"
            f"<mechanism>SCRAM-SHA-1</mechanism></mechanisms></stream:features>").encode()
STARTTLS = f"<starttls xmlns='{TLS_NS}'/>".encode()
PROCEED = f"<proceed xmlns='{TLS_NS}'/>".encode()
REFUSAL = f"<failure xmlns='{TLS_NS}'/></stream:stream>".encode()
DOMAIN = "iut.test"
SIGNATURE = bytes(range(1, 33))  # a 32-byte ServerSignature (SCRAM-SHA-256 sized)


def _success(final: bytes, element: str = "success") -> bytes:
    return f"<{element} xmlns='{SASL_NS}'>".encode() + base64.b64encode(final) + f"</{element}>".encode()


SUCCESS = _success(b"v=" + base64.b64encode(SIGNATURE))


@pytest.fixture(scope="module")
def pki():
    ca = trustme.CA()
    return ca, ca.issue_cert(DOMAIN)


def _echo(chunk: bytes) -> list[bytes]:
    return [b"echo:" + chunk]


class Target:
    """The scripted genuine service behind the relay."""

    def __init__(self, cert, answer=_echo, *, direct_tls: bool = False):
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(self.context)
        self.answer = answer
        self.direct_tls = direct_tls
        self.plaintext = bytearray()  # what it received before TLS
        self.in_tls = bytearray()  # what it received inside TLS
        self.tls_attempts = 0  # connections on which it began TLS

    async def serve(self, reader, writer):
        try:
            if self.direct_tls:
                self.tls_attempts += 1
                await writer.start_tls(self.context)
            else:
                writer.write(FEATURES)
                await writer.drain()
                request = await reader.read(1024)
                self.plaintext += request
                if b"starttls" not in request:
                    return
                writer.transport.pause_reading()
                writer.write(PROCEED)
                await writer.drain()
                self.tls_attempts += 1
                await writer.start_tls(self.context)
            while data := await reader.read(4096):
                self.in_tls += data
                for i, piece in enumerate(self.answer(data)):
                    if i:
                        await asyncio.sleep(0.05)  # the relay sees the pieces as separate chunks
                    writer.write(piece)
                    await writer.drain()
        except (ssl.SSLError, ConnectionError, OSError):
            pass
        finally:
            writer.close()


async def _scenario(cert, body, *, answer=_echo, direct_tls: bool = False):
    target = Target(cert, answer, direct_tls=direct_tls)
    server = await asyncio.start_server(target.serve, "127.0.0.1", 0)
    recorder = Recorder()
    relay = Relay(server.sockets[0].getsockname()[:2], recorder, XmppStreamHooks(direct_tls=direct_tls),
                  lifetime=10, server_hostname=DOMAIN)
    address = await relay.start()
    try:
        return await asyncio.wait_for(body(target, relay, address, recorder), 8)
    finally:
        await relay.close()
        server.close()


async def _read_until(reader: asyncio.StreamReader, marker: bytes, bound: float = 3.0) -> bytes:
    got = b""
    while marker not in got:
        data = await asyncio.wait_for(reader.read(4096), bound)
        if not data:
            raise EOFError(f"closed before {marker!r}; got {got!r}")
        got += data
    return got


def _trusting(ca) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def _victim(address, context: ssl.SSLContext | None = None):
    """Connect, take the features, ask for TLS and, with `context`, start it. Returns (reader, writer)."""
    reader, writer = await asyncio.open_connection(*address)
    await _read_until(reader, b"</stream:features>")
    writer.write(STARTTLS)
    await _read_until(reader, PROCEED)
    if context is not None:
        await writer.start_tls(context, server_hostname=DOMAIN)
    return reader, writer


def _client_hello() -> bytes:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname=DOMAIN)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


async def _until(condition, bound: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound
    while not condition():
        assert loop.time() < deadline, "the condition never came true"
        await asyncio.sleep(0.01)


def _events(recorder: Recorder) -> list[str]:
    return [c.note for c in recorder.chunks if c.layer == "event"]


# -- what goes to the victim, in passed-through TLS ------------------------------------------------------------------


def test_a_bit_flipped_towards_the_victim_breaks_its_tls(pki):
    ca, cert = pki

    async def body(target, relay, address, recorder):
        reader, writer = await _victim(address, _trusting(ca))
        writer.write(b"untouched")
        assert await _read_until(reader, b"echo:untouched") == b"echo:untouched"
        flip = relay.flip("middle", towards="victim")
        assert flip.towards == "victim" and not relay._flips  # the victim's own records are left alone
        writer.write(b"tampered")
        with pytest.raises(ssl.SSLError, match="BAD_RECORD_MAC|DECRYPTION_FAILED"):
            await _read_until(reader, b"echo:tampered")
        assert flip.done.is_set() and "to the victim" in flip.detail
        assert target.in_tls.endswith(b"tampered")  # what the victim sent reached the target unaltered
        writer.close()
    asyncio.run(_scenario(cert, body))


def test_records_sent_to_the_victim_again_break_its_tls(pki):
    ca, cert = pki

    async def body(target, relay, address, recorder):
        reader, writer = await _victim(address, _trusting(ca))
        writer.write(b"first")
        await _read_until(reader, b"echo:first")
        leg = relay.latest_leg()
        mark = leg.records_to_victim_seen
        writer.write(b"C1")
        await _read_until(reader, b"echo:C1")
        flight = leg.records_to_victim_since(mark)
        assert flight and all(record[0] == 23 for _, record in flight)  # application_data, in arrival order
        assert [t for t, _ in flight] == sorted(t for t, _ in flight)
        data = b"".join(record for _, record in flight)
        assert await relay.inject_to_victim(leg, data) == len(data)
        assert f"re-injected {len(data)} bytes ({len(flight)} records) towards the victim" in _events(recorder)
        with pytest.raises(ssl.SSLError, match="BAD_RECORD_MAC|DECRYPTION_FAILED"):
            await _read_until(reader, b"echo:C1")  # the same ciphertext again: a sequence number behind
        writer.close()
    asyncio.run(_scenario(cert, body))


def test_bytes_from_the_target_that_are_not_tls_still_reach_the_victim():
    async def body():
        async def serve(reader, writer):  # <proceed/>, then no TLS at all
            writer.write(FEATURES)
            await reader.read(1024)
            writer.write(PROCEED)
            await writer.drain()
            await reader.read(1024)
            writer.write(b"<not-tls/>")
            await writer.drain()
            writer.close()
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        recorder = Recorder()
        relay = Relay(server.sockets[0].getsockname()[:2], recorder, XmppStreamHooks(), lifetime=5)
        address = await relay.start()
        reader, writer = await _victim(address)
        writer.write(_client_hello())
        assert await asyncio.wait_for(reader.read(), 3) == b"<not-tls/>"
        assert any("passing them on unframed" in note for note in _events(recorder))
        writer.close()
        await relay.close()
        server.close()
    asyncio.run(asyncio.wait_for(body(), 8))


def test_records_kept_for_the_victim_are_bounded(monkeypatch):
    monkeypatch.setattr(relay_module, "MAX_KEPT_RECORDS", 3)
    monkeypatch.setattr(relay_module, "MAX_KEPT_BYTES", 100)
    leg = Leg(index=0, label="mitm", opened=0.0, received={"out": [], "in": []})
    for i in range(5):
        leg.keep_record_to_victim(bytes([23, 3, 3, 0, 1, i]))
    assert [r[-1] for _, r in leg.records_to_victim] == [2, 3, 4] and leg.records_to_victim_seen == 5
    assert [r[-1] for _, r in leg.records_to_victim_since(3)] == [3, 4]
    assert leg.records_to_victim_since(1) is None  # let go of: a replay from there cannot be had
    leg.keep_record_to_victim(b"\x17\x03\x03" + bytes(90))
    assert len(leg.records_to_victim) == 2 and leg.records_to_victim_bytes <= 100


# -- TLS made to fail ------------------------------------------------------------------------------------------------


def test_fail_tls_refused_answers_the_request_itself_on_every_leg(pki):
    ca, cert = pki

    async def body(target, relay, address, recorder):
        relay.fail_tls = "refused"
        for _ in range(2):  # the knob holds for reconnections too
            reader, writer = await asyncio.open_connection(*address)
            await _read_until(reader, b"</stream:features>")
            writer.write(b"<stream:stream to='iut.test'>" + STARTTLS)
            assert await _read_until(reader, REFUSAL) == REFUSAL
            assert await asyncio.wait_for(reader.read(), 3) == b""  # and the attacker closed
            writer.close()
        assert target.plaintext == b"" and target.tls_attempts == 0  # the request never reached the target
        await asyncio.sleep(0.05)
        assert [bytes(leg.cleartext_from_victim) for leg in relay.legs] == [b"<stream:stream to='iut.test'>" +
                                                                            STARTTLS] * 2
        assert all(leg.iut_closed.is_set() and "refused" in leg.tls_failure for leg in relay.legs)
    asyncio.run(_scenario(cert, body))


def test_fail_tls_reset_sends_the_victim_an_rst_after_its_client_hello(pki):
    ca, cert = pki

    async def body(target, relay, address, recorder):
        relay.fail_tls = "reset"
        reader, writer = await _victim(address)  # the target's <proceed/> went through
        writer.write(_client_hello())
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(4096), 3)
        writer.close()
        leg = relay.latest_leg()
        await asyncio.wait_for(leg.iut_closed.wait(), 3)  # the target's side is closed too
        assert target.in_tls == b"" and "reset" in leg.tls_failure
    asyncio.run(_scenario(cert, body))


def test_fail_tls_alert_answers_the_client_hello_with_internal_error(pki):
    ca, cert = pki

    async def body(target, relay, address, recorder):
        relay.fail_tls = "alert"
        reader, writer = await _victim(address)
        writer.write(_client_hello())
        got = await asyncio.wait_for(reader.read(), 3)  # everything until the attacker closes
        assert got == FATAL_INTERNAL_ERROR == bytes.fromhex("15030300020250")
        writer.close()
        reader, writer = await _victim(address)  # and the victim's ssl sees the alert as such
        with pytest.raises(ssl.SSLError, match="INTERNAL_ERROR"):
            await writer.start_tls(_trusting(ca), server_hostname=DOMAIN)
        writer.close()
        assert target.in_tls == b"" and all("alert" in leg.tls_failure for leg in relay.legs)
    asyncio.run(_scenario(cert, body))


def test_fail_tls_refused_with_direct_tls_resets(pki):
    ca, cert = pki

    async def body(target, relay, address, recorder):
        relay.fail_tls = "refused"
        reader, writer = await asyncio.open_connection(*address)
        writer.write(_client_hello())
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(4096), 3)
        writer.close()
        assert "direct TLS" in relay.latest_leg().tls_failure and relay.latest_leg().cleartext_from_victim == b""
    asyncio.run(_scenario(cert, body, direct_tls=True))


# -- what the victim sent, and its TLS with the attacker -------------------------------------------------------------


def test_keeps_what_the_victim_sent_in_clear_when_tls_never_starts(pki):
    ca, cert = pki

    async def body(target, relay, address, recorder):
        relay.strip_tls_offer = True
        reader, writer = await asyncio.open_connection(*address)
        features = await _read_until(reader, b"</stream:features>")
        assert b"starttls" not in features
        writer.write(b"<stream:stream to='iut.test'>")
        writer.write(b"<auth mechanism='PLAIN'>secret</auth>")
        await writer.drain()
        writer.close()
        leg = relay.latest_leg()
        await asyncio.wait_for(leg.victim_closed.wait(), 3)
        assert bytes(leg.cleartext_from_victim) == b"<stream:stream to='iut.test'><auth mechanism='PLAIN'>secret</auth>"
        assert leg.phase == "plaintext" and leg.plaintext_from_victim == b""
    asyncio.run(_scenario(cert, body))


def test_a_victim_refusing_the_attackers_certificate_is_recorded_and_nothing_goes_on(pki):
    ca, cert = pki

    async def body(target, relay, address, recorder):
        relay.terminate_tls(forge("rogue-ca", DOMAIN).server_context())
        with pytest.raises(ssl.SSLCertVerificationError):  # trusts only the genuine CA, says so with an alert
            await asyncio.to_thread(_blocking_victim, address, _trusting(ca))
        leg = relay.latest_leg()
        await _until(lambda: leg.tls_failure)
        assert leg.tls_failure.startswith("the victim's TLS handshake with the attacker failed")
        assert leg.tls_failure in _events(recorder)
        assert target.tls_attempts == 1 and target.in_tls == b""  # the attacker never opened its TLS to the target
        assert bytes(leg.cleartext_from_victim) == STARTTLS

        reader, writer = await _victim(address)  # asyncio's ssl hangs up on a bad certificate without an alert
        with pytest.raises(ssl.SSLCertVerificationError):
            await writer.start_tls(_trusting(ca), server_hostname=DOMAIN)
        writer.close()
        leg = relay.latest_leg()
        await _until(lambda: leg.tls_failure)
        assert leg.tls_failure == "the victim closed the connection during its TLS handshake with the attacker"
    asyncio.run(_scenario(cert, body))


# -- rewriting what goes to the victim -------------------------------------------------------------------------------


def _split_success(chunk: bytes) -> list[bytes]:
    if b"auth" not in chunk:
        return _echo(chunk)
    return [SUCCESS[:len(SUCCESS) // 2], SUCCESS[len(SUCCESS) // 2:]]  # one unit, two TLS writes


def test_rewrites_a_success_split_over_two_chunks_in_terminated_tls(pki):
    ca, cert = pki
    hooks = XmppStreamHooks()

    async def body(target, relay, address, recorder):
        forged = forge("rogue-ca", DOMAIN)
        relay.terminate_tls(forged.server_context())
        relay.rewrite_to_victim = hooks.tamper_server_signature
        reader, writer = await _victim(address, ssl.create_default_context(cafile=str(forged.ca_file)))
        writer.write(b"<auth mechanism='SCRAM-SHA-256'>x</auth>")
        got = await _read_until(reader, b"</success>")
        assert got == hooks.tamper_server_signature(SUCCESS) != SUCCESS
        leg = relay.latest_leg()
        assert leg.rewrites == 1 and b"<auth mechanism='SCRAM-SHA-256'>" in leg.plaintext_from_victim
        app_in = [c.data for c in recorder.chunks if c.layer == "app" and c.direction == "in"]
        assert len(app_in) == 2  # the attacker did see the unit in two pieces
        writer.write(b"after")
        assert await _read_until(reader, b"echo:after") == b"echo:after"  # and carries on unheld
        writer.close()
    asyncio.run(_scenario(cert, body, answer=_split_success))


def test_rewrites_a_split_unit_before_tls_and_flushes_what_is_held_when_the_target_closes(pki):
    ca, cert = pki
    hooks = XmppStreamHooks()

    async def body(*_):
        async def serve(reader, writer):  # features in two pieces, then a <success/> cut off by the close
            writer.write(FEATURES[:40])
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(FEATURES[40:])
            await writer.drain()
            await reader.read(1024)
            writer.write(SUCCESS[:30])
            await writer.drain()
            writer.close()
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        recorder = Recorder()
        relay = Relay(server.sockets[0].getsockname()[:2], recorder, hooks, lifetime=5)
        relay.rewrite_to_victim = hooks.strip_channel_binding
        address = await relay.start()
        reader, writer = await asyncio.open_connection(*address)
        assert await _read_until(reader, b"</stream:features>") == hooks.strip_channel_binding(FEATURES)
        writer.write(b"<auth/>")
        assert await asyncio.wait_for(reader.read(), 3) == SUCCESS[:30]  # held, then passed on at the close
        writer.close()
        await relay.close()
        server.close()
    asyncio.run(asyncio.wait_for(body(), 8))


def test_unit_incomplete_holds_back_only_unfinished_units():
    hooks = XmppStreamHooks()
    assert hooks.unit_incomplete(SUCCESS[:20]) and hooks.unit_incomplete(b"<iq/><succ")
    assert not hooks.unit_incomplete(SUCCESS)
    assert not hooks.unit_incomplete(f"<success xmlns='{SASL_NS}'/>".encode())
    assert not hooks.unit_incomplete(b"<stream:stream xmlns='jabber:client'>")  # the stream itself stays open
    assert hooks.unit_incomplete(FEATURES[:-5]) and not hooks.unit_incomplete(FEATURES)


# -- the XMPP rewrites, as pure functions ----------------------------------------------------------------------------


def test_tamper_server_signature_changes_only_the_signature():
    tampered = XmppStreamHooks.tamper_server_signature(b"<iq/>" + SUCCESS + b"<x/>")
    assert len(tampered) == len(SUCCESS) + 9 and tampered.startswith(b"<iq/><success") and tampered.endswith(b"<x/>")
    final = base64.b64decode(tampered[5:-4].split(b">", 1)[1].split(b"<", 1)[0], validate=True)
    assert final.startswith(b"v=")
    forged = base64.b64decode(final[2:], validate=True)
    assert len(forged) == len(SIGNATURE) and forged != SIGNATURE and forged[1:] == SIGNATURE[1:]

    challenge = _success(b"v=" + base64.b64encode(SIGNATURE) + b",ext=1", "challenge")
    altered = base64.b64decode(XmppStreamHooks.tamper_server_signature(challenge).split(b">")[1].split(b"<")[0])
    assert altered.endswith(b",ext=1") and altered != base64.b64decode(challenge.split(b">")[1].split(b"<")[0])

    for untouched in (_success(b"r=nonce,s=salt,i=4096", "challenge"), _success(b"e=invalid-proof"),
                      f"<success xmlns='{SASL_NS}'/>".encode(), f"<success xmlns='{SASL_NS}'>=</success>".encode(),
                      b"<success xmlns='urn:other'>" + base64.b64encode(b"v=AAAA") + b"</success>", b"<message/>"):
        assert XmppStreamHooks.tamper_server_signature(untouched) == untouched


def test_strip_channel_binding_hides_every_plus_mechanism():
    offer = (f"<stream:features><mechanisms xmlns='{SASL_NS}'><mechanism>SCRAM-SHA-256-PLUS</mechanism>"
             f"<mechanism>SCRAM-SHA-1-PLUS</mechanism><mechanism>SCRAM-SHA-256</mechanism>"
             f"<mechanism>PLAIN</mechanism><mechanism>SCRAM-SHA-512-PLUS</mechanism></mechanisms>"
             f"</stream:features>").encode()
    stripped = XmppStreamHooks.strip_channel_binding(offer)
    assert b"-PLUS" not in stripped
    assert stripped == (f"<stream:features><mechanisms xmlns='{SASL_NS}'><mechanism>SCRAM-SHA-256</mechanism>"
                        f"<mechanism>PLAIN</mechanism></mechanisms></stream:features>").encode()
    assert XmppStreamHooks.strip_channel_binding(b"<message>SCRAM-SHA-1-PLUS</message>") == \
        b"<message>SCRAM-SHA-1-PLUS</message>"


# -- the synchronous verbs, over a loop in a thread (as the suite's runtime does) ------------------------------------


class _Runtime:
    """Just what OnPathAttacker takes of the runtime: an event loop in another thread and a target."""

    def __init__(self, loop: asyncio.AbstractEventLoop, address, recorder: Recorder):
        self.loop, self.address, self.recorder = loop, address, recorder
        self.timeouts = types.SimpleNamespace(case=8.0, close=2.0, step=1.0, handshake=2.0)
        self.keylog, self.domain, self.routes = None, DOMAIN, {}

    def call(self, fn, *args, timeout=None):
        return asyncio.run_coroutine_threadsafe(fn(*args), self.loop).result(timeout or self.timeouts.case)


def _blocking_victim(address, context: ssl.SSLContext | None) -> socket.socket:
    sock = socket.create_connection(address, timeout=3)
    got = b""
    while b"</stream:features>" not in got:
        got += sock.recv(4096)
    sock.sendall(STARTTLS)
    got = b""
    while PROCEED not in got and REFUSAL not in got:
        data = sock.recv(4096)
        if not data:
            break
        got += data
    if context is None or PROCEED not in got:
        return sock
    return context.wrap_socket(sock, server_hostname=DOMAIN)


def test_on_path_attacker_verbs_mark_replay_fail_and_report(pki):
    ca, cert = pki
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    target = Target(cert)
    try:
        server = asyncio.run_coroutine_threadsafe(asyncio.start_server(target.serve, "127.0.0.1", 0), loop).result(3)
        rt = _Runtime(loop, server.sockets[0].getsockname()[:2], Recorder())
        with OnPathAttacker(rt, XmppStreamHooks()).engaged() as attacker:
            tls = _blocking_victim(attacker.listening_at, _trusting(ca))
            mark = attacker.mark_records_to_victim()
            assert mark == RecordMark(0, mark.position)
            tls.sendall(b"C1")
            assert tls.recv(4096) == b"echo:C1"
            records = attacker.records_to_victim_since(mark)
            assert records and attacker.reinjects_to_victim(records) == sum(map(len, records))
            with pytest.raises(ssl.SSLError, match="BAD_RECORD_MAC|DECRYPTION_FAILED"):
                tls.recv(4096)
            tls.close()

            attacker.makes_tls_fail("refused")
            plain = _blocking_victim(attacker.listening_at, _trusting(ca))
            plain.close()
            with pytest.raises(ValueError):
                attacker.makes_tls_fail("sometimes")

            attacker.tampers_with_server_signature()
            assert rt.call(_knob, attacker.relay)(FEATURES + SUCCESS) == \
                XmppStreamHooks.strip_channel_binding(XmppStreamHooks.tamper_server_signature(FEATURES + SUCCESS))

            seen = attacker.victim_sent()
            assert [data for _, data in seen.cleartext] == [STARTTLS, STARTTLS]
            assert seen.decrypted == [] and seen.cleartext_contains(STARTTLS) == [label for label, _ in seen.cleartext]
            assert [label for label, _ in seen.tls_failures] == [seen.cleartext[1][0]]
            assert "refused" in seen.tls_failures[0][1]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(3)
        loop.close()


async def _knob(relay: Relay):
    return relay.rewrite_to_victim


def test_on_path_attacker_reports_what_it_decrypted(pki):
    ca, cert = pki
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        server = asyncio.run_coroutine_threadsafe(asyncio.start_server(Target(cert).serve, "127.0.0.1", 0),
                                                  loop).result(3)
        rt = _Runtime(loop, server.sockets[0].getsockname()[:2], Recorder())
        with OnPathAttacker(rt, XmppStreamHooks()).engaged() as attacker:
            forged = attacker.terminates_tls()
            secret = os.urandom(8).hex().encode()
            tls = _blocking_victim(attacker.listening_at, ssl.create_default_context(cafile=str(forged.ca_file)))
            tls.sendall(b"<message>" + secret + b"</message>")
            assert tls.recv(4096).startswith(b"echo:")
            tls.close()
            seen = attacker.victim_sent()
            assert len(seen.decrypted) == 1 and secret in seen.decrypted[0][1] and seen.tls_failures == []
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(3)
        loop.close()


def test_fail_tls_silent_swallows_the_client_hello_and_answers_nothing(pki):
    ca, cert = pki

    async def body(target, relay, address, recorder):
        relay.fail_tls = "silent"
        reader, writer = await _victim(address)
        writer.write(_client_hello())
        with pytest.raises(asyncio.TimeoutError):  # no order to wait on: silence is watched for a bounded time
            await asyncio.wait_for(reader.read(4096), 0.3)
        leg = relay.latest_leg()
        assert target.in_tls == b"" and "never answered" in leg.tls_failure
        writer.close()  # the victim giving up ends the leg
        await asyncio.wait_for(leg.iut_closed.wait(), 3)
    asyncio.run(_scenario(cert, body))
