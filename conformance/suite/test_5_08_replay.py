"""§5.8 No replay of presence information: what an eavesdropper recorded cannot be used again."""

from conformance.marks import case
from conformance.verdicts import Unsupported, check, note, positive_control


@case("IMPP-5.8-2")
def test_a_recorded_login_cannot_be_replayed(alice):
    replay = alice.replays_own_login()
    check(replay.refused, f"the IUT accepted alice's recorded SCRAM exchange a second time ({replay.detail}): "
                          f"its server nonce is not fresh (RFC 5802 §5)")


@case("IMPP-5.8-2")
def test_no_reusable_password_is_invited_next_to_scram(unauthenticated):
    offer = unauthenticated.connect().offer
    check(not ("PLAIN" in offer.mechanisms and any(m.startswith("SCRAM") for m in offer.mechanisms)),
          f"the IUT offers PLAIN next to SCRAM ({', '.join(offer.mechanisms)}): a client that picks it sends a "
          f"password anyone who obtains it can replay (RFC 6120 §13.8.3)")


@case("IMPP-5.8-1")
def test_a_recorded_session_cannot_be_replayed(alice, bob, mitm):
    alice.approves(bob)
    mitm.intercepts(alice)  # the attacker records alice's session from its first byte
    old_presence = alice.publishes_presence()
    note = alice.sends_message(to=bob)
    with positive_control():
        bob.receives(old_presence)
        bob.receives(note)
    current = alice.publishes_presence()
    bob.receives(current)
    replay = mitm.replays_the_session()
    check(replay.closed, f"{replay}: a replayed TLS handshake must fail on the service's fresh randomness "
                         f"(RFC 8446 §4.1.2) and the connection end within T_HS")
    bob.has_received_once(old_presence)
    bob.has_received_once(note)


@case("IMPP-5.8-4")
def test_early_data_is_never_acted_on_before_the_handshake_completes(unauthenticated):
    for door in unauthenticated.resumes_with_early_data():
        if door.unsupported:
            raise Unsupported(str(door))
        if not door.offered:
            note(str(door))  # never offered: nothing to replay (the catalogue's INFO)
            continue
        with positive_control():
            check(door.answered, f"{door}: the resumed connection never answered the stream it opened")
        check(not door.answered_early,
              f"{door}: the IUT acted on 0-RTT early data before the handshake completed, so whoever recorded that "
              f"first flight can have it acted on again (RFC 8446 §8, §E.5)")
        note(str(door))
