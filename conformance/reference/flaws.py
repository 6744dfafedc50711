"""Switchable flaws of the reference service: realistic mistakes a real server could make.

They exist only to prove that every conformance case can fail. Each flaw names the cases it breaks; the kill
matrix in `tests/` checks that switching it on turns exactly those cases to FAIL or WARN and changes no other
verdict. The code of a flaw lives next to the behaviour it breaks, guarded by `service.flawed("<name>")`.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Flaw:
    name: str
    summary: str
    breaks: tuple[str, ...]


_FLAWS = [
    Flaw("presence-to-pending-subscribers",
         "broadcasts presence to contacts whose subscription request is still pending",
         ("IMPP-5.1-2", "IMPP-5.5-1", "IMPP-5.5-2", "IMPP-5.9-1")),
    Flaw("presence-ignores-blocklist",
         "applies XEP-0191 blocks to messages only: presence still flows to blocked contacts",
         ("IMPP-5.1-2", "IMPP-5.5-2", "IMPP-5.5-3", "IMPP-5.5-4")),
    Flaw("probe-answers-anyone",
         "answers presence probes from any local user, subscribed or not",
         ("IMPP-5.1-3", "IMPP-5.4-2", "IMPP-5.9-1")),
    Flaw("last-activity-leaks",
         "answers XEP-0012 last-activity queries from users not authorized to see presence",
         ("IMPP-5.1-3",)),
    Flaw("absent-resource-distinct-error",
         "answers an IQ to an absent resource with <recipient-unavailable/>, so strangers can tell who is online",
         ("IMPP-5.1-3",)),
    Flaw("tls-errors-ignored",
         "swallows TLS errors (a record failing its integrity check, a replayed handshake) and leaves the "
         "connection open and silent instead of closing it",
         ("IMPP-5.8-1", "IMPP-T1-7")),
    Flaw("early-data-acted-on",
         "takes TLS 1.3 early data (0-RTT) on its direct-TLS port and acts on it before the handshake completes, "
         "with single-use tickets off, so a recorded ClientHello replayed later is served again",
         ("IMPP-5.8-4",)),
    Flaw("plaintext-side-door",
         "its second client port is a legacy plaintext port: STARTTLS offered but not required, SASL PLAIN and "
         "stanzas taken in clear",
         ("IMPP-5.7-1",)),
    Flaw("starttls-optional",
         "offers STARTTLS without requiring it, and SASL (PLAIN included) on the plaintext stream",
         ("IMPP-5.1-7", "IMPP-T1-4")),
    Flaw("presence-extensions-dropped",
         "rebuilds broadcast presence from show, status and priority, dropping every other element",
         ("IMPP-5.7-3",)),
    Flaw("long-bodies-truncated",
         "cuts message bodies to 4096 characters",
         ("IMPP-5.12-1",)),
    Flaw("scram-nonce-reused",
         "derives the SCRAM server nonce from the user name, so a recorded login verifies again",
         ("IMPP-5.8-2",)),
    Flaw("roster-readable-by-others",
         "answers a roster get addressed to another user's bare JID with that user's roster",
         ("IMPP-5.1-4",)),
    Flaw("authzid-honoured",
         "offers PLAIN next to SCRAM and lets a PLAIN login act as whatever authorization identity it asks for",
         ("IMPP-5.1-5", "IMPP-5.8-2")),
    Flaw("anonymous-bind",
         "binds a resource for a stream that never authenticated, under a made-up anonymous JID",
         ("IMPP-5.2-1", "IMPP-5.4-1")),
    Flaw("unauthenticated-stanzas-routed",
         "routes stanzas received before authentication, trusting the 'from' they claim",
         ("IMPP-5.2-1", "IMPP-5.5-1", "IMPP-T1-4")),
    Flaw("unlimited-auth-retries",
         "allows failed SASL attempts without limit on one stream",
         ("IMPP-5.2-1",)),
    Flaw("trusts-client-from",
         "keeps the 'from' address a client put on its stanzas instead of stamping the authenticated JID",
         ("IMPP-5.2-2", "IMPP-5.5-2")),
    Flaw("stanza-before-bind-routed",
         "routes stanzas sent after SASL but before resource binding",
         ("IMPP-5.4-1",)),
    Flaw("revocation-keeps-subscription",
         "routes an outbound 'unsubscribed' but leaves the contact's 'from' subscription in the roster",
         ("IMPP-5.5-4", "IMPP-5.4-2")),
    Flaw("unsolicited-subscribed-accepted",
         "routes a 'subscribed' nobody asked for, and lets it grant a subscription to the recipient",
         ("IMPP-5.4-3",)),
    Flaw("roster-writable-by-others",
         "applies a roster set addressed to another user's bare JID to that user's roster",
         ("IMPP-5.5-2",)),
    Flaw("roster-set-honours-subscription",
         "takes the 'subscription' and 'approved' attributes of a client's roster set at face value",
         ("IMPP-5.5-3",)),
    Flaw("blocklist-not-persisted",
         "keeps XEP-0191 blocklists in memory only, so a restart forgets them",
         ("IMPP-5.5-3", "IMPP-5.10-3")),
    Flaw("blocklist-writable-by-others",
         "dispatches block/unblock commands to whichever account the 'to' names, before checking who asks",
         ("IMPP-5.5-2", "IMPP-5.10-1")),
    Flaw("blocked-offline-delivered",
         "checks the blocklist only for live delivery: a blocked sender's message to an offline user is stored",
         ("IMPP-5.10-2",)),
    Flaw("blocked-messages-archived",
         "archives incoming messages (XEP-0313) before applying the blocklist",
         ("IMPP-5.10-2",)),
    Flaw("blocklist-not-normalized",
         "compares blocklist entries with sender JIDs as raw strings, without RFC 7622 normalisation",
         ("IMPP-5.10-3",)),
    Flaw("mam-readable-by-others",
         "answers a XEP-0313 query addressed to another user's bare JID from that user's archive",
         ("IMPP-5.11-1",)),
    Flaw("carbons-across-accounts",
         "sends XEP-0280 message carbons to every carbons-enabled session, not only the owner's",
         ("IMPP-5.11-1",)),
    Flaw("resource-conflict-across-accounts",
         "treats a resource name as taken across accounts: binding it disconnects another user's session",
         ("IMPP-5.11-2",)),
    # -- PEP (XEP-0163 on XEP-0060), reference/pep.py
    Flaw("pep-ignores-roster-groups",
         "checks a PEP node with the 'roster' access model like one with 'presence': any subscribed contact may "
         "retrieve its items, whatever their roster group",
         ("IMPP-5.5-5",)),
    Flaw("pep-vague-access-errors",
         "refuses a PEP item retrieval with a bare <forbidden/>, without the <not-authorized/> and pubsub condition "
         "that say why (XEP-0060 §6.5.9)",
         ("IMPP-5.5-5",)),
    Flaw("pep-owner-operations-unchecked",
         "answers pubsub#owner requests (configuration, affiliations) and node creation addressed to another "
         "user's PEP service as if its owner had asked",
         ("IMPP-5.6-1",)),
    Flaw("pep-publish-by-anyone",
         "checks publish rights only when a publish creates a node: anyone may publish to, and overwrite items of, "
         "another user's existing PEP node",
         ("IMPP-5.6-2", "IMPP-5.6-3")),
    Flaw("pep-retract-by-anyone",
         "checks the publisher's rights on publish but not on retract: anyone may retract items of another user's "
         "PEP node",
         ("IMPP-5.6-3",)),
    Flaw("pep-config-not-persisted",
         "applies PEP node configuration changes in memory only: a restart brings back the configuration the node "
         "was created with",
         ("IMPP-5.6-3",)),
    # -- stream management (XEP-0198), reference/sm.py
    Flaw("sm-resume-any-session",
         "resumes a stream-management session by its SM-ID alone, without checking that the resuming user owns it",
         ("IMPP-5.1-5", "IMPP-5.11-2")),
    Flaw("sm-enable-before-bind",
         "answers <enable/> with <enabled/> in any stream state, before authentication and resource binding",
         ("IMPP-5.4-1",)),
    Flaw("sm-resume-after-bind",
         "accepts <resume/> on a stream that has already bound a resource, moving the old session onto it",
         ("IMPP-5.4-1",)),
    Flaw("sm-trusts-acknowledgements",
         "believes an acknowledgement of more stanzas than were sent: no <handled-count-too-high/>, and the "
         "unacknowledged stanzas are dropped as delivered",
         ("IMPP-5.4-2",)),
    Flaw("sm-unacked-discarded",
         "drops the stanzas a client never acknowledged when its stream-management session ends, instead of "
         "storing them offline",
         ("IMPP-5.4-2",)),
    Flaw("offline-to-announced-identity",
         "pushes stored messages to a stream as soon as its header announces the owner's address ('from'), before "
         "SASL has proved it",
         ("IMPP-5.14-1",)),
    # -- SCRAM channel binding (RFC 5802 §6), reference/c2s.py
    Flaw("channel-binding-ignored",
         "offers SCRAM-*-PLUS but does not compare the client's channel-binding data with its own TLS channel: it "
         "takes the data the client sent for its own",
         ("IMPP-T1-1",)),
    Flaw("channel-binding-downgrade-accepted",
         "accepts a 'y' GS2 flag (the client believes the service lacks channel binding) although it offers "
         "SCRAM-*-PLUS: channel binding is wired into the -PLUS mechanisms only",
         ("IMPP-T1-2",)),
    # -- TLS settings, reference/service.py
    Flaw("legacy-tls-accepted",
         "accepts TLS 1.0 and 1.1 and anonymous/NULL cipher suites: minimum version and security level lowered",
         ("IMPP-T1-6",)),
    # -- inbound server-to-server (RFC 6120, XEP-0178), reference/s2s.py
    Flaw("s2s-unauthenticated-stanzas-accepted",
         "routes stanzas from a peer server that completed STARTTLS but never authenticated, believing the domain "
         "its stream header claims (so an impostor whose certificate earned no EXTERNAL offer is routed too)",
         ("IMPP-2-2", "IMPP-2-4")),
    Flaw("dialback-unverified-accepted",
         "takes a server-dialback key as proof of the claimed domain without asking that domain's server to "
         "verify it",
         ("IMPP-2-1",)),
    Flaw("s2s-from-not-checked",
         "lets a peer server authenticated for one domain send stanzas from any domain, this service's own included",
         ("IMPP-2-3",)),
    Flaw("s2s-any-certificate-accepted",
         "takes any TLS client certificate its CA issued, expired or for another domain, as proof of whatever "
         "domain the peer claims, and offers and grants SASL EXTERNAL on it",
         ("IMPP-2-4",)),
    # -- outbound server-to-server (RFC 6120, XEP-0178), reference/s2s_out.py
    Flaw("s2s-out-plaintext",
         "connects to a remote domain's server that offers no STARTTLS anyway, and sends it presence and messages "
         "in clear, on a stream that never authenticated",
         ("IMPP-5.9-2", "IMPP-5.14-2")),
    Flaw("s2s-out-certificate-unchecked",
         "does not verify the remote server's TLS certificate (neither its issuer, nor its validity, nor that it "
         "names the remote domain) before sending it presence and messages",
         ("IMPP-2-5",)),
    Flaw("s2s-out-before-authentication",
         "waits only a moment for the remote server to confirm its SASL EXTERNAL, then sends the queued presence "
         "and messages over the still unauthenticated stream",
         ("IMPP-5.9-1", "IMPP-5.14-1")),
    Flaw("dialback-verification-ignored",
         "asks the claimed domain's authoritative server about a dialback key, but takes any answer, 'invalid' "
         "included, as confirmation",
         ("IMPP-2-1",)),
    # -- denial of service under load (IMPP-5.3) --
    Flaw("fetch-flood-unthrottled",
         "answers every presence fetch (last-activity query, probe) at once, however fast a watcher sends them, "
         "each from a blocking lookup that holds up everything else, subscribers' presence included",
         ("IMPP-5.3-1",)),
    Flaw("preauth-connections-unlimited",
         "caps connections only in all, not unauthenticated ones per address: one address's idle connections "
         "take every place",
         ("IMPP-5.3-2",)),
    Flaw("subscription-requests-unbounded",
         "keeps and delivers every subscription request, however many wait for the user already",
         ("IMPP-5.3-4",)),
    # -- parser and size abuse (RFC 6120 §11.1, §13.12), reference/c2s.py and the shared XML codec
    Flaw("entities-expanded",
         "parses client streams with an XML library's defaults: a document type declaration is taken and the "
         "entities of its internal subset are expanded instead of closing the stream with <restricted-xml/>",
         ("IMPP-5.3-3",)),
    Flaw("stanza-size-unlimited",
         "enforces no maximum stanza size (and advertises none): a client may make it buffer, parse and route a "
         "stanza of any size",
         ("IMPP-5.3-3",)),
    Flaw("nesting-depth-unlimited",
         "sets no bound on XML nesting depth: a stanza nested 10 000 levels deep is parsed in full and processed",
         ("IMPP-5.3-3",)),
]

FLAWS: dict[str, Flaw] = {flaw.name: flaw for flaw in _FLAWS}


class UnknownFlaw(ValueError):
    pass


def check(names: list[str] | tuple[str, ...]) -> frozenset[str]:
    unknown = [n for n in names if n not in FLAWS]
    if unknown:
        raise UnknownFlaw(f"unknown flaw {', '.join(unknown)}; `impp-conformance flaws` lists them")
    return frozenset(names)
