"""T1 The network is not trusted, client side: STARTTLS stripping, TLS downgrades and tampered records do not get
past the client."""

import pytest

from conformance.marks import case
from conformance.verdicts import NotApplicable, SetupFailed, note, positive_control

LEGACY_TLS = ("tls-1.0-1.1-only", "weak-suites-only")


def logs_in_through_the_relay(client, impostor) -> None:
    """The positive control of each downgrade: with a genuine certificate and nothing downgraded, the client does log
    in through the attacker."""
    impostor.presents("genuine")
    control = client.logs_in(via=impostor)
    with positive_control():
        assert control.bound, f"the client does not log in through the relay with a genuine certificate: {control}"


@case("IMPP-T1-3")
def test_client_is_not_deterred_by_a_stripped_starttls_offer(client, impostor):
    control = client.logs_in(via=impostor)
    with positive_control():
        assert control.bound, f"the client does not log in through the relay when nothing interferes: {control}"
    impostor.strips_starttls()
    run = client.logs_in(via=impostor)
    leaked = impostor.client_cleartext_findings(secrets=(client.password,))
    assert not leaked, f"with STARTTLS stripped from the features, the client sent in clear: {leaked[0]}"
    if run.bound:  # it asked for TLS anyway and got it: what RFC 7590 §3.1 requires
        assert impostor.saw_client_ask_for_tls(), "the client bound a session without TLS"


@case("IMPP-T1-5")
@pytest.mark.parametrize("offer", LEGACY_TLS)
def test_client_refuses_a_downgraded_tls_handshake(client, impostor, offer):
    logs_in_through_the_relay(client, impostor)
    impostor.presents("genuine", tls=offer)
    run = client.logs_in(via=impostor)
    assert not impostor.saw_client_authenticate(), f"the client completed a {offer} handshake and authenticated"
    assert not run.bound, f"the client bound a session over {offer} TLS: {run}"
    note(str(impostor.saw_client_handshake()))


@case("IMPP-T1-5")
def test_client_detects_the_tls13_downgrade_sentinel(client, impostor):
    logs_in_through_the_relay(client, impostor)
    impostor.presents("genuine", tls="tls-1.3-taken-out")
    run = client.logs_in(via=impostor)
    seen = impostor.saw_client_handshake()
    if not seen.offered_tls13:
        raise NotApplicable(f"the client does not offer TLS 1.3: there is no downgrade from it to detect ({seen})")
    if seen.chosen is not None and not seen.sentinel:
        raise SetupFailed(f"the attacker's TLS 1.2 ServerHello went out without the downgrade sentinel ({seen})")
    assert not seen.continued, f"the client went on with a handshake downgraded from TLS 1.3: {seen}"
    assert not run.bound, f"the client bound a session over a handshake downgraded from TLS 1.3: {run}"
    if seen.chosen is None:
        note(f"the client offers TLS 1.3 alone: nothing to downgrade to ({seen})")
    else:
        how = "closed without an alert" if seen.alert is None else f"sent {seen.alert}"
        assert seen.alert == "illegal_parameter", f"the client did not abort with illegal_parameter ({how}): {seen}"
        note(str(seen))


@case("IMPP-T1-5", step="iv")
def test_client_refuses_tls12_without_extended_master_secret(client, impostor):
    logs_in_through_the_relay(client, impostor)
    impostor.presents("genuine", tls="tls-1.2-without-ems")
    run = client.logs_in(via=impostor)
    seen = impostor.saw_client_handshake()
    if seen.chosen is not None and seen.extended_master_secret:
        raise SetupFailed(f"the attacker's TLS 1.2 ServerHello carried the extended master secret ({seen})")
    note("the ServerHello keeps renegotiation_info (RFC 5746): the attacker's OpenSSL always answers it")
    assert not impostor.saw_client_authenticate() and not run.bound, \
        f"the client logged in over TLS 1.2 without the extended master secret (RFC 7627): {seen}"
    note(str(seen))


@case("IMPP-T1-8")
def test_client_drops_a_connection_whose_records_were_tampered_with(client, contact, impostor):
    running = client.starts("receive", via=impostor)
    jid = running.bound_or_setup_failed()
    control = contact.sends_message(jid)
    with positive_control():
        assert running.shows(control.canary), "the client did not show its contact's message (control)"
    impostor.flips_a_bit_towards_client()
    tampered = contact.sends_message(jid)
    impostor.tampered()
    closed = impostor.sees_client_close()
    run = running.ends()
    assert not run.shown(tampered.canary), "the client showed a message from a tampered TLS record"
    assert closed is not None, "the client kept the connection open after a tampered TLS record"
