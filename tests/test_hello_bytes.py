"""The hello walk (transport/hello_bytes.py), the attacker's reading of a terminated handshake
(attacker/handshake_seen.py) and the reference client's ServerHello check, against OpenSSL's own hellos in memory."""

import ssl

import pytest
import trustme
from hypothesis import given, strategies as st

from conformance.attacker import handshake_seen
from conformance.reference_client.flaws import NO_FLAWS, switched_on
from conformance.reference_client.tls import ServerHelloCheck, TlsFailure
from conformance.transport import hello_bytes as hb
from conformance.transport.tls_hello import VERSIONS, Hello

CA = trustme.CA()
CERT = CA.issue_cert("iut.test")


def _pair(server_max=None, server_options=0):
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    CERT.configure_cert(server)
    if server_max:
        server.maximum_version = server_max
    server.options |= server_options
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    CA.configure_trust(client)
    bios = [ssl.MemoryBIO() for _ in range(4)]
    return (server.wrap_bio(bios[0], bios[1], server_side=True), bios[0], bios[1],
            client.wrap_bio(bios[2], bios[3], server_hostname="iut.test"), bios[2], bios[3])


def _step(tls):
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass


def test_a_downgraded_openssl_handshake_is_seen_and_refused_with_illegal_parameter():
    server, s_in, s_out, client, c_in, c_out = _pair()
    _step(client)
    hello = c_out.read()
    rewritten, offered = hb.without_tls13(hello)
    assert offered and len(rewritten) == len(hello)
    assert hb.TLS13 not in hb.offered_versions(rewritten, hb.walk(rewritten))
    s_in.write(rewritten)
    _step(server)
    answer = s_out.read()
    assert hb.downgrade_sentinel(hb.walk(answer)) == "TLS 1.2"  # OpenSSL follows RFC 8446 §4.1.3
    c_in.write(answer)
    with pytest.raises(ssl.SSLError, match="INAPPROPRIATE_FALLBACK"):
        client.do_handshake()
    seen = handshake_seen.read(hello + c_out.read(), answer)
    assert seen.offered_tls13 and seen.chosen == hb.TLS12 and seen.sentinel == "TLS 1.2"
    assert not seen.continued and seen.alert == "illegal_parameter"
    assert "illegal_parameter" in str(seen)


def test_a_client_shown_no_sentinel_goes_on_and_the_reading_says_so():
    server, s_in, s_out, client, c_in, c_out = _pair()
    _step(client)
    hello = c_out.read()
    s_in.write(hb.without_tls13(hello)[0])
    _step(server)
    answer = s_out.read()
    hidden = hb.hide_downgrade_sentinel(answer)
    assert len(hidden) == len(answer) and hb.downgrade_sentinel(hb.walk(hidden)) is None
    c_in.write(hidden)
    with pytest.raises(ssl.SSLError):  # the ServerKeyExchange was signed over the other random
        client.do_handshake()
    seen = handshake_seen.read(hello + c_out.read(), answer)
    assert seen.alert != "illegal_parameter"


@given(st.sampled_from([(VERSIONS["TLSv1.3"], VERSIONS["TLSv1.2"]), (VERSIONS["TLSv1.3"], VERSIONS["TLSv1.3"]),
                        (VERSIONS["TLSv1.2"], VERSIONS["TLSv1"])]), st.booleans())
def test_taking_tls13_out_changes_only_the_version_bytes(versions, named):
    top, bottom = versions
    record = Hello(max_version=top, min_version=bottom, server_name="iut.test" if named else None).to_bytes()
    rewritten, offered = hb.without_tls13(record)
    assert offered == (top == VERSIONS["TLSv1.3"])
    assert len(rewritten) == len(record)
    changed = [i for i in range(len(record)) if record[i] != rewritten[i]]
    assert len(changed) == (2 if offered else 0)
    before, after = hb.walk(record), hb.walk(rewritten)
    assert before.extensions == after.extensions and before.random == after.random
    assert hb.offered_versions(rewritten, after) == tuple(hb.GREASE_VERSION if v == hb.TLS13 else v
                                                          for v in hb.offered_versions(record, before))


@pytest.mark.parametrize("data", [b"", b"\x16\x03\x01", b"\x15\x03\x03\x00\x02\x02\x28",
                                  b"\x16\x03\x01\x00\x04\x0e\x00\x00\x00",  # a ServerHelloDone
                                  b"\x16\x03\x01\x00\x06\x01\x00\x00\x40\x03\x03"])  # a hello cut short
def test_what_is_not_a_whole_hello_is_said_so(data):
    with pytest.raises(hb.NotAHello):
        hb.walk(data)


def _server_hello(server_max, server_options=0):
    server, s_in, s_out, client, c_in, c_out = _pair(server_max, server_options)
    _step(client)
    s_in.write(c_out.read())
    _step(server)
    return s_out.read()


def test_the_reference_client_refuses_tls12_without_the_extended_master_secret_unless_flawed():
    without = _server_hello(ssl.TLSVersion.TLSv1_2, server_options=1)  # OpenSSL 3's SSL_OP_NO_EXTENDED_MASTER_SECRET
    with_ems = _server_hello(ssl.TLSVersion.TLSv1_2)
    assert hb.EXTENDED_MASTER_SECRET not in hb.walk(without).extensions
    with pytest.raises(TlsFailure, match="extended master secret"):
        ServerHelloCheck(NO_FLAWS).feed(without)
    assert ServerHelloCheck(switched_on(["client-tls12-without-ems"])).feed(without) == without
    check = ServerHelloCheck(NO_FLAWS)
    assert check.feed(with_ems[:7]) == b"" and check.feed(with_ems[7:]) == with_ems  # held until the record is whole
    tls13 = _server_hello(None)
    assert ServerHelloCheck(NO_FLAWS).feed(tls13) == tls13
