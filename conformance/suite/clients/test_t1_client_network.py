"""T1 The network is not trusted, client side: STARTTLS stripping, TLS downgrades and tampered records do not get
past the client."""

import pytest

from conformance.marks import case
from conformance.verdicts import positive_control

LEGACY_TLS = ("tls-1.0-1.1-only", "weak-suites-only")


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
    impostor.presents("genuine")
    control = client.logs_in(via=impostor)
    with positive_control():
        assert control.bound, f"the client does not log in through the relay with a genuine certificate: {control}"
    impostor.presents("genuine", tls=offer)
    run = client.logs_in(via=impostor)
    assert not impostor.saw_client_authenticate(), f"the client completed a {offer} handshake and authenticated"
    assert not run.bound, f"the client bound a session over {offer} TLS: {run}"


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
