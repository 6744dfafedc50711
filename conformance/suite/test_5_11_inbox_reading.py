"""§5.11 Authorization to receive inbox message (open in the draft; proposed cases): stored and copied messages
go only to the inbox's principal, and no one else can take over its delivery bindings."""

from conformance.marks import case
from conformance.verdicts import check, positive_control


@case("IMPP-5.11-1")
def test_the_archive_is_readable_only_by_its_owner(alice, bob, mallory):
    message = bob.sends_message(to=alice)
    with positive_control():
        alice.receives(message)
        check(alice.archive().contains(message), "alice's own archive lacks the message bob sent her")
    outcome = mallory.reads_archive_of(alice)
    check(not outcome.contains(message), f"mallory queried alice's archive and got bob's message to alice: {outcome}")


@case("IMPP-5.11-1")
def test_message_copies_go_only_to_the_owner(alice, bob, mallory):
    alice.enables_carbons()
    mallory.enables_carbons()
    message = bob.sends_message(to=alice)
    with positive_control():
        alice.receives(message)
    mallory.does_not_receive(message)


@case("IMPP-5.11-2")
def test_a_taken_resource_name_detaches_no_one_else(alice, bob, mallory):
    first = bob.sends_message(to=alice.full_jid)
    with positive_control():
        alice.receives(first)
    mallory.binds_another_session(resource=alice.resource)
    second = bob.sends_message(to=alice.full_jid)
    alice.receives(second)
    mallory.does_not_receive(second)


@case("IMPP-5.11-2")
def test_no_one_else_resumes_a_hibernating_inbox(alice, bob, mallory):
    alice.enables_stream_management()
    alice.loses_connection()
    update = bob.sends_message(to=alice)
    attempt = mallory.resumes_session_of(alice)
    check(attempt.refused, f"mallory resumed alice's session while alice was away: {attempt.detail}")
    with positive_control():
        resumed = alice.resumes_session()
        check(not resumed.refused, f"alice could not resume her own session: {resumed}")
        alice.receives(update)
    mallory.does_not_receive(update)
