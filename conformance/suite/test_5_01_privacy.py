"""§5.1 Privacy: presence, watcher information and messages reach only authorized, authenticated parties."""

import pytest

from conformance.marks import case
from conformance.verdicts import check, positive_control

# How mallory stands towards alice when alice publishes (bob is always an approved watcher).
RELATIONS = {
    "stranger": lambda alice, mallory: None,
    "pending": lambda alice, mallory: mallory.requests_subscription_to(alice),
    "refused": lambda alice, mallory: (mallory.requests_subscription_to(alice), alice.refuses(mallory)),
    "blocked": lambda alice, mallory: (alice.approves(mallory), alice.blocks(mallory)),
}


@case("IMPP-5.1-2")
@pytest.mark.parametrize("relation", RELATIONS)
def test_presence_reaches_only_authorized_watchers(alice, bob, mallory, relation):
    alice.approves(bob)
    RELATIONS[relation](alice, mallory)
    update = alice.publishes_presence()
    with positive_control():
        bob.receives(update)
    mallory.does_not_receive(update)


@case("IMPP-5.1-3")
@pytest.mark.parametrize("presentity", ["online", "offline"])
def test_presence_probe_reveals_nothing_to_unauthorized(alice, bob, mallory, presentity):
    alice.approves(bob)
    alice.publishes_presence()
    with positive_control():
        bob.receives(bob.probes(alice))
    if presentity == "offline":
        alice.goes_offline()
    mallory.does_not_receive(mallory.probes(alice))


@case("IMPP-5.1-3")
@pytest.mark.parametrize("presentity", ["online", "offline"])
def test_last_activity_is_refused_to_unauthorized(alice, bob, mallory, presentity):
    alice.approves(bob)
    if presentity == "offline":
        alice.goes_offline()
    with positive_control():
        granted = bob.asks_last_activity_of(alice)
        check(not granted.refused or granted.condition not in ("service-unavailable", "feature-not-implemented"),
              f"authorized bob's last-activity query was {granted}")
    outcome = mallory.asks_last_activity_of(alice)
    check(outcome.refused, f"mallory, not authorized to see alice's presence, asked for her last activity "
                           f"and was {outcome}")


@case("IMPP-5.1-3", step="d")
def test_iq_to_full_jid_does_not_reveal_online_resources(alice, bob, mallory):
    # alice's client answers strangers as if she were not there, so any difference comes from the IUT.
    alice.approves(bob)
    with positive_control():
        check(not bob.pings(alice.full_jid).refused, "bob's ping to alice's resource went unanswered")
    real = mallory.pings(alice.full_jid)
    made_up = mallory.pings(f"{alice.bare}/no-such-resource")
    check((real.refused, real.condition) == (made_up.refused, made_up.condition),
          f"mallory can tell alice's resource is online: her real resource answered {real}, "
          f"a made-up one {made_up}")


@case("IMPP-5.1-4")
def test_watcher_information_goes_only_to_the_presentity(alice, bob, mallory):
    alice.approves(bob)
    mallory.requests_subscription_to(alice)
    for reader in (mallory, bob):
        outcome = reader.reads_watchers_of(alice)
        check(outcome.refused and not outcome.data,
              f"{reader.name} asked for alice's watchers and was {outcome}")
    roster = alice.roster()
    check(roster.get(bob.bare, ("none",))[0] in ("from", "both"),
          f"alice's own view of her watchers is wrong: bob is {roster.get(bob.bare, ('absent',))[0]}")


@case("IMPP-5.1-5")
def test_no_one_authenticates_as_another_inbox(alice, bob, mallory):
    attempt = mallory.logs_in_as(alice)
    check(attempt.refused, f"mallory authenticated with her own password as alice: {attempt.detail}")
    update = bob.sends_message(to=alice)
    with positive_control():
        alice.receives(update)
    mallory.does_not_receive(update)


@case("IMPP-5.1-5")
def test_no_one_resumes_another_inbox_session(alice, bob, mallory):
    alice.enables_stream_management()
    attempt = mallory.resumes_session_of(alice)
    check(attempt.refused, f"mallory, authenticated as herself, resumed alice's stream-management session: "
                           f"{attempt.detail}")
    alice.stays_connected()
    update = bob.sends_message(to=alice)
    with positive_control():
        alice.receives(update)
    mallory.does_not_receive(update)


@case("IMPP-5.1-7")
def test_a_passive_eavesdropper_learns_nothing(alice, bob, eavesdropper):
    for party in (alice, bob):
        party.leaves_security_to_the_service()
    alice.approves(bob)
    status = alice.publishes_presence()
    note = bob.sends_message(to=alice)
    with positive_control():
        bob.receives(status)
        alice.receives(note)
    eavesdropper.finds_nothing_of(status, note)
