"""The role contract: every verb the suite may say, in IMPP terms. An adapter for another protocol family implements
these on its parties and streams (raising `Unsupported` where its protocol has no equivalent); a project test checks
that the suite uses no verb outside this list and that the XMPP adapter implements all of them.
"""

# Authenticated parties: alice (presentity, inbox), bob (watcher, sender), mallory (an authenticated attacker).
PARTY = {
    # identity and presence on the service
    "bare": "the party's address without a device part",
    "full_jid": "the address of the party's current session (device)",
    "resource": "the device part of that address",
    "goes_offline": "publish unavailable presence with a status canary and disconnect",
    "comes_online": "log in again and announce availability (stored messages arrive now)",
    "stays_connected": "the IUT has not ended the party's session (a check)",
    "leaves_security_to_the_service": "reconnect as a client that encrypts only where the service insists",
    # arranging disclosure and delivery permissions
    "requests_subscription_to": "ask to watch another party's presence",
    "approves": "make another party an authorized watcher (the whole handshake)",
    "refuses": "refuse another party's pending request",
    "revokes": "cancel another party's authorization to watch",
    "adds_contact": "put another party into the own contact list, granting nothing",
    "blocks": "block another party (or an address given as text) from messages and presence",
    "unblocks": "lift a block",
    "puts_in_group": "file a contact under a group of the own contact list",
    # reading own state
    "roster": "the own contact list with its subscription states",
    "subscription_to": "the own subscription state towards another party",
    "blocklist": "the own blocklist",
    "archive": "the own stored messages",
    "enables_carbons": "ask for copies of the own traffic on every device",
    # publishing
    "publishes_presence": "publish presence carrying a canary",
    "sends_message": "send a message carrying a canary (optionally claiming another sender)",
    "sends_presence": "publish presence while claiming another identity",
    "publishes_presence_to": "send presence with a canary to one address (e.g. a user of another domain)",
    "sends_subscription_request": "ask to watch someone while claiming another identity",
    "sends_approval": "approve a subscription (unsolicited, or claiming another identity)",
    "sends_cancellation": "cancel a subscription, whatever the relationship",
    "probes": "fetch another party's current presence",
    "publishes_detailed_presence": "publish presence with every kind of content a watcher must see unaltered",
    "sends_detailed_message": "send a message with every kind of content an inbox must see unaltered",
    "replays_own_login": "log in, then replay the recorded authentication exchange on a new connection",
    # observing (checks)
    "receives": "an update is delivered to the party within T_POS",
    "delay_of": "how long an update took to reach the party (None: not within T_POS)",
    "does_not_receive": "nothing disclosing an update reaches the party (ends on a fence)",
    "receives_unavailable_from": "a revocation is followed by unavailable presence",
    "receives_unaltered": "an update arrives with everything its sender put in it unmodified",
    "has_received_once": "an update reached the party exactly once: no replayed or duplicated copy (ends on a fence)",
    # meeting a client IUT on the same service (genuine, or forging what only the service may send)
    "sends_message_asking_receipt": "send a message with a canary to an address, asking for a delivery receipt",
    "acknowledges": "send a delivery receipt for a message id to an address",
    "sends_archive_result": "send a client's session a result for its open archive query, as if from its archive",
    "bounces": "send an error for a message id to an address, as a server does for a message it could not deliver",
    "receipts_from": "the delivery receipts an address returned for a message, within a bound",
    "pushes_roster_item": "send a roster push to a client's session, as if from its own account",
    "sends_carbon_copy": "send a client's session a copy of a message, as if its own account had copied it",
    # attacks on someone else's data
    "reads_watchers_of": "ask for another party's watcher information",
    "changes_permissions_of": "try to grant oneself a place among another party's watchers",
    "unblocks_on_behalf_of": "try to lift a block another party set",
    "grants_itself_subscription_to": "try to write a subscription into the own contact list directly",
    "asks_last_activity_of": "ask when another party was last active",
    "pings": "send a request to an address (e.g. a device of another party)",
    "reads_archive_of": "query another party's stored messages",
    "logs_in_as": "authenticate with own credentials but ask to act as another party",
    "binds_another_session": "log in on a second session with a chosen device name",
    # binding the authentication to the secure channel
    "logs_in_with_channel_binding": "authenticate with proof bound to the own secure channel (optionally over "
                                    "another address, trusting another CA)",
    "logs_in_claiming_no_channel_binding": "authenticate as a client told (by a stripped offer) that the service "
                                           "cannot bind authentication to the channel",
    # published presence beyond status (personal eventing)
    "publishes_pep_item": "publish an item carrying a canary to an own presence node",
    "restricts_node_to_group": "let only one contact group read an own presence node",
    "configures_node": "change an own presence node's settings",
    "node_settings": "an own presence node's settings and affiliations",
    "has_node": "does the own presence node exist",
    "fetches_items_of": "read another party's presence node",
    "publishes_to": "try to publish into another party's presence node",
    "retracts_item_of": "try to delete an item of another party's presence node",
    "changes_publishers_of": "try to change who may publish to another party's presence node",
    "reconfigures_node_of": "try to change another party's presence node settings",
    "creates_node_on": "try to create a node on another party's presence service",
    # sessions that survive a lost connection
    "enables_stream_management": "make the session resumable",
    "loses_connection": "drop the connection without closing the session",
    "resumes_session": "resume the own session on a new connection",
    "resumes_session_after_binding": "try to resume after a fresh session is already bound",
    "resumes_session_of": "try to resume another party's session",
    "acknowledges_more_than_received": "claim to have handled more than the IUT sent",
    "messages_not_recovered": "which of the given messages never reached the party, by any path",
    # abusing the service's XML parser (each on a fresh stream of the party's own; the IUT's reaction is returned)
    "sends_message_through_entities": "declare entities in an internal DTD and send a message that references them",
    "sends_oversized_stanza": "send a stanza one byte over the service's advertised size limit (or a bounded size)",
    "sends_deeply_nested_stanza": "send a stanza whose content nests thousands of levels deep",
    "sends_malformed_input": "send bounded, reproducible malformed input (hypothesis), each sample on a fresh stream",
}

