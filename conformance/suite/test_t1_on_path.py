"""T1 "The network is not trusted", against an active attacker on the path between a party and the IUT."""

import pytest

from conformance.marks import case
from conformance.verdicts import check, positive_control


@case("IMPP-T1-7")
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_tampered_record_is_detected_and_nothing_of_it_delivered(alice, bob, mitm, where):
    alice.approves(bob)
    mitm.intercepts(alice)
    with positive_control():
        bob.receives(alice.publishes_presence())  # the path through the attacker works untouched
    mitm.flips_a_bit_in_next_record(where)
    tampered = alice.publishes_presence()
    closed_after = mitm.sees_the_iut_close()
    check(closed_after is not None, f"the IUT kept the connection open for T_CLOSE after the attacker "
                                    f"{mitm.tampered()}: a record that fails its integrity check must end the "
                                    f"TLS session (RFC 8446 §5.2, RFC 5246 §7.2.2)")
    bob.does_not_receive(tampered)


@case("IMPP-T1-1")
def test_a_login_relayed_by_a_tls_terminating_attacker_is_refused(alice, mitm):
    with positive_control():
        direct = alice.logs_in_with_channel_binding()
        check(not direct.refused, f"alice's channel-bound login straight to the IUT was refused: {direct.detail}")
    forged = mitm.terminates_tls("rogue-ca")  # a certificate alice was made to trust (CA-R)
    relayed = alice.logs_in_with_channel_binding(via=mitm.listening_at, ca_file=forged.ca_file)
    check(relayed.refused, f"the IUT accepted a login whose TLS the attacker terminated and relayed: "
                           f"{relayed.detail}; the channel-binding data must not match (RFC 5802 §6)")
