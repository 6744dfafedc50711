"""§5.10 Authorization to send to inbox: only the inbox owner decides who may send, and the service delivers
nothing else, by any path, whatever form the sender's address takes, across restarts."""

import pytest

from conformance.marks import case
from conformance.verdicts import check, positive_control


def _full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


# Forms of mallory's address that RFC 7622 (PRECIS) makes the same JID.
ADDRESS_FORMS = {
    "as bound": lambda mallory: mallory.bare,
    "upper case": lambda mallory: mallory.bare.upper(),
    "full width": lambda mallory: _full_width(mallory.bare.split("@")[0]) + "@" + mallory.bare.split("@")[1],
}


@case("IMPP-5.10-1")
def test_only_the_inbox_owner_lifts_a_block(alice, bob, mallory):
    alice.blocks(mallory)
    outcome = mallory.unblocks_on_behalf_of(alice, mallory)
    check(outcome.refused, f"mallory removed herself from alice's blocklist: {outcome}")
    check(mallory.bare in alice.blocklist(), "mallory is no longer in alice's blocklist")
    blocked = mallory.sends_message(to=alice)
    allowed = bob.sends_message(to=alice)
    with positive_control():
        alice.receives(allowed)
    alice.does_not_receive(blocked)


@case("IMPP-5.10-2")
@pytest.mark.parametrize("inbox", ["online", "offline"])
def test_a_blocked_sender_reaches_the_inbox_by_no_path(alice, bob, mallory, inbox):
    alice.blocks(mallory)
    if inbox == "offline":
        alice.goes_offline()
    blocked = mallory.sends_message(to=alice)
    allowed = bob.sends_message(to=alice)
    if inbox == "offline":
        alice.comes_online()
    with positive_control():
        alice.receives(allowed)
    alice.does_not_receive(blocked)


@case("IMPP-5.10-2")
def test_a_blocked_sender_leaves_nothing_in_the_archive(alice, bob, mallory):
    alice.blocks(mallory)
    blocked = mallory.sends_message(to=alice)
    allowed = bob.sends_message(to=alice)
    with positive_control():
        alice.receives(allowed)
    alice.does_not_receive(blocked)
    archive = alice.archive()
    with positive_control():
        check(archive.contains(allowed), "alice's archive lacks the message bob sent her")
    check(not archive.contains(blocked), "alice's archive holds the message of mallory, whom she blocks")


@case("IMPP-5.10-3")
@pytest.mark.parametrize("form", ADDRESS_FORMS)
def test_a_block_holds_for_every_form_of_the_address(alice, bob, mallory, form):
    alice.blocks(ADDRESS_FORMS[form](mallory))
    blocked = mallory.sends_message(to=alice)
    allowed = bob.sends_message(to=alice)
    with positive_control():
        alice.receives(allowed)
    alice.does_not_receive(blocked)


@case("IMPP-5.10-3")
@pytest.mark.parametrize("restart", ["graceful", "kill"])
def test_delivery_blocks_survive_a_restart(alice, bob, mallory, iut, restart):
    alice.blocks(mallory)
    iut.restarts(kill=restart == "kill")
    for party in (alice, bob, mallory):
        party.comes_online()
    blocked = mallory.sends_message(to=alice)
    allowed = bob.sends_message(to=alice)
    with positive_control():
        alice.receives(allowed)
    alice.does_not_receive(blocked)