# Streams that never prove an identity (the `unauthenticated` fixture hands them out).
UNAUTHENTICATED = {
    "logs_in_anonymously": "a session granted without credentials (SASL ANONYMOUS), where the service offers it",
    "connect": "a fresh stream, after STARTTLS or (tls=False) in plaintext",
    "listeners": "the service's other client listeners, as the profile declares them",
    "connect_at": "a plaintext stream at another listener, or None where none is served (refused, TLS only)",
    "connect_as_after_sasl": "a stream where a party authenticated but never bound a session",
    "offers_tls": "start TLS on a fresh connection with a chosen offer (highest version, weak suites, "
                  "TLS_FALLBACK_SCSV, deflate) and report the IUT's first answer",
    "resumes_with_early_data": "at each TLS door, resume with TLS 1.3 early data holding a stream header and a "
                               "SASL <auth/>, see what the IUT does with it, and send that first flight again",
}
STREAM = {
    "offer": "what the IUT offered before anything was negotiated",
    "reaction": "how the IUT treated the last thing sent (refusal, answer, silence)",
    "sends_presence": "publish presence claiming an identity",
    "sends_message": "send a message (optionally claiming a sender)",
    "requests_subscription_to": "ask to watch a party, claiming an identity",
    "approves": "approve a subscription, claiming an identity",
    "reads_roster": "ask for a contact list, claiming an identity",
    "changes_permissions_of": "try to change a party's watchers",
    "blocks": "try to change a party's blocklist",
    "binds_resource": "ask for a session without having authenticated",
    "enables_stream_management": "ask for a resumable session without having authenticated",
    "guesses_password_of": "authenticate as a party with a wrong password",
    "does_not_receive": "nothing disclosing an update reaches the stream (ends on a fence)",
}

# A session granted without credentials (SASL ANONYMOUS), from `unauthenticated.logs_in_anonymously()`.
ANONYMOUS = {
    "bare": "the temporary address the service assigned",
    "requests_subscription_to": "ask to watch a party",
    "probes": "ask for a party's current presence",
    "does_not_receive": "nothing disclosing an update reaches the session (ends on a fence)",
}

