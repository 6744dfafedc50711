"""§5.14 Confidentiality of instant messages: the service delivers to the inbox only once it is authenticated."""

from conformance.marks import case
from conformance.verdicts import positive_control


@case("IMPP-5.14-1")
def test_stored_messages_wait_for_the_authenticated_inbox(alice, bob, unauthenticated):
    alice.goes_offline()
    stored = bob.sends_message(to=alice)
    impostor = unauthenticated.connect(announcing=alice)  # claims to be alice in its stream header, never proves it
    alice.comes_online()
    impostor.does_not_receive(stored)
    with positive_control():
        alice.receives(stored)  # the stored message was there to be had, and goes to the authenticated inbox
