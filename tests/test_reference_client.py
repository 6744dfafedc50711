"""The reference client (conformance/reference_client/) as a shim: it logs in to the reference service and carries
out its actions through the shim runner, refuses an impostor's certificate (and its flaw 'client-any-certificate'
does not), asks for STARTTLS when none is offered, and its pure decisions (mechanism, receipts, roster pushes,
carbons, duplicates) hold. Every flaw end to end is the kill matrix's job, not this file's."""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
from pathlib import Path

import pytest
import scramp

from conformance import pki
from conformance.reference_client import auth, policy
from conformance.reference_client.flaws import FLAWS, UnknownFlaw, check, switched_on
from conformance.reference_client.login import _tls_broke
from conformance.reference_client.request import UsageError, parse
from conformance.reference_client.tls import TlsFailure
from conformance.shim import runner
from conformance.shim.contract import ACTIONS, FEATURES

CLIENT = [sys.executable, "-m", "conformance.reference_client"]
DOMAIN = "iut.test"
RUN_SECONDS = 20.0


def flawed(*names: str):
    return switched_on(names)


CLEAN = flawed()


# -- the reference service and the requests -------------------------------------------------------------------------



def request_for(profile, account: str = "alice", **fields) -> dict:
    target = profile.target
    user = profile.account(account)
    request = {"host": target.host, "port": target.port, "tls": "starttls", "domain": target.domain,
               "ca_file": str(target.ca_file), "jid": f"{user.username}@{target.domain}", "password": user.password,
               "resource": f"test-{account}", "to": "", "body": "", "status": "", "linger": 10, "receipt": False}
    request.update(fields)
    return request


def run(action: str, request: dict, *flaws: str) -> runner.ShimRun:
    command = CLIENT + [arg for flaw in flaws for arg in ("--flaw", flaw)]
    return asyncio.run(runner.run(command, action, request, timeout=RUN_SECONDS))


def names(result: runner.ShimRun) -> list[str]:
    return [e["event"] for e in result.events]


# -- the command line ----------------------------------------------------------------------------------------------

def test_capabilities_lists_every_action_and_every_feature():
    result = run("capabilities", {})
    assert result.done, result
    assert result.events == [{"event": "capabilities", "actions": list(ACTIONS), "features": list(FEATURES)}]


def test_an_unknown_flaw_is_a_usage_error_in_one_line():
    result = run("login", {}, "client-no-such-flaw")
    assert result.exit_code == 2 and not result.events
    assert len(result.stderr.strip().splitlines()) == 1 and "client-no-such-flaw" in result.stderr