# The active attacker on the path (the `mitm` fixture); protocol-neutral, it works on bytes and TLS records with
# the little an adapter tells it about where its protocol starts TLS.
ATTACKER = {
    "intercepts": "route a party's connections through the attacker (the party logs in again, through it)",
    "strips_tls_offer": "remove the service's offer of TLS from what reaches the victim",
    "terminates_tls": "answer the victim's TLS with a forged certificate and relay the plaintext to the IUT",
    "flips_a_bit_in_next_record": "flip one bit in the next TLS application-data record the victim sends",
    "listening_at": "the attacker's address, for a victim pointed at it explicitly",
    "tampered": "what the attacker altered",
    "sees_the_iut_close": "seconds until the IUT closed the victim's connection, or None within T_CLOSE",
    "replays_the_session": "send what the victim sent, recorded, again on a fresh connection to the IUT",
}

# The harness as another domain's server (the `remote_server` fixture) and the server-to-server streams it opens.
REMOTE_SERVER = {
    "connects": "open a server-to-server stream to the IUT with a chosen certificate, authenticating (by "
                "certificate, or by a dialback key the harness's authoritative server confirms) or not",
    "awaits_the_iut": "be the remote domain's receiving server for the IUT's own connections (chosen certificate, "
                      "STARTTLS offered or not, authentication confirmed at once or later)",
    "hangs_up": "stop being the receiving server",
    "domain": "the domain the harness plays as an honest peer",
}
PEER_STREAM = {
    "authenticated": "the IUT accepted the stream's proof of its domain",
    "domain": "the domain the stream claims",
    "login": "what happened in TLS and SASL (for messages)",
    "sends_message": "send a message to a local party (from the stream's domain, or a chosen address)",
    "sends_presence": "send directed presence to a local party",
    "requests_subscription_to": "ask to watch a local party",
    "claims_by_dialback": "claim the stream's domain with a server-dialback key no authoritative server confirms, "
                          "and say what the IUT answered",
    "reaction": "how the IUT treated the stream: stream error, close, or nothing within T_CLOSE",
}
RECEIVING_SERVER = {
    "domain": "the remote domain it serves",
    "receives": "an update reaches it over an authenticated stream within T_POS",
    "does_not_receive": "nothing disclosing an update reaches it (at all, or before it confirmed the IUT)",
    "confirms_the_iut": "answer the IUT's pending authentication with success",
    "hangs_up": "stop listening and drop the IUT's connections",
}

# Bounded load on the IUT (the `flood` fixture, IMPP-5.3): each flood runs in the background for the profile's
# `load.duration` at most, while the test's own steps go on in its `with` block, and stops by itself.
FLOOD = {
    "fetches": "an authorized watcher fetches a party's presence information at the profile's rate",
    "opens_connections": "pre-authentication connections (silent, trickling or churning) from the flood's address",
    "spams_subscriptions": "subscription requests to a party from many addresses of another domain",
    "round_trip": "a party's fresh login and a message that arrives, timed; never raises for what the IUT does",
    "bound": "what a legitimate party may wait during a flood (profile load.latency)",
}
# What a running flood (the `as` name of the `with`) tells.
LOAD = {
    "meanwhile": "rounds of the test's own steps while the flood runs",
    "summary": "what the flood sent and what the IUT answered, for the verdict's note",
    "throttled": "whether the IUT restricted the flooder (throttling errors, ending its stream, reading slower)",
    "tally": "what became of a connection flood's connections (opened, refused, ended by the IUT)",
    "requests_delivered": "which of the spam's subscription requests reached the party",
    "sent": "how many subscription requests the spam sent",
}

