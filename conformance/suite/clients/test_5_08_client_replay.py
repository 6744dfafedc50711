"""§5.8 No replay of presence information, client side: a watcher does not take a recorded TLS record of presence
again."""

from conformance.marks import case
from conformance.verdicts import positive_control


@case("IMPP-5.8-5")
def test_watcher_rejects_a_replayed_presence_record(client, contact, impostor):
    running = client.starts("receive", via=impostor)
    running.bound_or_setup_failed()
    mark = impostor.marks_records_to_client()
    earlier = contact.publishes_presence()
    with positive_control():
        assert running.shows(earlier.canary), "the client did not show its contact's presence (control)"
    recorded = impostor.records_to_client_since(mark)
    current = contact.publishes_presence()
    with positive_control():
        assert running.shows(current.canary), "the client did not show its contact's new presence (control)"
    impostor.replays_to_client(recorded)
    closed = impostor.sees_client_close()
    run = running.ends()
    assert len(run.shown(earlier.canary)) == 1, "the client showed the replayed, superseded presence again"
    assert closed is not None, "the client kept the connection open after a replayed TLS record"
