"""§5.13 No replay of instant messages, client side: the inbox shows a message once, whether its TLS record is
replayed or the service delivers it again with the same stanza-id."""

from conformance.marks import case
from conformance.verdicts import positive_control


@case("IMPP-5.13-2")
def test_inbox_rejects_a_replayed_message_record(client, contact, impostor):
    running = client.starts("receive", via=impostor)
    jid = running.bound_or_setup_failed()
    mark = impostor.marks_records_to_client()
    message = contact.sends_message(jid)
    with positive_control():
        assert running.shows(message.canary), "the client did not show its contact's message (control)"
    impostor.replays_to_client(impostor.records_to_client_since(mark))
    closed = impostor.sees_client_close()
    run = running.ends()
    assert len(run.shown(message.canary)) == 1, "the client showed the replayed message twice"
    assert closed is not None, "the client kept the connection open after a replayed TLS record"


@case("IMPP-5.13-2")
def test_inbox_shows_a_message_delivered_again_with_the_same_stanza_id_once(client, contact, service):
    running = client.starts("receive")
    jid = running.bound_or_setup_failed()
    message = contact.sends_message(jid)
    with positive_control():
        assert running.shows(message.canary), "the client did not show its contact's message (control)"
    service.delivers_again(jid, message.canary)  # as a message archive sync or a resumed stream may
    later = contact.sends_message(jid)
    with positive_control():
        assert running.shows(later.canary), "the client did not show a later message (control, and the fence)"
    run = running.ends()
    assert len(run.shown(message.canary)) == 1, \
        "the client showed a message twice that came again with the same stanza-id (XEP-0359)"


@case("IMPP-5.13-2")
def test_inbox_shows_once_a_message_its_archive_sync_returns_again(client, contact, service):
    client.needs("mam")
    service.holds_archive_queries()  # the client's catch-up query is still open when the message arrives live
    running = client.starts("receive", sync=True)
    jid = running.bound_or_setup_failed()
    service.archive_query_of(running)
    message = contact.sends_message(jid)  # delivered live, and archived with the same stanza-id
    with positive_control():
        assert running.shows(message.canary), "the client did not show its contact's message (control)"
    service.answers_archive_queries()  # the archive now returns that message again
    with positive_control():
        assert running.synced(), "the client never finished its archive query (control, and the fence)"
    run = running.ends()
    assert len(run.shown(message.canary)) == 1, \
        "the client showed a message twice that its archive sync returned again with the same stanza-id (XEP-0359)"
