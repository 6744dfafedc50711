"""§5.9 Confidentiality of presence information: presence goes only to watchers the service has authenticated."""

from conformance.marks import case
from conformance.verdicts import positive_control


@case("IMPP-5.9-1")
def test_an_anonymous_session_gets_no_presence_nobody_approved(alice, bob, unauthenticated):
    alice.approves(bob)
    anonymous = unauthenticated.logs_in_anonymously()
    anonymous.requests_subscription_to(alice)  # alice takes no action on it
    anonymous.probes(alice)
    update = alice.publishes_presence()
    with positive_control():
        bob.receives(update)
    anonymous.does_not_receive(update)
