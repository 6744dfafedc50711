"""The TLS hello probe (IMPP-T1-6) says truthfully what a TLS server did with an offer: checked against OpenSSL servers
in memory, set like the reference service clean and under its flaw `legacy-tls-accepted`, and against hand-made
answers for what OpenSSL servers here cannot be made to do (select deflate, ignore TLS_FALLBACK_SCSV)."""

from __future__ import annotations

import ssl
import warnings

import pytest
from scapy.layers.tls.extensions import TLS_Ext_SupportedVersion_SH
from scapy.layers.tls.handshake import TLSServerHello
from scapy.layers.tls.record import TLS

from conformance import pki
from conformance.transport import tls_hello as th

V = th.VERSIONS
HELLOS = {
    "modern-1.3": th.Hello(max_version=V["TLSv1.3"], min_version=V["TLSv1.2"],
                           ciphers=th.TLS13_SUITES + th.STRONG_SUITES, server_name="iut.test"),
    "modern-1.2": th.Hello(server_name="iut.test"),
    "tls-1.1-at-most": th.Hello(max_version=V["TLSv1.1"], server_name="iut.test"),
    "weak-suites": th.Hello(ciphers=th.WEAK_SUITES, server_name="iut.test"),
    "fallback-scsv": th.Hello(ciphers=th.STRONG_SUITES + (th.FALLBACK_SCSV,), server_name="iut.test"),
    "deflate": th.Hello(compression=(1, 0), server_name="iut.test"),
}
# (hello) -> what a clean server answers, what a server with legacy TLS switched on answers
EXPECTED = {
    "modern-1.3": ("ServerHello TLSv1.3", "ServerHello TLSv1.3"),
    "modern-1.2": ("ServerHello TLSv1.2", "ServerHello TLSv1.2"),
    "tls-1.1-at-most": ("fatal alert protocol_version", "ServerHello TLSv1.1"),
    "weak-suites": ("fatal alert handshake_failure", "ServerHello TLSv1.2 TLS_ECDH_anon"),
    "fallback-scsv": ("fatal alert inappropriate_fallback", "fatal alert inappropriate_fallback"),
    "deflate": ("ServerHello TLSv1.2", "ServerHello TLSv1.2"),
}


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return pki.write_server_certs(tmp_path_factory.mktemp("certs"), "iut.test")


def _server_answer(certs, hello: th.Hello, *, legacy: bool, chunk: int) -> th.Answer | None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if legacy:  # what the reference's flaw legacy-tls-accepted does
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.TLSv1
        context.set_ciphers("ALL:aNULL:eNULL:@SECLEVEL=0")
    context.load_cert_chain(certs.cert, certs.key)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = context.wrap_bio(incoming, outgoing, server_side=True)
    incoming.write(hello.to_bytes())
    try:
        server.do_handshake()
    except ssl.SSLWantReadError:
        pass
    except ssl.SSLError:
        pass  # the alert is in `outgoing`
    flight = outgoing.read()
    reader = th.AnswerReader()
    for start in range(0, len(flight), chunk):  # small chunks: records and messages arrive in pieces
        answer = reader.feed(flight[start:start + chunk])
        if answer is not None:
            return answer
    return None


@pytest.mark.parametrize("legacy", [False, True], ids=["clean", "legacy-tls"])
@pytest.mark.parametrize("name", list(HELLOS))
def test_the_probe_reports_what_an_openssl_server_answers(certs, name, legacy):
    hello = HELLOS[name]
    answer = _server_answer(certs, hello, legacy=legacy, chunk=7 if name == "modern-1.3" else 4096)
    expected = EXPECTED[name][legacy]
    assert str(answer).startswith(expected), f"{hello}: {answer}"
    assert hello.accepted_by(answer) == expected.startswith("ServerHello")
    if isinstance(answer, th.ServerHello):
        assert answer.compression == 0 and not answer.retry


def _server_hello_record(version: int, cipher: int, compression: int, *, tls13: bool = False) -> bytes:
    extensions = [TLS_Ext_SupportedVersion_SH(version=V["TLSv1.3"])] if tls13 else []
    hello = TLSServerHello(version=version, cipher=cipher, comp=[compression], ext=extensions or None)
    return bytes(TLS(type=22, version=V["TLSv1.2"], msg=[hello]))


def test_a_server_selecting_deflate_is_seen():
    answer = th.AnswerReader().feed(_server_hello_record(V["TLSv1.2"], th.STRONG_SUITES[0], 1))
    assert isinstance(answer, th.ServerHello) and answer.compression == 1
    assert HELLOS["deflate"].accepted_by(answer) and not HELLOS["modern-1.2"].accepted_by(answer)


def test_a_server_ignoring_fallback_scsv_is_seen():
    answer = th.AnswerReader().feed(_server_hello_record(V["TLSv1.2"], th.STRONG_SUITES[0], 0))
    assert HELLOS["fallback-scsv"].accepted_by(answer)


def test_supported_versions_not_legacy_version_is_the_version():
    answer = th.AnswerReader().feed(_server_hello_record(V["TLSv1.2"], th.TLS13_SUITES[0], 0, tls13=True))
    assert isinstance(answer, th.ServerHello) and answer.version_name == "TLSv1.3"
    assert HELLOS["modern-1.3"].accepted_by(answer) and not HELLOS["modern-1.2"].accepted_by(answer)


@pytest.mark.parametrize("data, detail", [
    (b"<stream:error><not-authorized/></stream:error>", "starts with"),
    (b"\x17\x03\x03\x00\x05hello", "starts with"),  # application data before any handshake
    (b"\x16\x03\x03\x00\x04\x0b\x00\x00\x00", "handshake message type 11"),  # a Certificate first
    (b"\x15\x03\x03\x00\x01\x02", "alert record of 1 bytes"),
])
def test_anything_else_is_not_taken_for_an_answer(data, detail):
    answer = th.AnswerReader().feed(data)
    assert isinstance(answer, th.NotTls) and detail in str(answer)


def test_an_incomplete_record_waits_for_more():
    reader = th.AnswerReader()
    assert reader.feed(b"\x15\x03") is None
    assert str(reader.feed(b"\x03\x00\x02\x02\x46")) == "fatal alert protocol_version"
