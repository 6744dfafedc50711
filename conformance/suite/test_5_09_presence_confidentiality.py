"""§5.9 Confidentiality of presence information: presence goes only to watchers the service has authenticated."""

from conformance.marks import case
from conformance.verdicts import positive_control


@case("IMPP-5.9-1")
def test_an_anonymous_session_gets_no_presence_nobody_approved(alice, bob, unauthenticated):
    alice.approves(bob)
    anonymous = unauthenticated.logs_in_anonymously()
    anonymous.requests_subscription_to(alice)  # alice takes no action on it
    anonymous.probes(alice)
    update = alice.publishes_presence()
    with positive_control():
        bob.receives(update)
    anonymous.does_not_receive(update)


@case("IMPP-5.9-1")
def test_presence_waits_until_the_remote_server_is_authenticated(alice, remote_server):
    slow = remote_server.awaits_the_iut(confirms="later")  # takes the IUT's TLS, withholds its SASL success
    update = alice.publishes_presence_to(f"w@{slow.domain}")
    slow.does_not_receive(update, before_confirming=True)
    slow.confirms_the_iut()
    with positive_control():
        slow.receives(update)


@case("IMPP-5.9-2")
def test_presence_to_another_domain_never_travels_in_clear(alice, remote_server):
    honest = remote_server.awaits_the_iut()
    with positive_control():
        honest.receives(alice.publishes_presence_to(f"w@{honest.domain}"))
    cleartext = remote_server.awaits_the_iut(offers_tls=False)
    update = alice.publishes_presence_to(f"w@{cleartext.domain}")
    cleartext.does_not_receive(update)
