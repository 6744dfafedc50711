"""§5.14 Confidentiality of instant messages: the service delivers to the inbox only once it is authenticated."""

from conformance.marks import case
from conformance.verdicts import positive_control


@case("IMPP-5.14-1")
def test_stored_messages_wait_for_the_authenticated_inbox(alice, bob, unauthenticated):
    alice.goes_offline()
    stored = bob.sends_message(to=alice)
    impostor = unauthenticated.connect(announcing=alice)  # claims to be alice in its stream header, never proves it
    alice.comes_online()
    impostor.does_not_receive(stored)
    with positive_control():
        alice.receives(stored)  # the stored message was there to be had, and goes to the authenticated inbox


@case("IMPP-5.14-1")
def test_messages_wait_until_the_remote_server_is_authenticated(alice, remote_server):
    slow = remote_server.awaits_the_iut(confirms="later")  # takes the IUT's TLS, withholds its SASL success
    note = alice.sends_message(to=f"r@{slow.domain}")
    slow.does_not_receive(note, before_confirming=True)
    slow.confirms_the_iut()
    with positive_control():
        slow.receives(note)


@case("IMPP-5.14-2")
def test_messages_to_another_domain_never_travel_in_clear(alice, remote_server):
    honest = remote_server.awaits_the_iut()
    with positive_control():
        honest.receives(alice.sends_message(to=f"r@{honest.domain}"))
    cleartext = remote_server.awaits_the_iut(offers_tls=False)
    secret = alice.sends_message(to=f"r@{cleartext.domain}")
    cleartext.does_not_receive(secret)
