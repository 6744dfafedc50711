"""§5.2 Authenticity: every party proves who it is, and the service binds what it relays to that proof."""

from conformance.marks import case
from conformance.verdicts import check, positive_control

MAX_PASSWORD_GUESSES = 6  # RFC 6120 §6.4.5 allows between 2 and 5 retries


@case("IMPP-5.2-1")
def test_unauthenticated_presentity_cannot_publish(alice, bob, unauthenticated):
    alice.approves(bob)
    stream = unauthenticated.connect()
    forged = stream.sends_presence(claiming=alice)
    reaction = stream.reaction()
    check(not reaction.answered, f"the IUT processed presence from a stream that never authenticated: {reaction}")
    genuine = alice.publishes_presence()
    with positive_control():
        bob.receives(genuine)
    bob.does_not_receive(forged)


@case("IMPP-5.2-1")
def test_unauthenticated_watcher_cannot_subscribe(alice, mallory, unauthenticated):
    stream = unauthenticated.connect()
    forged = stream.requests_subscription_to(alice, claiming=mallory)
    check(not stream.reaction().answered, "the IUT processed a subscription request before authentication")
    with positive_control():
        mallory.requests_subscription_to(alice)
    alice.does_not_receive(forged)


@case("IMPP-5.2-1")
def test_unauthenticated_watcher_cannot_read_watcher_information(alice, bob, unauthenticated):
    alice.approves(bob)
    stream = unauthenticated.connect()
    stream.reads_roster(claiming=alice)
    reaction = stream.reaction()
    check(not reaction.answered, f"a stream that never authenticated read alice's roster: {reaction}")


@case("IMPP-5.2-1")
def test_unauthenticated_sender_cannot_deliver(alice, bob, unauthenticated):
    stream = unauthenticated.connect()
    forged = stream.sends_message(to=alice, claiming=bob)
    check(not stream.reaction().answered, "the IUT processed a message before authentication")
    genuine = bob.sends_message(to=alice)
    with positive_control():
        alice.receives(genuine)
    alice.does_not_receive(forged)


@case("IMPP-5.2-1")
def test_unauthenticated_inbox_cannot_bind(unauthenticated):
    stream = unauthenticated.connect()
    stream.binds_resource()
    reaction = stream.reaction()
    check(not reaction.answered, f"the IUT bound a resource for a stream that never authenticated: {reaction}")


@case("IMPP-5.2-1")
def test_wrong_password_is_refused_and_grants_nothing(alice, bob, unauthenticated):
    stream = unauthenticated.connect()
    attempt = stream.guesses_password_of(alice)
    check(attempt.refused, f"a wrong password for alice was accepted: {attempt}")
    forged = stream.sends_message(to=bob, claiming=alice)
    genuine = alice.sends_message(to=bob)
    with positive_control():
        bob.receives(genuine)
    bob.does_not_receive(forged)


@case("IMPP-5.2-1", step="retry_limit")
def test_repeated_wrong_passwords_end_the_stream(alice, unauthenticated):
    stream = unauthenticated.connect()
    for _ in range(MAX_PASSWORD_GUESSES):
        attempt = stream.guesses_password_of(alice)
        check(not attempt.answered, f"a wrong password for alice was accepted: {attempt}")
        if attempt.closed:
            return
    check(False, f"{MAX_PASSWORD_GUESSES} wrong passwords in a row, and the IUT still takes more on the same stream")


@case("IMPP-5.2-2")
def test_messages_carry_the_authenticated_sender(alice, bob, mallory):
    forged = mallory.sends_message(to=bob, claiming=alice)
    genuine = alice.sends_message(to=bob)
    with positive_control():
        bob.receives(genuine)
    bob.does_not_receive(forged, attributed_to=alice)


@case("IMPP-5.2-2")
def test_presence_carries_the_authenticated_presentity(alice, bob, mallory):
    alice.approves(bob)
    forged = mallory.sends_presence(claiming=alice)
    genuine = alice.publishes_presence()
    with positive_control():
        bob.receives(genuine)
    bob.does_not_receive(forged, attributed_to=alice)


@case("IMPP-5.2-2")
def test_subscription_requests_carry_the_authenticated_watcher(alice, bob, mallory):
    forged = mallory.sends_subscription_request(to=bob, claiming=alice)
    with positive_control():
        alice.requests_subscription_to(bob)
    bob.does_not_receive(forged, attributed_to=alice)
