"""§5.6 Authorization to update presence information: only the presentity changes who may publish its presence,
the service takes updates only from those it permits, and keeps the published state and those rights
tamper-proof. In XMPP the rights that can be given are those of personal eventing (XEP-0163) nodes; presence
stanzas themselves can only come from the presentity's own resources."""

import pytest

from conformance.marks import case
from conformance.verdicts import check, positive_control

TAMPERING = {
    "retract": lambda mallory, alice, item: mallory.retracts_item_of(alice, item),
    "overwrite": lambda mallory, alice, item: mallory.publishes_to(alice, replacing=item),
}


@case("IMPP-5.6-1")
def test_only_the_presentity_changes_who_may_publish(alice, mallory):
    alice.publishes_pep_item()
    with positive_control():
        alice.configures_node(publish_model="publishers")
    before = alice.node_settings()
    planted = mallory.creates_node_on(alice)
    attempts = {
        "make herself a publisher of alice's node": mallory.changes_publishers_of(alice, grant=mallory),
        "open alice's node to any publisher": mallory.reconfigures_node_of(alice, publish_model="open"),
        "create a node on alice's PEP service": planted,
    }
    for what, outcome in attempts.items():
        check(outcome.refused, f"mallory tried to {what} and was {outcome}")
    after = alice.node_settings()
    check(after == before, f"alice's node was {before} before mallory's attempts and is {after} after them")
    check(not alice.has_node(planted.node), f"alice's PEP service has a node mallory created ({planted.node})")


# IMPP-5.6-2 (b), presence sent by mallory claiming to be alice, is the test of IMPP-5.2-2 that checks presence.
@case("IMPP-5.6-2")
def test_only_the_presentity_publishes_to_its_nodes(alice, bob, mallory):
    alice.approves(bob)
    genuine = alice.publishes_pep_item()
    with positive_control():
        check(bob.fetches_items_of(alice).contains(genuine), "bob, subscribed to alice, does not get her item")
    forged = mallory.publishes_to(alice)
    check(forged.refused, f"mallory published into alice's node and was {forged}")
    view = bob.fetches_items_of(alice)
    check(view.contains(genuine) and not view.contains(forged.update),
          f"bob asked for alice's items after mallory's publish and got {view}")


@case("IMPP-5.6-3")
@pytest.mark.parametrize("tampering", TAMPERING)
def test_no_one_else_alters_a_published_item(alice, bob, mallory, tampering):
    alice.approves(bob)
    alice.approves(mallory)  # allowed to read alice's items, which is no right to change them
    item = alice.publishes_pep_item()
    with positive_control():
        check(bob.fetches_items_of(alice).contains(item), "bob, subscribed to alice, does not get her item")
    attempt = TAMPERING[tampering](mallory, alice, item)
    check(attempt.refused, f"mallory's {tampering} of alice's item was {attempt}")
    view = bob.fetches_items_of(alice)
    check(view.contains(item) and not (attempt.update and view.contains(attempt.update)),
          f"after mallory's {tampering}, bob asked for alice's items and got {view}")


@case("IMPP-5.6-3")
@pytest.mark.parametrize("restart", ["graceful", "kill"])
def test_node_configuration_survives_a_restart(alice, bob, iut, restart):
    alice.approves(bob)
    alice.publishes_pep_item()
    alice.configures_node(access_model="whitelist")
    with positive_control():
        check(bob.fetches_items_of(alice).refused, "bob, not on alice's whitelist, still gets her items")
    before = alice.node_settings()
    iut.restarts(kill=restart == "kill")
    for party in (alice, bob):
        party.comes_online()
    after = alice.node_settings()
    check(after == before, f"alice's node was {before} before the restart and {after} after it")
    check(bob.fetches_items_of(alice).refused, "after the restart bob, not on alice's whitelist, gets her items")
