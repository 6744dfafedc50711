"""§5.2 Authenticity, client side: the client proves who it is with the strongest mechanism, believes only the
genuine service (its certificate, its SCRAM signature), and takes delivery status and service data only from
whoever may give them."""

import pytest

from conformance.marks import case
from conformance.verdicts import positive_control

IMPOSTOR_CERTIFICATES = ("self-signed", "rogue-ca", "wrong-name", "expired", "other-domain")


@case("IMPP-5.2-3")
def test_client_proves_its_identity_and_never_with_plain_next_to_scram(client, service):
    run = client.logs_in()
    with positive_control():
        assert run.bound, f"the client did not log in to the genuine service: {run}"
    mechanism = service.mechanism_used_by(run)
    assert mechanism is not None, "the client bound a session without authenticating (no <auth/> seen)"
    assert mechanism != "PLAIN", \
        f"the client chose PLAIN although the service offered {', '.join(service.mechanisms_offered_to(run))}"


@case("IMPP-5.2-3", step="mechanism_preference")
def test_client_picks_the_strongest_mechanism_offered(client, service):
    run = client.logs_in()
    with positive_control():
        assert run.bound, f"the client did not log in to the genuine service: {run}"
    stronger = service.stronger_mechanisms_offered_to(run)
    assert not stronger, \
        f"the client chose {service.mechanism_used_by(run)} although the service offered {', '.join(stronger)}"


@case("IMPP-5.2-4")
@pytest.mark.parametrize("certificate", IMPOSTOR_CERTIFICATES)
def test_client_aborts_before_authenticating_to_an_impostor(client, impostor, certificate):
    impostor.presents("genuine")  # control: through the same attacker, the service's own certificate works
    control = client.logs_in(via=impostor)
    with positive_control():
        assert control.bound, f"the client does not log in through the relay with a genuine certificate: {control}"
    impostor.presents(certificate)
    run = client.logs_in(via=impostor)
    assert not impostor.saw_client_authenticate(), \
        f"the client sent its credentials to an impostor presenting a {certificate} certificate"
    assert not run.bound, f"the client bound a session behind a {certificate} certificate: {run}"


@case("IMPP-5.2-5")
def test_client_refuses_a_service_whose_scram_signature_is_wrong(client, impostor):
    impostor.presents("genuine")  # a stolen or mis-issued certificate: TLS alone cannot tell
    control = client.logs_in(via=impostor)
    with positive_control():
        assert control.bound, f"the client does not log in through the relay with a genuine certificate: {control}"
    impostor.tampers_with_server_signature()
    run = client.logs_in(via=impostor)
    impostor.saw_scram_signature_tampered()
    assert not impostor.saw_client_send_after_success(), \
        "the client went on (bind, presence or messages) after a <success/> with a wrong ServerSignature"
    assert not run.bound, f"the client bound a session after a wrong ServerSignature: {run}"


@case("IMPP-5.2-6", step="b")
def test_sender_takes_a_receipt_only_from_the_addressee(client, contact, stranger):
    client.needs("receipts")
    running = client.starts("send-message", to=contact.bare, body=client.canary("msg"), receipt=True)
    running.bound_or_setup_failed()
    sent = running.sent("message")
    assert sent and sent.get("id"), f"the client did not report the id of the message it sent: {sent}"
    stranger.acknowledges(sent["id"], to=running.full_jid)
    contact.acknowledges(sent["id"], to=running.full_jid)
    genuine = running.shows_receipt(sent["id"], sender=contact.bare)  # control, and the fence: after the forgery
    run = running.ends()
    with positive_control():
        assert genuine, f"the client never took the addressee's genuine receipt for {sent['id']}: {run}"
    forged = running.receipts(sent["id"], sender=stranger.bare)
    assert not forged, f"the client marked its message delivered on a receipt from {stranger.bare}: {forged}"


@case("IMPP-5.2-7")
def test_client_ignores_a_roster_push_not_from_its_own_account(client, contact):
    # a contact forges it: a service passes requests to a session only from those who share presence with its user
    # (RFC 6121 §8.5.3.1), so a stranger's would not even arrive
    client.needs("roster")
    running = client.starts("receive")
    running.bound_or_setup_failed()
    canary = contact.pushes_roster_item(running.full_jid)
    control = contact.sends_message(running.full_jid)  # fence: the same stream, delivered after the forged push
    with positive_control():
        assert running.shows(control.canary), "the client did not show a contact's message (control)"
    run = running.ends()
    assert not run.shown(canary), f"the client applied a roster push from {contact.bare}: {run.shown(canary)}"


@case("IMPP-5.2-7")
def test_client_ignores_a_message_carbon_not_from_its_own_account(client, contact, stranger):
    client.needs("carbons")
    running = client.starts("receive")
    running.bound_or_setup_failed()
    canary = stranger.sends_carbon_copy(running.full_jid, claiming=contact.full_jid)
    control = contact.sends_message(running.full_jid)  # fence: delivered after the forged carbon
    with positive_control():
        assert running.shows(control.canary), "the client did not show a contact's message (control)"
    run = running.ends()
    assert not run.shown(canary), f"the client accepted a carbon copy sent by {stranger.bare}: {run.shown(canary)}"


@case("IMPP-5.2-6", step="c")
def test_sender_takes_a_message_error_only_from_the_addressee_or_its_service(client, contact, stranger):
    client.needs("errors")
    running = client.starts("send-message", to=contact.bare, body=client.canary("msg"))
    running.bound_or_setup_failed()
    sent = running.sent("message")
    assert sent and sent.get("id"), f"the client did not report the id of the message it sent: {sent}"
    stranger.bounces(sent["id"], to=running.full_jid)
    contact.bounces(sent["id"], to=running.full_jid)
    genuine = running.shows_failure(sent["id"], sender=contact.bare)  # control, and the fence: after the forgery
    run = running.ends()
    with positive_control():
        assert genuine, f"the client never took the addressee's error for {sent['id']}: {run}"
    forged = running.failures(sent["id"], sender=stranger.bare)
    assert not forged, f"the client marked its message failed on an error from {stranger.bare}: {forged}"


@case("IMPP-5.2-7")
def test_client_ignores_an_archive_result_not_from_its_own_archive(client, contact, stranger, service):
    client.needs("mam")
    genuine = client.canary("archived")
    service.archives(client.bare, sender=contact.bare, body=genuine)
    service.holds_archive_queries()  # the client's query stays open while the forgery arrives
    running = client.starts("receive", sync=True)
    running.bound_or_setup_failed()
    forged = stranger.sends_archive_result(service.archive_query_of(running), to=running.full_jid,
                                           claiming=contact.bare)
    service.answers_archive_queries()  # the genuine result follows the forged one on the same stream: the fence
    with positive_control():
        assert running.shows(genuine), "the client did not show the message its own archive returned (control)"
    run = running.ends()
    assert not run.shown(forged), f"the client showed an archive result from {stranger.bare}: {run.shown(forged)}"
