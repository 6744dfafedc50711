"""§5.4 Cheating (open in the draft; proposed cases): no value without completing one's own obligations."""

import pytest

from conformance.marks import case
from conformance.verdicts import check, positive_control

# Streams on which stream management must not be enabled yet (XEP-0198 §3).
EARLY_STREAMS = {
    "before-authentication": lambda unauthenticated, alice: unauthenticated.connect(),
    "before-binding": lambda unauthenticated, alice: unauthenticated.connect_as_after_sasl(alice),
}


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


@case("IMPP-5.4-1")
@pytest.mark.parametrize("stage", EARLY_STREAMS)
def test_stream_management_is_not_enabled_early(alice, unauthenticated, stage):
    with positive_control():
        alice.enables_stream_management()
    stream = EARLY_STREAMS[stage](unauthenticated, alice)
    reaction = stream.enables_stream_management()
    check(not reaction.answered, f"the IUT enabled stream management {stage.replace('-', ' ')}: {reaction}")


@case("IMPP-5.4-1")
def test_no_session_is_resumed_after_resource_binding(alice):
    alice.enables_stream_management()
    alice.loses_connection()
    with positive_control():
        resumed = alice.resumes_session()
        check(not resumed.refused, f"alice could not resume her own session on a fresh stream: {resumed}")
    alice.loses_connection()
    late = alice.resumes_session_after_binding()
    check(late.refused, f"the IUT resumed alice's session on a stream that had already bound a resource: "
                        f"{late.detail}")


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


@case("IMPP-5.4-2")
def test_a_false_acknowledgement_costs_no_messages(alice, bob):
    alice.enables_stream_management(resumable=False)
    sent = [bob.sends_message(to=alice, archive=False) for _ in range(3)]  # an archive would hide a loss
    with positive_control():
        for update in sent:
            alice.receives(update)
    ending = alice.acknowledges_more_than_received(extra=5)
    check(ending.stream_error == "undefined-condition" and "handled-count-too-high" in ending.detail,
          f"alice acknowledged 5 stanzas more than the IUT had sent her, and the IUT answered: {ending} "
          f"(XEP-0198 §6: <undefined-condition/> with <handled-count-too-high/>)")
    later = bob.sends_message(to=alice, archive=False)
    alice.comes_online()
    lost = alice.messages_not_recovered([*sent, later])
    check(not lost, f"after alice's false acknowledgement, {len(lost)} of the {len(sent) + 1} messages sent to her "
                    f"never came back: {', '.join(m.canary for m in lost)}")
