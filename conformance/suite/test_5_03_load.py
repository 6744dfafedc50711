"""§5.3 Denial of service under load: floods of fetches, of pre-authentication connections and of subscription
requests, each bounded by the profile's [load], while a legitimate party goes on being served."""

import pytest

from conformance.marks import case
from conformance.roles import Delays
from conformance.verdicts import check, note, positive_control

ROUND_TRIP_BOUND = 5.0  # seconds: IMPP-5.3-2's pass criterion for a fresh login and message round trip


@case("IMPP-5.3-1", step="subscriber_served")
def test_a_subscriber_stays_served_while_a_watcher_floods_fetches(alice, bob, mallory, flood):
    alice.approves(bob)
    alice.approves(mallory)  # a fetcher the presentity authorized: answering it is right, at a rate
    with positive_control():
        bob.receives(alice.publishes_presence())
    with flood.fetches(alice, by=mallory) as load:
        delays = Delays(bob.delay_of(alice.publishes_presence()) for _ in load.meanwhile())
    note(load.summary())
    note(f"alice's changes to bob during the flood: {delays}")
    with positive_control():
        bob.receives(alice.publishes_presence())  # and the service works afterwards
    check(delays, "alice could not publish a single change while the flood ran")
    check(delays.missed <= 0.05 * len(delays), f"bob missed {delays.missed} of alice's {len(delays)} changes while "
                                               f"mallory flooded fetches")
    check(delays.p95 <= flood.bound, f"alice's changes reached bob after up to {delays.p95:.2f}s (p95) while "
                                     f"mallory flooded fetches; the bound is {flood.bound:g}s")


@case("IMPP-5.3-1")
def test_fetchers_are_restricted_apart_from_subscribers(alice, bob, mallory, flood):
    alice.approves(bob)
    alice.approves(mallory)
    with flood.fetches(alice, by=mallory) as load:
        delays = Delays(bob.delay_of(alice.publishes_presence()) for _ in load.meanwhile())
    note(load.summary())
    with positive_control():
        bob.receives(alice.publishes_presence())
    check(load.throttled, f"the IUT answered every fetch at the flood's pace ({load.summary()}); of alice's changes "
                          f"to the subscriber {delays}: it does not restrict fetchers differently from subscribers")


@case("IMPP-5.3-2")
@pytest.mark.parametrize("style", ["silent", "trickling", "churning"])
def test_a_flood_of_unauthenticated_connections_locks_nobody_out(alice, bob, flood, style):
    with positive_control():
        check(flood.round_trip(bob, alice).ok, "bob's login and message round trip failed before any flood")
    with flood.opens_connections(style) as load:
        trip = flood.round_trip(bob, alice)
    note(load.summary())
    note(f"during the flood: {trip}")
    with positive_control():
        check(flood.round_trip(bob, alice).ok, "bob's login and message round trip failed after the flood")
    check(trip.ok and trip.seconds <= ROUND_TRIP_BOUND,
          f"during a {style} flood of unauthenticated connections ({load.summary()}) bob's fresh login and "
          f"message round trip {'failed' if not trip.ok else 'took too long'}: {trip}")
    if style != "churning":  # closed as fast as they come, churning connections need no limit
        check(load.tally.limited, f"the IUT kept every one of the flood's unauthenticated connections open "
                                  f"({load.summary()}): no per-address limit and no pre-authentication timeout "
                                  f"within the flood")


@case("IMPP-5.3-4")
def test_subscription_spam_from_another_domain_stays_bounded(alice, bob, remote_server, flood):
    peer = remote_server.connects()
    with positive_control():
        alice.receives(peer.sends_message(to=alice))
    with flood.spams_subscriptions(alice, via=peer) as spam:
        delays = Delays(bob.delay_of(alice.sends_message(to=bob)) for _ in spam.meanwhile())
    fence = peer.sends_message(to=alice)  # after the spam on the same stream: when it is in, all of it is in
    with positive_control():
        alice.receives(fence)
    note(spam.summary())
    delivered = spam.requests_delivered()
    note(f"{len(delivered)} of the requests reached alice; her messages to bob: {delays}")
    check(delays and not delays.missed and max(delays.served) <= flood.bound,
          f"alice's own messages were not served within {flood.bound:g}s while the spam ran ({delays})")
    check(len(delivered) < spam.sent,
          f"the IUT passed every one of the {len(delivered)} subscription requests on to alice: it neither caps "
          f"nor aggregates requests from one remote server")
