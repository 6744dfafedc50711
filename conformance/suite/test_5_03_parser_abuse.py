"""§5.3 Denial of service (open in the draft; proposed case IMPP-5.3-3): parser and size abuse is rejected cleanly.

Each test first shows that the service serves a legitimate user (the positive control), lets mallory abuse its XML
parser on a stream of her own, checks that the IUT ended that stream (or, for a stanza over the size limit, refused
it with <policy-violation/>), and then that the legitimate user is still served: an abuse that takes the service
(or another user's session) down is the denial of service this case is about.
"""

import pytest

from conformance.marks import case
from conformance.verdicts import check, note, positive_control

STAGES = ("header", "unauthenticated", "authenticated")


@case("IMPP-5.3-3")
def test_an_internal_dtd_ends_the_stream_and_no_entity_is_expanded(alice, bob, mallory):
    with positive_control():
        bob.receives(alice.sends_message(to=bob))
    abuse = mallory.sends_message_through_entities(to=bob)
    bob.does_not_receive(abuse.update)
    check(abuse.reaction.stream_error or (abuse.reaction.closed and not abuse.reaction.answered),
          f"the IUT did not end a stream that declared entities in an internal DTD subset (RFC 6120 §11.1): {abuse}")
    if abuse.reaction.stream_error != "restricted-xml":
        note(f"the IUT refused the DTD with {abuse.reaction}, not the <restricted-xml/> RFC 6120 §11.1 asks for")
    bob.receives(alice.sends_message(to=bob))


@case("IMPP-5.3-3")
def test_a_stanza_over_the_size_limit_is_refused_with_a_policy_violation(alice, bob, mallory):
    with positive_control():
        bob.receives(alice.sends_message(to=bob))
    abuse = mallory.sends_oversized_stanza()
    check(abuse.reaction.stream_error or abuse.reaction.stanza_error == "policy-violation"
          or (abuse.reaction.closed and not abuse.reaction.answered),
          f"the IUT took {abuse} (RFC 6120 §13.12: a <policy-violation/> stanza error or a stream error)")
    if abuse.reaction.stream_error not in (None, "policy-violation"):
        note(f"the IUT refused the oversized stanza with {abuse.reaction}, not <policy-violation/>")
    elif abuse.reaction.stream_error is None and abuse.reaction.stanza_error is None:
        note(f"the IUT closed the connection without a stream error: {abuse.reaction.detail}")
    bob.receives(alice.sends_message(to=bob))


@case("IMPP-5.3-3")
def test_xml_nested_ten_thousand_levels_deep_ends_the_stream(alice, bob, mallory):
    with positive_control():
        bob.receives(alice.sends_message(to=bob))
    abuse = mallory.sends_deeply_nested_stanza(depth=10_000)
    check(abuse.reaction.stream_error or (abuse.reaction.closed and not abuse.reaction.answered),
          f"the IUT did not end the stream that carried {abuse}")
    if abuse.reaction.stream_error is None:
        note(f"the IUT closed the connection without a stream error: {abuse.reaction.detail}")
    bob.receives(alice.sends_message(to=bob))


@case("IMPP-5.3-3")
@pytest.mark.parametrize("stage", STAGES)
def test_malformed_input_ends_only_the_stream_that_carried_it(alice, bob, mallory, stage):
    with positive_control():
        bob.receives(alice.sends_message(to=bob))
    outcome = mallory.sends_malformed_input(stage)
    check(outcome.refused, f"malformed XMPP was taken: {outcome.detail}")
    bob.receives(alice.sends_message(to=bob))
