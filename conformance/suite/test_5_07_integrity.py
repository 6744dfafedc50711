"""§5.7 Integrity of presence information: the service delivers presence to watchers exactly as published."""

from conformance.marks import case


@case("IMPP-5.7-3")
def test_presence_reaches_watchers_uncorrupted(alice, bob):
    alice.approves(bob)
    update = alice.publishes_detailed_presence()
    bob.receives_unaltered(update)
