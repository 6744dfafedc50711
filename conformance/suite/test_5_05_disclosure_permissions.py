"""§5.5 Authorization to disclose presence information: only the presentity changes who may see its presence,
the service keeps those permissions tamper-proof, and applies them at once."""

import pytest

from conformance.marks import case
from conformance.verdicts import check, positive_control

REVOCATIONS = {
    "unsubscribed": lambda alice, mallory: alice.revokes(mallory),
    "block": lambda alice, mallory: alice.blocks(mallory),
}


@case("IMPP-5.5-1")
def test_granting_a_watcher_needs_proof_of_identity(alice, bob, mallory, unauthenticated):
    stream = unauthenticated.connect()
    stream.changes_permissions_of(alice, grant=mallory)
    check(not stream.reaction().answered, "the IUT accepted a roster change before authentication")
    check(mallory.bare not in alice.roster(), "an unauthenticated stream put mallory into alice's roster")
    with positive_control():
        alice.adds_contact(bob)
        check(bob.bare in alice.roster(), "alice's own roster change does not show in her roster")


@case("IMPP-5.5-1")
def test_blocking_needs_proof_of_identity(alice, bob, mallory, unauthenticated):
    stream = unauthenticated.connect()
    stream.blocks(bob, claiming=alice)
    check(not stream.reaction().answered, "the IUT accepted a block before authentication")
    check(bob.bare not in alice.blocklist(), "an unauthenticated stream changed alice's blocklist")
    with positive_control():
        alice.blocks(mallory)
        check(mallory.bare in alice.blocklist(), "alice's own block does not show in her blocklist")


@case("IMPP-5.5-1")
def test_approving_a_watcher_needs_proof_of_identity(alice, bob, mallory, unauthenticated):
    alice.approves(bob)
    mallory.requests_subscription_to(alice)
    stream = unauthenticated.connect()
    stream.approves(mallory, claiming=alice)
    check(not stream.reaction().answered, "the IUT accepted an approval before authentication")
    update = alice.publishes_presence()
    with positive_control():
        bob.receives(update)
    mallory.does_not_receive(update)


@case("IMPP-5.5-2")
def test_only_the_presentity_grants_watchers(alice, bob, mallory):
    alice.approves(bob)
    outcome = mallory.changes_permissions_of(alice, grant=mallory)
    check(outcome.refused, f"mallory changed alice's roster: {outcome}")
    check(mallory.bare not in alice.roster(), "mallory appears in alice's roster after mallory's roster set")
    update = alice.publishes_presence()
    with positive_control():
        bob.receives(update)
    mallory.does_not_receive(update)


@case("IMPP-5.5-2")
def test_a_forged_approval_grants_nothing(alice, bob, mallory):
    alice.approves(bob)
    mallory.requests_subscription_to(alice)
    mallory.sends_approval(to=mallory, claiming=alice)
    update = alice.publishes_presence()
    with positive_control():
        bob.receives(update)
    mallory.does_not_receive(update)


@case("IMPP-5.5-2")
def test_only_the_presentity_lifts_a_block(alice, bob, mallory):
    alice.approves(bob)
    alice.approves(mallory)
    alice.blocks(mallory)
    outcome = mallory.unblocks_on_behalf_of(alice, mallory)
    check(outcome.refused, f"mallory removed herself from alice's blocklist: {outcome}")
    update = alice.publishes_presence()
    with positive_control():
        bob.receives(update)
    mallory.does_not_receive(update)


@case("IMPP-5.5-3")
def test_no_one_grants_themselves_a_subscription(alice, bob, mallory):
    alice.approves(bob)
    mallory.grants_itself_subscription_to(alice)
    check(mallory.subscription_to(alice) not in ("to", "both"),
          f"mallory's own roster set made her subscription to alice '{mallory.subscription_to(alice)}'")
    update = alice.publishes_presence()
    with positive_control():
        bob.receives(update)
    mallory.does_not_receive(update)


@case("IMPP-5.5-3")
@pytest.mark.parametrize("restart", ["graceful", "kill"])
def test_presence_blocks_survive_a_restart(alice, bob, mallory, iut, restart):
    alice.approves(bob)
    alice.approves(mallory)
    alice.blocks(mallory)
    before = alice.blocklist()
    iut.restarts(kill=restart == "kill")
    for party in (alice, bob, mallory):
        party.comes_online()
    after = alice.blocklist()
    check(after == before, f"alice's blocklist was {before} before the restart and {after} after it")
    update = alice.publishes_presence()
    with positive_control():
        bob.receives(update)
    mallory.does_not_receive(update)


@case("IMPP-5.5-4")
@pytest.mark.parametrize("revocation", REVOCATIONS)
def test_revocation_takes_effect_at_once(alice, bob, mallory, revocation):
    alice.approves(bob)
    alice.approves(mallory)
    before = alice.publishes_presence()
    with positive_control():
        mallory.receives(before)
    REVOCATIONS[revocation](alice, mallory)
    mallory.receives_unavailable_from(alice, since=before)
    after = alice.publishes_presence()
    with positive_control():
        bob.receives(after)
    mallory.does_not_receive(after)


def _node_for_friends(alice, bob, mallory):
    """bob and mallory both see alice's presence; only bob is in her roster group Friends, to which she restricts
    her PEP node before publishing to it."""
    alice.approves(bob)
    alice.approves(mallory)
    alice.puts_in_group(bob, "Friends")
    alice.restricts_node_to_group("Friends")
    return alice.publishes_pep_item()


@case("IMPP-5.5-5")
def test_a_node_restricted_to_a_group_discloses_only_to_the_group(alice, bob, mallory):
    item = _node_for_friends(alice, bob, mallory)
    with positive_control():
        granted = bob.fetches_items_of(alice)
        check(granted.contains(item), f"bob, in alice's group Friends, asked for her items and was {granted}")
    refused = mallory.fetches_items_of(alice)
    check(refused.refused and not refused.contains(item),
          f"mallory, subscribed to alice but not in her group Friends, asked for the items only Friends may read "
          f"and was {refused}")


@case("IMPP-5.5-5", step="condition")
def test_a_watcher_outside_the_group_is_told_why(alice, bob, mallory):
    item = _node_for_friends(alice, bob, mallory)
    with positive_control():
        check(bob.fetches_items_of(alice).contains(item), "bob, in alice's group Friends, does not get her item")
    refusal = mallory.fetches_items_of(alice)
    check((refusal.condition, refusal.reason) == ("not-authorized", "not-in-roster-group"),
          f"mallory, outside the group, was {refusal} (reason: {refusal.reason}); XEP-0060 §6.5.9.7 asks for "
          f"<not-authorized/> with <not-in-roster-group/>")