@pytest.mark.parametrize("request_line", [{"port": "x"}, {"host": "127.0.0.1", "port": 5222}])
def test_a_request_it_cannot_use_is_a_usage_error_in_one_line(request_line):
    result = run("login", request_line)
    assert result.exit_code == 2 and not result.events
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_request_parsing_checks_fields(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_bytes(pki.make_ca().cert_pem.bytes())
    (tmp_path / "junk.pem").write_text("not a certificate")
    good = {"host": "127.0.0.1", "port": 5222, "tls": "starttls", "domain": "IUT.test", "ca_file": str(ca),
            "jid": "alice@iut.test", "password": "pw", "resource": "r", "to": "bob@iut.test", "body": "b",
            "status": "", "linger": 3, "receipt": True}
    parsed = parse(json.dumps(good).encode(), "send-message")
    assert (parsed.domain, parsed.username, parsed.linger, parsed.receipt) == ("iut.test", "alice", 3.0, True)
    for bad in ({"tls": "none"}, {"jid": "alice@iut.test/r"}, {"ca_file": str(tmp_path / "nope")},
                {"ca_file": str(tmp_path / "junk.pem")}, {"linger": -1},
                {"receipt": "yes"}, {"to": ""}, {"port": True}):
        with pytest.raises(UsageError):
            parse(json.dumps({**good, **bad}).encode(), "send-message")


# -- against the reference service --------------------------------------------------------------------------------

@pytest.mark.parametrize("tls", ["starttls", "direct"])
def test_login_secures_authenticates_with_scram_and_binds(reference_service, tls):
    target = reference_service.target
    port = target.port if tls == "starttls" else int(target.listeners[0].rsplit(":", 1)[1])
    result = run("login", request_for(reference_service, tls=tls, port=port))
    assert result.done, f"{result}: {result.events} {result.stderr}"
    assert names(result) == ["connected", "secured", "authenticated", "bound", "sent", "closed"]
    secured, authenticated, bound = result.of("secured")[0], result.of("authenticated")[0], result.of("bound")[0]
    assert secured["version"] in ("TLSv1.2", "TLSv1.3") and secured["cipher"]
    assert authenticated["mechanism"] == "SCRAM-SHA-256"
    assert bound["jid"] == "alice@iut.test/test-alice"
    assert result.of("closed") == [{"event": "closed", "by": "client"}]


def test_a_wrong_password_is_refused_with_exit_1(reference_service):
    result = run("login", request_for(reference_service, password="not-the-password"))
    assert result.refused, result
    assert "not-authorized" in result.of("failed")[0]["reason"] and not result.of("bound")


def test_send_message_reaches_another_account_and_set_presence_carries_its_status(reference_service):
    async def scenario():
        inbox = await runner.start(CLIENT, "receive", request_for(reference_service, "bob"))
        try:
            assert await inbox.wait_for(lambda e: e.get("event") == "bound", 10), inbox.events
            sender = await runner.run(CLIENT, "send-message", request_for(
                reference_service, to=f"bob@{DOMAIN}", body="hello <bob> & co", receipt=True), timeout=RUN_SECONDS)
            shown = await inbox.wait_for(lambda e: e.get("kind") == "message", 10)
        finally:
            received = await inbox.finish(10)
        return sender, shown, received
    sender, shown, received = asyncio.run(scenario())
    assert sender.done, f"{sender}: {sender.events} {sender.stderr}"
    sent = sender.of("sent")
    assert [e["kind"] for e in sent] == ["presence", "message"] and sent[1]["id"]
    assert shown is not None, received.events
    assert (shown["from"], shown["body"], shown["id"]) == (f"alice@{DOMAIN}/test-alice", "hello <bob> & co",
                                                           sent[1]["id"])
    assert shown.get("stanza_id"), "the reference service stamps a XEP-0359 stanza-id by the inbox's own JID"
    assert received.done and received.of("closed") == [{"event": "closed", "by": "client"}]

    presence = run("set-presence", request_for(reference_service, status="out to lunch"))
    assert presence.done and presence.of("sent")[0] == {"event": "sent", "kind": "presence", "status": "out to lunch"}


# -- against an impostor -------------------------------------------------------------------------------------------

class FakeService:
    """A minimal service on loopback that answers what a client says with canned features and records what the
    client sent (in clear, or inside the TLS it terminates with a certificate of its own)."""

    def __init__(self, *, certificate: tuple[Path, Path] | None = None, offer_starttls: bool = True):
        self.context = None
        if certificate is not None:
            self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.context.load_cert_chain(*certificate)
        self.offer_starttls = offer_starttls
        self.received = bytearray()
        self.server: asyncio.AbstractServer | None = None

    async def __aenter__(self) -> "FakeService":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context)
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        await self.server.wait_closed()

    @property
    def port(self) -> int:
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        header = (f"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                  f"xmlns:stream='http://etherx.jabber.org/streams' from='{DOMAIN}' id='x' version='1.0'>").encode()
        starttls = b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>" if self.offer_starttls else b""
        features = (b"<stream:features>" + starttls +
                    b"<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism>"
                    b"</mechanisms></stream:features>")
        try:
            while data := await asyncio.wait_for(reader.read(65536), 10):
                self.received += data
                if b"<stream:stream" in data:
                    writer.write(header + features)
                if b"<starttls" in data:  # refused: what a MITM that strips TLS does
                    writer.write(b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:stream>")
                if b"<auth" in data:
                    writer.write(b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>")
                await writer.drain()
        except (OSError, ssl.SSLError, asyncio.TimeoutError):
            pass
        finally:
            writer.close()


def impostor_run(tmp_path: Path, *flaws: str, **fake) -> tuple[runner.ShimRun, bytes]:
    cert_pem, key_pem = pki.self_signed(DOMAIN)
    cert, key = tmp_path / "self-signed.crt", tmp_path / "self-signed.key"
    cert.write_bytes(cert_pem)
    key.write_bytes(key_pem)
    ca_pem = pki.make_ca("the genuine CA").cert_pem.bytes()  # what the client trusts: not the impostor's
    (tmp_path / "ca.pem").write_bytes(ca_pem)
    direct = fake.pop("direct", True)

    async def scenario():
        async with FakeService(certificate=(cert, key) if direct else None, **fake) as impostor:
            request = {"host": "127.0.0.1", "port": impostor.port, "tls": "direct" if direct else "starttls",
                       "domain": DOMAIN, "ca_file": str(tmp_path / "ca.pem"), "jid": f"alice@{DOMAIN}",
                       "password": "secret-password", "resource": "r", "to": "", "body": "", "status": "",
                       "linger": 5, "receipt": False}
            result = await runner.run(CLIENT + [a for f in flaws for a in ("--flaw", f)], "login", request,
                                      timeout=RUN_SECONDS)
            return result, bytes(impostor.received)
    return asyncio.run(scenario())


def test_a_self_signed_certificate_is_refused_before_anything_is_sent(tmp_path):
    result, received = impostor_run(tmp_path)
    assert result.refused, f"{result}: {result.events} {result.stderr}"
    assert names(result) == ["connected", "failed", "closed"]
    assert "certificate verify failed" in result.of("failed")[0]["reason"]
    assert b"<auth" not in received and b"<stream:stream" not in received


def test_flaw_any_certificate_goes_on_to_authenticate_to_the_impostor(tmp_path):
    result, received = impostor_run(tmp_path, "client-any-certificate")
    assert result.of("secured"), f"{result}: {result.events} {result.stderr}"
    assert b"<auth" in received and b"mechanism='PLAIN'" in received  # the password, to any certificate at all
    assert result.refused and "not-authorized" in result.of("failed")[0]["reason"]


def test_starttls_is_asked_for_even_when_not_offered_and_a_refusal_ends_the_run(tmp_path):
    result, received = impostor_run(tmp_path, direct=False, offer_starttls=False)
    assert result.refused, f"{result}: {result.events} {result.stderr}"
    assert b"<starttls" in received and b"<auth" not in received
    assert "STARTTLS" in result.of("failed")[0]["reason"]


def test_flaw_starttls_optional_logs_in_in_clear_when_not_offered(tmp_path):
    result, received = impostor_run(tmp_path, "client-starttls-optional", direct=False, offer_starttls=False)
    assert b"<starttls" not in received and b"mechanism='PLAIN'" in received
    assert result.refused and not result.of("secured")


# -- the decisions, as pure functions ------------------------------------------------------------------------------

def test_flaw_registry_names_the_cases_each_flaw_breaks():
    assert len(FLAWS) == 19 and all(name.startswith("client-") and flaw.breaks for name, flaw in FLAWS.items())
    assert check(["client-legacy-tls"]) == {"client-legacy-tls"}
    with pytest.raises(UnknownFlaw):
        check(["legacy-tls"])
    with pytest.raises(KeyError):
        CLEAN("client-typo")  # a flaw check on a name outside the registry is a bug, not a silent False


@pytest.mark.parametrize("offered, plain_allowed, expected", [
    (["SCRAM-SHA-1", "SCRAM-SHA-256", "PLAIN"], True, "SCRAM-SHA-256"),
    (["PLAIN", "SCRAM-SHA-1"], True, "SCRAM-SHA-1"),
    (["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"], True, "SCRAM-SHA-1"),
    (["PLAIN", "ANONYMOUS"], True, "PLAIN"),
    (["PLAIN"], False, None),
    (["DIGEST-MD5", "ANONYMOUS"], True, None),
    ([], True, None),
])
def test_mechanism_choice(offered, plain_allowed, expected):
    assert auth.choose_mechanism(offered, plain_allowed=plain_allowed) == expected


def test_flaw_plain_preferred_takes_plain_next_to_scram():
    assert auth.choose_mechanism(["SCRAM-SHA-256", "PLAIN"], plain_allowed=True,
                                 flawed=flawed("client-plain-preferred")) == "PLAIN"


def _scram_exchange(password: str = "pw") -> tuple[scramp.ScramClient, str]:
    mechanism = scramp.ScramMechanism("SCRAM-SHA-256")
    salt, stored, server_key, iterations = mechanism.make_auth_info("pw")
    server = mechanism.make_server(lambda _: (salt, stored, server_key, iterations))
    client = scramp.ScramClient(["SCRAM-SHA-256"], "alice", password)
    server.set_client_first(client.get_client_first())
    client.set_server_first(server.get_server_first())
    server.set_client_final(client.get_client_final())
    return client, server.get_server_final()


def test_the_scram_server_signature_is_verified_unless_flawed():
    client, server_final = _scram_exchange()
    auth._verify(client, server_final.encode(), CLEAN)
    client, server_final = _scram_exchange()
    forged = server_final[:-4] + ("AAA=" if not server_final.endswith("AAA=") else "BBB=")
    with pytest.raises(auth.AuthFailed, match="ServerSignature"):
        auth._verify(client, forged.encode(), CLEAN)
    with pytest.raises(auth.AuthFailed, match="did not send"):
        auth._verify(client, b"", CLEAN)
    auth._verify(client, forged.encode(), flawed("client-server-signature-ignored"))


def test_receipts_count_only_from_the_addressee_of_a_message_sent():
    sent = {"m1": "bob@iut.test"}
    assert policy.receipt_accepted("bob@iut.test/phone", "m1", sent)
    assert policy.receipt_accepted("Bob@IUT.test/x", "m1", sent)  # canonical comparison
    assert not policy.receipt_accepted("mallory@iut.test/x", "m1", sent)
    assert not policy.receipt_accepted("bob@iut.test/phone", "m2", sent)
    assert not policy.receipt_accepted(None, "m1", sent)
    assert policy.receipt_accepted("mallory@iut.test/x", "m1", sent, flawed=flawed("client-receipts-from-anyone"))


def test_errors_count_only_from_the_addressee_or_its_domain():
    sent = {"m1": "bob@iut.test"}
    assert policy.error_accepted("bob@iut.test/phone", "m1", sent)
    assert policy.error_accepted("iut.test", "m1", sent)  # the addressee's server answers for it
    assert policy.error_accepted("BOB@iut.test", "m1", sent)
    assert not policy.error_accepted("mallory@iut.test/x", "m1", sent)
    assert not policy.error_accepted("evil.test", "m1", sent)
    assert not policy.error_accepted("bob@iut.test", "m2", sent)
    assert not policy.error_accepted(None, "m1", sent)
    assert policy.error_accepted("mallory@iut.test/x", "m1", sent, flawed=flawed("client-errors-from-anyone"))


def test_archive_results_count_only_from_the_own_archive_for_an_open_query():
    own, open_queries = "alice@iut.test", {"q1"}
    assert policy.archive_result_accepted(None, "q1", open_queries, own)
    assert policy.archive_result_accepted("alice@iut.test", "q1", open_queries, own)
    assert not policy.archive_result_accepted("alice@iut.test", "q2", open_queries, own)  # no such query open
    assert not policy.archive_result_accepted("mallory@iut.test/x", "q1", open_queries, own)
    assert not policy.archive_result_accepted("alice@iut.test/phone", "q1", open_queries, own)
    assert not policy.archive_result_accepted("iut.test", "q1", open_queries, own)
    assert policy.archive_result_accepted("mallory@iut.test/x", "q1", open_queries, own,
                                          flawed=flawed("client-archive-results-from-anyone"))


def test_roster_pushes_count_only_from_the_own_account():
    own = "alice@iut.test"
    assert policy.roster_push_accepted(None, own)
    assert policy.roster_push_accepted("alice@iut.test", own)
    assert policy.roster_push_accepted("ALICE@iut.test", own)
    assert not policy.roster_push_accepted("alice@iut.test/other", own)
    assert not policy.roster_push_accepted("mallory@iut.test/x", own)
    assert not policy.roster_push_accepted("iut.test", own)
    assert policy.roster_push_accepted("mallory@iut.test/x", own, flawed=flawed("client-roster-pushes-from-anyone"))


def test_carbons_count_only_from_the_own_bare_jid():
    own = "alice@iut.test"
    assert policy.carbon_accepted("alice@iut.test", own)
    assert not policy.carbon_accepted(None, own)
    assert not policy.carbon_accepted("alice@iut.test/other", own)
    assert not policy.carbon_accepted("mallory@iut.test/x", own)
    assert policy.carbon_accepted("mallory@iut.test/x", own, flawed=flawed("client-carbons-from-anyone"))


def test_receipts_go_only_to_contacts_allowed_to_see_presence():
    roster = {"bob@iut.test": "both", "carol@iut.test": "from", "dave@iut.test": "to", "erin@iut.test": "none"}
    assert policy.receipt_answer_allowed("bob@iut.test/x", roster)
    assert policy.receipt_answer_allowed("carol@iut.test/x", roster)
    assert not policy.receipt_answer_allowed("dave@iut.test/x", roster)
    assert not policy.receipt_answer_allowed("erin@iut.test/x", roster)
    assert not policy.receipt_answer_allowed("mallory@iut.test/x", roster)
    assert policy.receipt_answer_allowed("mallory@iut.test/x", roster, flawed=flawed("client-receipts-to-strangers"))


def test_a_stanza_id_is_shown_once_unless_flawed():
    shown = policy.Shown()
    assert shown.first_time("s1") and not shown.first_time("s1") and shown.first_time("s2")
    assert shown.first_time(None) and shown.first_time(None)
    assert shown.first_time("s1", flawed=flawed("client-duplicates-shown"))


@pytest.mark.parametrize("failure, retried", [
    (TlsFailure("reset", "broken"), True),
    (TlsFailure("alert", "alert", "internal_error"), True),
    (TlsFailure("alert", "alert", "protocol_version"), False),  # the server's answer to our offer (T1-5)
    (TlsFailure("alert", "alert", "handshake_failure"), False),
    (TlsFailure("certificate verify failed", "certificate"), False),  # our own check (5.2-4)
    (TlsFailure("wrong version number", "local"), False),
])
def test_what_the_plaintext_fallback_flaw_takes_for_broken_tls(failure, retried):
    assert _tls_broke(failure) is retried
