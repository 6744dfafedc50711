"""§5.4 Cheating (open in the draft; proposed cases): no value without completing one's own obligations."""

from conformance.marks import case
from conformance.verdicts import check, positive_control


@case("IMPP-5.4-1")
def test_no_stanza_is_routed_before_resource_binding(alice, bob, unauthenticated):
    stream = unauthenticated.connect_as_after_sasl(bob)
    early = stream.sends_message(to=alice)
    check(not stream.reaction().answered, "the IUT processed a message sent before resource binding")
    genuine = bob.sends_message(to=alice)
    with positive_control():
        alice.receives(genuine)
    alice.does_not_receive(early)


@case("IMPP-5.4-1")
def test_no_resource_is_bound_before_authentication(unauthenticated):
    stream = unauthenticated.connect()
    stream.binds_resource()
    reaction = stream.reaction()
    check(not reaction.answered, f"the IUT bound a resource before authentication: {reaction}")


@case("IMPP-5.4-2")
def test_a_cancelled_watcher_cannot_talk_its_way_back(alice, bob, mallory):
    alice.approves(bob)
    alice.approves(mallory)
    alice.revokes(mallory)
    mallory.sends_approval(to=alice)
    update = alice.publishes_presence()
    with positive_control():
        bob.receives(update)
    mallory.does_not_receive(update)
    mallory.does_not_receive(mallory.probes(alice))


@case("IMPP-5.4-3")
def test_an_unsolicited_approval_changes_nothing(alice, mallory):
    with positive_control():
        mallory.requests_subscription_to(alice)
    approval = mallory.sends_approval(to=alice)
    alice.does_not_receive(approval)
    check(alice.subscription_to(mallory) not in ("to", "both"),
          f"alice never asked to see mallory, yet an unsolicited approval made her roster say "
          f"'{alice.subscription_to(mallory)}'")
