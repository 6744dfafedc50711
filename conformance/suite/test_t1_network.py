"""T1 "The network is not trusted": the service neither takes credentials nor stanzas over an unprotected stream.

Only the cases that need no on-path attacker are here so far; the relay-based ones (stripping, tampering, replay,
forged certificates) come with conformance/attacker/.
"""

import pytest

from conformance.marks import case
from conformance.verdicts import Unsupported, check, note, positive_control


@case("IMPP-T1-4")
def test_tls_is_mandatory_and_plain_is_not_offered_before_it(unauthenticated):
    offer = unauthenticated.connect(tls=False).offer
    check(offer.starttls_required, f"the IUT's plaintext stream does not make STARTTLS mandatory "
                                   f"(RFC 6120 §5.3.1 <required/>): {offer}")
    check("PLAIN" not in offer.mechanisms, f"the IUT offers SASL PLAIN before TLS (RFC 6120 §13.8.3): {offer}")


@case("IMPP-T1-4")
@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-1"])
def test_no_credentials_are_taken_in_plaintext(alice, unauthenticated, mechanism):
    stream = unauthenticated.connect(tls=False)
    attempt = stream.guesses_password_of(alice, mechanism=mechanism)
    check(not attempt.answered and attempt.stanza_error != "not-authorized",
          f"the IUT evaluated {mechanism} credentials sent in clear ({attempt}); it must refuse with "
          f"<encryption-required/> before looking at them (RFC 6120 §6.5.4)")


@case("IMPP-T1-4")
def test_no_stanza_is_taken_in_plaintext(alice, bob, unauthenticated):
    stream = unauthenticated.connect(tls=False)
    forged = stream.sends_message(to=alice, claiming=bob)
    check(not stream.reaction().answered, "the IUT processed a message sent on a plaintext stream")
    genuine = bob.sends_message(to=alice)
    with positive_control():
        alice.receives(genuine)
    alice.does_not_receive(forged)


@case("IMPP-T1-2")
def test_a_client_made_to_believe_there_is_no_channel_binding_is_refused(alice):
    """(a) A MITM stripped -PLUS from alice's mechanism list, so she sends GS2 flag 'y' ("I could bind, but you
    cannot"); a service that does offer -PLUS must fail her (RFC 5802 §6). (b), XEP-0474 downgrade protection, is not
    exercised yet; (c) is a client-side case."""
    with positive_control():
        bound = alice.logs_in_with_channel_binding()
        check(not bound.refused, f"alice's login bound to her own TLS channel was refused: {bound.detail}")
    downgraded = alice.logs_in_claiming_no_channel_binding()
    check(downgraded.refused, f"the IUT offers SCRAM-*-PLUS yet accepted a login whose GS2 flag says the client saw "
                              f"no channel binding ({downgraded.detail}): a MITM that strips -PLUS from the offer "
                              f"goes unnoticed (RFC 5802 §6: the server MUST fail it)")
    note(f"downgrade attempt: {downgraded.detail}; step (b), XEP-0474 downgrade protection, is not exercised")


# IMPP-T1-6: each downgrade is offered right where TLS starts (after <proceed/>, or at once for direct TLS), after the
# same offer without the downgrade was taken on the same path: a refusal then is the IUT's, not a broken probe's.
DOWNGRADES = [
    pytest.param(dict(max_version="TLSv1.1"), "protocol_version",
                 "TLS 1.0 and 1.1 must not be negotiated (RFC 8996 §5)", id="tls-1.1-at-most"),
    pytest.param(dict(ciphers="weak"), "handshake_failure",
                 "NULL, RC4, EXPORT and anonymous suites must not be negotiated (BCP 195, RFC 9325 §4.1; RFC 7465)",
                 id="null-rc4-export-anonymous-suites"),
    pytest.param(dict(fallback_scsv=True), "inappropriate_fallback",
                 "a server supporting a higher version must refuse a hello with TLS_FALLBACK_SCSV (RFC 7507 §3)",
                 id="fallback-scsv"),
    pytest.param(dict(compression="deflate"), None,
                 "TLS compression must not be used (BCP 195, RFC 9325 §3.3; RFC 7590 for XMPP)", id="deflate"),
]


@case("IMPP-T1-6")
@pytest.mark.parametrize("downgrade, alert, rule", DOWNGRADES)
def test_tls_downgrades_are_refused(unauthenticated, downgrade, alert, rule):
    with positive_control():
        modern = unauthenticated.offers_tls(max_version="TLSv1.2")
        check(modern.completed, f"the IUT did not take a modern TLS 1.2 offer on the same path: {modern}")
    if downgrade.get("fallback_scsv"):
        best = unauthenticated.offers_tls(max_version="TLSv1.3")
        if best.version != "TLSv1.3":
            raise Unsupported(f"the IUT does not offer TLS 1.3 ({best}), so a TLS 1.2 hello with TLS_FALLBACK_SCSV "
                              f"is no downgrade for it")
    attempt = unauthenticated.offers_tls(**downgrade)
    if downgrade.get("compression") == "deflate":
        check(attempt.compression != "deflate", f"the IUT selected deflate compression: {attempt}; {rule}")
        if not attempt.completed:
            note(f"the IUT refused the hello instead of selecting null compression: {attempt}")
        return
    check(not attempt.completed, f"the IUT took a downgraded TLS offer: {attempt}; {rule}")
    if attempt.alert != alert:
        note(f"refused, but with {attempt.answer} rather than the {alert} alert")
