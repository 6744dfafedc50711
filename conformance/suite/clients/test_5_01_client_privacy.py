"""§5.1 Privacy, client side: what the client discloses, and to whom: presence and messages only inside an
established, authenticated session; delivery receipts only to those allowed to see its presence."""

from conformance.marks import case
from conformance.verdicts import note, positive_control


@case("IMPP-5.1-1")
def test_client_sends_presence_and_messages_only_inside_an_established_session(client, contact, service):
    body = client.canary("msg")
    running = client.starts("send-message", to=contact.bare, body=body)
    running.bound_or_setup_failed()
    assert running.sent("message"), "the client did not report sending its message"
    run = running.ends()
    with positive_control():
        assert service.saw_client_send(run, body), "the service never received the client's message (control)"
    early = service.stanzas_before_session(run)
    assert not early, f"the client sent {early[0]} before its session was established (TLS, SASL, bind result)"


@case("IMPP-5.1-1")
def test_client_sends_no_presence_or_message_as_tls13_early_data(client, service, impostor):
    impostor.presents("genuine", tls="tls-1.3-early-data")  # its tickets allow 0-RTT: a resuming client may send it
    statuses = client.canary("status"), client.canary("status")
    running = client.starts("set-presence", via=impostor, status=statuses[0])
    running.bound_or_setup_failed()
    sent = running.sent("presence")
    run = running.ends()
    with positive_control():
        assert sent and service.saw_client_send(run, statuses[0]), "the service never received the client's presence"
    again = client.starts("set-presence", via=impostor, status=statuses[1])  # may resume the first TLS session
    again.is_bound()
    again.ends()
    early = impostor.saw_client_send_early_data()
    leaks = [f"{what} in {len(data)} bytes of early data on {label}" for label, data in early
             for what in ("<presence", "<message", *statuses) if what.encode() in data]
    resumed = [seen.resumption_offered for seen in impostor.saw_client_handshakes()]
    note(f"the attacker's tickets allow 0-RTT; of the client's {len(resumed)} connections {sum(resumed)} offered to "
         f"resume a session and {len(early)} carried early data")
    assert not leaks, f"the client sent presence as TLS 1.3 early data, replayable by anyone: {leaks[0]}"


@case("IMPP-5.1-6")
def test_inbox_returns_receipts_only_to_senders_allowed_to_see_its_presence(client, contact, stranger):
    client.needs("receipts")
    running = client.starts("receive")
    jid = running.bound_or_setup_failed()
    asked_by_contact = contact.sends_message_asking_receipt(jid)
    asked_by_stranger = stranger.sends_message_asking_receipt(jid)
    with positive_control():
        assert running.shows(asked_by_contact.canary) and running.shows(asked_by_stranger.canary), \
            "the client did not show both messages (control)"
    to_contact = contact.receipts_from(running.bare, asked_by_contact, within=client.timeouts.positive)
    to_stranger = stranger.receipts_from(running.bare, asked_by_stranger, within=client.timeouts.negative)
    running.ends()
    note(f"receipts: to the contact {'yes' if to_contact else 'no'}, to the stranger {'yes' if to_stranger else 'no'}")
    assert not to_stranger, f"the client told a stranger ({stranger.bare}) that it received a message"


@case("IMPP-5.1-7")
def test_a_passive_eavesdropper_on_the_clients_link_learns_nothing(client, contact, service, impostor):
    service.leaves_tls_to_the_client()  # STARTTLS offered, not required: only the client's policy keeps TLS
    status, body = client.canary("status"), client.canary("msg")
    for action, fields, secret in (("set-presence", {"status": status}, status),
                                   ("send-message", {"to": contact.bare, "body": body}, body)):
        running = client.starts(action, via=impostor, **fields)
        running.bound_or_setup_failed()
        sent = running.sent("presence" if action == "set-presence" else "message")
        run = running.ends()
        with positive_control():
            assert sent and service.saw_client_send(run, secret), f"the service never received the client's {action}"
    hits = impostor.reads_in_clear(status, body)
    assert not hits, f"a passive eavesdropper on the client's link reads in clear: {'; '.join(hits[:3])}"
