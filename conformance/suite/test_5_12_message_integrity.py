"""§5.12 Integrity of instant message: the service delivers messages to the inbox exactly as sent."""

from conformance.marks import case


@case("IMPP-5.12-1")
def test_messages_reach_the_inbox_unmodified(alice, bob):
    update = bob.sends_detailed_message(to=alice)
    alice.receives_unaltered(update)
