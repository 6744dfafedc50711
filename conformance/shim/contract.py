"""The shim contract: how the harness drives a client implementation under test (in the manner of BoringSSL's
BoGo shim and h2spec's --exec). A shim is a small program, written against the client library under test, that
the profile names; the harness runs it once per action and judges what the client did on the wire and what the shim
reports. docs/shim.md is the prose version of this module.

Invocation:  <shim command...> ACTION            the request (REQUEST_FIELDS) as one JSON object on the first line of
             standard input. The harness keeps standard input open while it watches the client and closes it when it
             has seen what it needs: at end of file the shim disconnects and exits (`linger` bounds the wait)
Output:      JSON lines on standard output, one object per event (EVENTS), in the order things happened
Exit status: EXIT_CODES; anything else means the shim itself failed (the verdict is ERROR, with its stderr)
"""

from __future__ import annotations

# What the harness may ask. `capabilities` is the preflight: the shim lists the actions and features it implements.
# After its action each one reports what arrives until standard input ends (or `linger` s), then disconnects.
ACTIONS = {
    "capabilities": "print {'event': 'capabilities', 'actions': [...], 'features': [...]} and exit 0; no connection",
    "login": "connect, secure the stream as the library recommends, authenticate, bind, announce availability",
    "send-message": "log in, send a chat message with `body` to `to` (asking for a receipt if `receipt`)",
    "set-presence": "log in, publish available presence with `status`",
    "receive": "log in, announce availability; report every message and presence that arrives",
}

# Optional abilities some cases need; a shim lists those its library has, and a case needing one it lacks is
# UNSUPPORTED for that shim.
FEATURES = {
    "receipts": "asks for XEP-0184 receipts when `receipt` is set, reports those the library accepts (kind=receipt), "
                "and answers receipt requests the way the library does by default",
    "carbons": "enables XEP-0280 message carbons at login and reports the copies the library accepts (kind=carbon)",
    "roster": "keeps the roster and reports each roster push the library applies (kind=roster)",
    "errors": "reports each message error the library takes for the failure of a message it sent (kind=error)",
    "mam": "with `sync`, queries its own message archive (XEP-0313) once the session starts, reports the archived "
           "messages the library accepts (kind=message, archived=true), then `synced`",
}

# The request on standard input. Every field is present; the shim ignores what its action does not need.
REQUEST_FIELDS = {
    "host": "where to connect (the harness's address standing in for the service; never DNS)",
    "port": "TCP port",
    "tls": "'starttls' or 'direct' (XEP-0368)",
    "domain": "the service's domain, the name its certificate must carry",
    "ca_file": "PEM file of the only trust anchor the client may use",
    "jid": "the account's bare JID",
    "password": "its password",
    "resource": "the resource to ask for",
    "to": "addressee of send-message",
    "body": "body of send-message",
    "status": "status text of set-presence",
    "linger": "the most seconds to stay connected after the action when standard input stays open",
    "receipt": "send-message: ask for a XEP-0184 receipt (true/false)",
    "sync": "query the own message archive once the session starts (true/false; feature mam)",
}

# Events on standard output. Each is one JSON object on one line with at least "event"; unknown fields are kept.
EVENTS = {
    "capabilities": "actions: list of ACTIONS keys the shim implements",
    "connected": "the TCP connection is up",
    "secured": "TLS is up (version, cipher if the library tells)",
    "authenticated": "SASL succeeded (mechanism if the library tells)",
    "bound": "the session's full JID (jid)",
    "sent": "what the action sent (kind: message or presence, id if any)",
    "received": "what the library handed the application: kind=message (from, body, id), presence (from, status, "
                "type), receipt (from, id of the acknowledged message), carbon (from of the copied message, body), "
                "roster (jid, name, subscription of an applied push), error (from, id of the failed message, "
                "condition)",
    "synced": "the archive query of `sync` ended",
    "failed": "the client gave up (reason: the library's words, e.g. a certificate error)",
    "closed": "the connection ended (by: client or server)",
}

EXIT_DONE = 0  # the action was carried out
EXIT_REFUSED = 1  # the client gave up (TLS, certificate, authentication): an outcome the harness judges
EXIT_USAGE = 2  # the shim could not understand the request: a harness or shim error
EXIT_UNSUPPORTED = 89  # the client (library) cannot do this action: UNSUPPORTED, never PASS (BoGo's code)

EXIT_CODES = {
    EXIT_DONE: "done: the action was carried out",
    EXIT_REFUSED: "refused: the client gave up (TLS, certificate, authentication)",
    EXIT_USAGE: "usage: the shim did not understand the request",
    EXIT_UNSUPPORTED: "unsupported: the client cannot do this action",
}
