"""§5.8 No replay of presence information: what an eavesdropper recorded cannot be used again."""

from conformance.marks import case
from conformance.verdicts import check


@case("IMPP-5.8-2")
def test_a_recorded_login_cannot_be_replayed(alice):
    replay = alice.replays_own_login()
    check(replay.refused, f"the IUT accepted alice's recorded SCRAM exchange a second time ({replay.detail}): "
                          f"its server nonce is not fresh (RFC 5802 §5)")


@case("IMPP-5.8-2")
def test_no_reusable_password_is_invited_next_to_scram(unauthenticated):
    offer = unauthenticated.connect().offer
    check(not ("PLAIN" in offer.mechanisms and any(m.startswith("SCRAM") for m in offer.mechanisms)),
          f"the IUT offers PLAIN next to SCRAM ({', '.join(offer.mechanisms)}): a client that picks it sends a "
          f"password anyone who obtains it can replay (RFC 6120 §13.8.3)")