# The client IUT (the `client` fixture of suite/clients/): runs of its shim against the harness as its service.
CLIENT = {
    "logs_in": "log the client in (through an impostor if given) and end the run once it bound or gave up",
    "starts": "start one of the shim's actions (through an impostor if given) and keep it running",
    "needs": "the shim must offer a feature (receipts, carbons, roster, errors, mam), or the check is UNSUPPORTED",
    "canary": "a fresh canary for what the client is told to send",
    "password": "the account's password, which must never travel in clear",
    "bare": "the account's bare JID on the harness's service",
    "timeouts": "the timers of the client cases",
}
# A client run still going (what `client.starts(...)` returns).
RUNNING_CLIENT = {
    "bound_or_setup_failed": "the client's session address, once bound (ERROR if it never logs in)",
    "is_bound": "the client's session address once bound, or None if it gave up or did not within T_STEP",
    "full_jid": "the client's session address",
    "bare": "the client's account address",
    "sent": "what the client reported sending (kind, id)",
    "synced": "the client reported its archive query ended, within T_POS",
    "shows": "the client showed something carrying a canary, within T_POS",
    "shows_receipt": "the client reported a delivery receipt for a message from a given sender, within T_POS",
    "receipts": "the delivery receipts for a message from a given sender the client reported so far",
    "shows_failure": "the client took an error from a given sender for the failure of a message, within T_POS",
    "failures": "the errors for a message from a given sender the client took so far",
    "ended_by_itself_within": "the client ended its run by itself (gave up, closed) within a bound",
    "ends": "tell the client to disconnect; what it did in the whole run",
}
# A finished client run (what `logs_in` and `ends` return).
CLIENT_RUN = {
    "bound": "the session address the client reported, or None",
    "shown": "what the client showed carrying a canary",
}
# The harness as the client's genuine service (the `service` fixture): what the client's connections carried.
SERVICE = {
    "leaves_tls_to_the_client": "offer STARTTLS without requiring it, for this test",
    "holds_archive_queries": "keep the client's archive queries open until told to answer them",
    "archive_query_of": "the id of the archive query the client sent in a run, within T_POS",
    "answers_archive_queries": "answer the archive queries held open",
    "archives": "arrange an archived message to the client's account that was never delivered live",
    "mechanism_used_by": "the SASL mechanism the client used in a run",
    "mechanisms_offered_to": "the SASL mechanisms the service offered the client in a run",
    "stronger_mechanisms_offered_to": "offered mechanisms stronger than the one the client used",
    "saw_client_send": "the client's streams in a run carried a canary",
    "stanzas_before_session": "presence or messages the client sent before TLS, SASL success and the bind result",
    "delivers_again": "deliver a message to the client once more, unchanged (same stanza-id)",
}
# The attacker between a client IUT and its service (the `impostor` fixture).
IMPOSTOR = {
    "reads_in_clear": "where a passive eavesdropper on the client's link reads given texts, in any encoding",
    "listening_at": "where the client connects to reach the service through the attacker",
    "presents": "answer the client's TLS itself with a certificate of a given kind and a TLS offer (legacy versions, "
                "weak suites, TLS 1.3 taken out of the ClientHello, TLS 1.2 without EMS, tickets allowing 0-RTT), "
                "relaying on",
    "strips_starttls": "remove the service's offer of STARTTLS from what reaches the client",
    "makes_tls_fail": "make every TLS attempt fail (refused, reset, alert, silence after the ClientHello)",
    "tampers_with_server_signature": "alter the SCRAM ServerSignature the service sends the client",
    "flips_a_bit_towards_client": "flip one bit in the next TLS record the service sends the client",
    "marks_records_to_client": "remember where the stream of TLS records to the client stands",
    "records_to_client_since": "the TLS records sent to the client since a mark",
    "replays_to_client": "send recorded TLS records to the client again",
    "tampered": "what the attacker altered",
    "sees_client_close": "seconds until the client closed the connection, or None within T_CLOSE",
    "saw_client_authenticate": "the client sent <auth/> (credentials) to the attacker's TLS",
    "saw_client_ask_for_tls": "the client asked for TLS although it was not offered",
    "saw_client_send_after_success": "the client went on after the SASL success the attacker altered",
    "saw_scram_signature_tampered": "the attacker did alter a ServerSignature (UNSUPPORTED if the client used PLAIN)",
    "client_cleartext_findings": "credentials, stanzas or secrets the client sent outside TLS",
    "saw_client_handshake": "how the client's first TLS handshake with the attacker went (versions offered, the "
                            "attacker's ServerHello, what the client sent after it)",
    "saw_client_handshakes": "the same, for each of the client's connections since the arming",
    "saw_client_send_early_data": "what the client sent as TLS 1.3 early data, decrypted, per connection",
}
