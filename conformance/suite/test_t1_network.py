"""T1 "The network is not trusted": the service neither takes credentials nor stanzas over an unprotected stream.

Only the cases that need no on-path attacker are here so far; the relay-based ones (stripping, tampering, replay,
forged certificates) come with conformance/attacker/.
"""

import pytest

from conformance.marks import case
from conformance.verdicts import check, positive_control


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
