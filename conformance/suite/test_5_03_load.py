"""§5.3 Denial of service under load: floods of fetches, of pre-authentication connections and of subscription
requests, each bounded by the profile's [load], while a legitimate party goes on being served."""

import pytest

from conformance.adapters.xmpp.load import percentile_95
from conformance.marks import case
from conformance.verdicts import check, note, positive_control

ROUND_TRIP_BOUND = 5.0  # seconds: IMPP-5.3-2's pass criterion for a fresh login and message round trip


@case("IMPP-5.3-1", step="subscriber_served")
def test_a_subscriber_stays_served_while_a_watcher_floods_fetches(alice, bob, mallory, flood):
    alice.approves(bob)
    alice.approves(mallory)  # a fetcher the presentity authorized: answering it is right, at a rate
    with positive_control():
        bob.receives(alice.publishes_presence())
    with flood.fetches(alice, by=mallory) as load:
        delays = [bob.delay_of(alice.publishes_presence()) for _ in load.meanwhile()]
    note(load.summary())
    served = [d for d in delays if d is not None]
    note(f"bob got {len(served)} of alice's {len(delays)} changes during the flood; p95 delay "
         f"{percentile_95(served):.2f}s")
    with positive_control():
        bob.receives(alice.publishes_presence())  # and the service works afterwards
    check(delays, "alice could not publish a single change while the flood ran")
    check(len(served) >= 0.95 * len(delays), f"bob missed {len(delays) - len(served)} of alice's {len(delays)} "
                                             f"changes while mallory flooded fetches")
    check(percentile_95(served) <= flood.bound, f"alice's changes reached bob after up to "
                                                f"{percentile_95(served):.2f}s (p95) while mallory flooded fetches; "
                                                f"the bound is {flood.bound:g}s")


@case("IMPP-5.3-1")
def test_fetchers_are_restricted_apart_from_subscribers(alice, bob, mallory, flood):
    alice.approves(bob)
    alice.approves(mallory)
    with flood.fetches(alice, by=mallory) as load:
        delays = [bob.delay_of(alice.publishes_presence()) for _ in load.meanwhile()]
    note(load.summary())
    with positive_control():
        bob.receives(alice.publishes_presence())
    check(load.throttled, f"the IUT answered every fetch at the flood's pace ({load.summary()}) and delivered "
                          f"{sum(d is not None for d in delays)} of {len(delays)} changes to the subscriber: it does "
                          f"not restrict fetchers differently from subscribers")


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
        delays = [bob.delay_of(alice.sends_message(to=bob)) for _ in spam.meanwhile()]
    fence = peer.sends_message(to=alice)  # after the spam on the same stream: when it is in, all of it is in
    with positive_control():
        alice.receives(fence)
    note(spam.summary())
    delivered = spam.requests_delivered()
    note(f"{len(delivered)} of the requests reached alice; her messages reached bob after up to "
         f"{max([d for d in delays if d is not None], default=0):.2f}s")
    served = [d for d in delays if d is not None]
    check(delays and len(served) == len(delays) and max(served) <= flood.bound,
          f"alice's own messages were not served within {flood.bound:g}s while the spam ran "
          f"({len(served)} of {len(delays)} arrived)")
    check(len(delivered) < spam.sent,
          f"the IUT passed every one of the {len(delivered)} subscription requests on to alice: it neither caps "
          f"nor aggregates requests from one remote server")
