"""TLS 1.3 early data ends (conformance/transport/early_data.py), in memory: what the client learns from the
server's own messages, what the server hands its application before the handshake ends, and single-use tickets."""

import pytest
import trustme

from conformance.transport import early_data, tls_hello


@pytest.fixture(scope="module")
def server_files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("early-data")
    pem = directory / "server.pem"
    trustme.CA().issue_cert("iut.test").private_key_and_cert_chain_pem.write_to_path(str(pem))
    return str(pem)


def _handshake(client, server, first: bytes) -> None:
    """Move bytes between the two ends until both are established (bounded: a TLS 1.3 handshake is two flights)."""
    to_server = first
    for _ in range(4):
        _, to_client = server.receive(to_server)
        _, to_server = client.receive(to_client)
        if client.established and server.established and not to_server:
            return
    raise AssertionError("no handshake in four flights")


def _ticket(client_context, server_context):
    client, server = client_context.connection(), server_context.connection()
    _handshake(client, server, client.start())
    client.receive(server.send(b"<features/>"))  # tickets travel after the handshake, read with the first data
    return client


@pytest.mark.parametrize("anti_replay", [True, False])
def test_early_data_reaches_the_server_before_the_finished_and_a_replay_only_without_single_use_tickets(
        server_files, anti_replay):
    server_context = early_data.ServerContext(server_files, server_files, anti_replay=anti_replay)
    client_context = early_data.ClientContext(server_name="iut.test")
    first = _ticket(client_context, server_context)
    assert first.seen.tickets and all(size == early_data.MAX_EARLY_DATA for size in first.seen.tickets)
    ticket = first.ticket()
    assert ticket is not None and ticket.max_early_data == early_data.MAX_EARLY_DATA

    client = client_context.connection(ticket=ticket, early_data=b"<auth/>")
    flight = client.start()
    server = server_context.connection()
    early, to_client = server.receive(flight)
    assert early == b"<auth/>" and not server.established
    to_client += server.send(b"<challenge/>")  # 0.5-RTT: before the client's Finished
    plaintext, finished = client.receive(to_client)
    assert plaintext == b"<challenge/>" and client.established and finished
    assert client.seen.early_data_accepted and client.seen.psk_accepted and client.resumed
    server.receive(finished)
    assert server.established

    replay = server_context.connection()
    replayed, answer = replay.receive(flight)
    assert replayed == (b"" if anti_replay else b"<auth/>")
    hello = tls_hello.AnswerReader().feed(answer)
    assert isinstance(hello, tls_hello.ServerHello) and hello.resumed is not anti_replay


def test_a_server_without_early_data_is_seen_to_decline_it(server_files):
    """Python's ssl module as the server (what the clean reference service is): tickets without early data."""
    import ssl
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(server_files)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = context.wrap_bio(incoming, outgoing, server_side=True)
    client = early_data.ClientContext(server_name="iut.test").connection()
    incoming.write(client.start())
    for _ in range(4):
        try:
            server.do_handshake()
        except ssl.SSLWantReadError:
            pass
        _, back = client.receive(outgoing.read())
        incoming.write(back)
        if client.established:
            break
    server.write(b"<features/>")
    client.receive(outgoing.read())
    assert client.seen.tickets and not any(client.seen.tickets)
    assert client.ticket().max_early_data == 0


def test_a_broken_server_flight_is_a_tls_failure_not_a_crash():
    client = early_data.ClientContext(server_name="iut.test").connection()
    client.start()
    with pytest.raises(early_data.TlsFailed):
        client.receive(b"\x16\x03\x03\x00\x05hello")


# -- the reference client's flaw 'client-early-data' (reference_client/zero_rtt.py) -----------------------------------

def _pump(client, server) -> bytes:
    """Run a client session against a server connection in memory until the client's handshake is done (bounded);
    returns the plaintext the server received."""
    received = b""
    client.handshake()
    for _ in range(10):
        plaintext, reply = server.receive(client.outgoing())
        received += plaintext
        if reply:
            client.feed(reply)
        if client.handshake():
            plaintext, reply = server.receive(client.outgoing())
            received += plaintext
            client.feed(reply)  # the tickets
            return received
    raise AssertionError("the handshake did not complete in 10 rounds")


def test_the_flawed_reference_client_keeps_a_ticket_and_resumes_with_early_data(tmp_path):
    from conformance.reference_client.tls import TlsFailure
    from conformance.reference_client.zero_rtt import EarlyDataTlsSession
    ca = trustme.CA()
    cert = ca.issue_cert("iut.test")
    chain, key, ca_file = tmp_path / "chain.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.private_key_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    ca.cert_pem.write_to_path(str(ca_file))
    server = early_data.ServerContext(str(chain), str(key))
    tickets = tmp_path / "tickets" / "alice"

    first = EarlyDataTlsSession(str(ca_file), "iut.test", tickets, b"<presence/>")
    assert not first.sent_early_data  # no ticket yet: a full handshake, the certificate checked
    _pump(first, server.connection())
    assert first.established and first.version == "TLSv1.3" and tickets.exists()

    second = EarlyDataTlsSession(str(ca_file), "iut.test", tickets, b"<presence/>")
    assert second.sent_early_data and not tickets.exists()  # each ticket used once
    connection = server.connection()
    assert _pump(second, connection).startswith(b"<presence/>") and bytes(connection.early_data) == b"<presence/>"

    other = trustme.CA()
    other.cert_pem.write_to_path(str(ca_file))
    stranger = EarlyDataTlsSession(str(ca_file), "iut.test", tmp_path / "none", b"")
    with pytest.raises(TlsFailure) as failed:
        _pump(stranger, server.connection())
    assert failed.value.kind == "certificate"
