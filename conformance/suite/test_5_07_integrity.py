"""§5.7 Integrity of presence information: no transport carries presence unprotected, and the service delivers
presence to watchers exactly as published."""

from conformance.marks import case
from conformance.verdicts import Unsupported, check, positive_control


@case("IMPP-5.7-1")
def test_no_other_listener_takes_credentials_or_stanzas_in_clear(alice, bob, unauthenticated):
    if not unauthenticated.listeners:
        raise Unsupported("the profile lists no client listener besides the main port (whose plaintext side is "
                          "IMPP-T1-4): declare them in target.listeners")
    genuine = bob.sends_message(to=alice)
    with positive_control():
        alice.receives(genuine)
    for listener in unauthenticated.listeners:
        stream = unauthenticated.connect_at(listener)
        if stream is None:
            continue  # no plaintext XMPP served there: refused, closed or TLS only
        offer = stream.offer
        check(offer.starttls_required and not offer.mechanisms,
              f"{listener} serves a plaintext stream without requiring TLS first: {offer}")
        forged = stream.sends_message(to=alice, claiming=bob)
        check(not stream.reaction().answered, f"{listener} processed a message sent in clear")
        alice.does_not_receive(forged)


@case("IMPP-5.7-3")
def test_presence_reaches_watchers_uncorrupted(alice, bob):
    alice.approves(bob)
    update = alice.publishes_detailed_presence()
    bob.receives_unaltered(update)
