"""§2 Inter-domain: "inter-domain communications are intermediated by a DOMAIN SERVER". The IUT takes a remote
domain's traffic only over a server-to-server link that proved that domain, and only for that domain."""

import pytest

from conformance.marks import case
from conformance.verdicts import check, note, positive_control


def _honest_link(alice, remote_server):
    """The harness as the honest remote domain: authenticated by its certificate, its message delivered."""
    link = remote_server.connects()
    with positive_control():
        check(link.authenticated, f"the IUT did not accept the harness as {link.domain} with a valid certificate "
                                  f"({link.login.detail}), so refusals below would prove nothing")
        alice.receives(link.sends_message(to=alice))
    return link


@case("IMPP-2-2")
def test_stanzas_from_an_unauthenticated_peer_are_refused(alice, remote_server):
    _honest_link(alice, remote_server)
    peer = remote_server.connects(authenticates=False)
    forged = peer.sends_message(to=alice)
    request = peer.requests_subscription_to(alice)
    reaction = peer.reaction()
    if reaction.stream_error != "not-authorized":
        note(f"the unauthenticated stream got {reaction}, not the <not-authorized/> stream error of RFC 6120 §4.3.5")
    alice.does_not_receive(forged)
    alice.does_not_receive(request)


CLAIMS = [
    pytest.param("x@other.test", "invalid-from", id="another-domain"),
    pytest.param("alice", "invalid-from", id="the-iut-s-own-domain"),
    pytest.param("", "improper-addressing", id="no-from"),
]


@case("IMPP-2-3")
@pytest.mark.parametrize("claim, condition", CLAIMS)
def test_an_authenticated_peer_speaks_only_for_its_own_domain(alice, bob, remote_server, claim, condition):
    link = _honest_link(alice, remote_server)
    sender, recipient = (alice.bare, bob) if claim == "alice" else (claim, alice)
    forged = link.sends_message(to=recipient, from_=sender)
    reaction = link.reaction()
    if reaction.stream_error != condition:
        note(f"the stream got {reaction}, not the <{condition}/> stream error of RFC 6120 §8.1.2.2 / §8.1.1.1")
    recipient.does_not_receive(forged)


@case("IMPP-2-4")
@pytest.mark.parametrize("certificate", ["self-signed", "rogue-ca", "other-domain", "expired"])
def test_a_certificate_that_does_not_prove_the_domain_is_not_accepted(alice, remote_server, certificate):
    _honest_link(alice, remote_server)
    impostor = remote_server.connects(certificate=certificate)
    check(not impostor.authenticated, f"the IUT accepted a {certificate} certificate as proof of "
                                      f"{impostor.domain} ({impostor.login.detail}); XEP-0178 §3")
    forged = impostor.sends_message(to=alice)
    impostor.reaction()
    alice.does_not_receive(forged)


@case("IMPP-2-1")
def test_a_spoofed_domain_gets_nothing_delivered(alice, remote_server):
    _honest_link(alice, remote_server)
    remote_server.awaits_the_iut()  # spoof.test's authoritative server too, for an IUT that asks it about the key
    # The attacker's server has a valid certificate, but for its own domain (evil.test), and claims spoof.test.
    spoofer = remote_server.connects(certificate="other-domain", claiming="spoof.test", authenticates=False)
    answer = spoofer.claims_by_dialback()
    forged = spoofer.sends_message(to=alice, from_="eve@spoof.test")
    request = spoofer.requests_subscription_to(alice, from_="eve@spoof.test")
    note(f"the IUT's answer to the unverifiable dialback claim: {answer}; then {spoofer.reaction()}")
    alice.does_not_receive(forged)
    alice.does_not_receive(request)


@case("IMPP-2-1")
def test_a_dialback_key_counts_only_when_the_domain_confirms_it(alice, remote_server):
    remote_server.awaits_the_iut()  # remote.test's authoritative server: it confirms the keys its own streams sent
    honest = remote_server.connects(authenticates="dialback")
    with positive_control():
        check(honest.authenticated, f"the IUT did not accept a dialback key {honest.domain}'s authoritative server "
                                    f"confirms ({honest.login.detail}), so a refusal below would prove nothing")
        alice.receives(honest.sends_message(to=alice))
    # An attacker with a valid certificate for its own domain claims remote.test with a key remote.test never sent.
    liar = remote_server.connects(certificate="other-domain", claiming=honest.domain, authenticates=False)
    answer = liar.claims_by_dialback()
    forged = liar.sends_message(to=alice)
    note(f"the IUT's answer to the dialback key remote.test did not send: {answer}; then {liar.reaction()}")
    alice.does_not_receive(forged)


@case("IMPP-2-5")
@pytest.mark.parametrize("certificate", ["self-signed", "rogue-ca", "other-domain", "expired"])
def test_nothing_goes_to_a_remote_server_that_does_not_prove_its_domain(alice, remote_server, certificate):
    honest = remote_server.awaits_the_iut()
    with positive_control():
        honest.receives(alice.sends_message(to=f"r@{honest.domain}"))
    impostor = remote_server.awaits_the_iut(certificate=certificate)
    secret = alice.sends_message(to=f"r@{impostor.domain}")
    impostor.does_not_receive(secret)
