"""The embedded reference client: a small, security-conscious XMPP client that speaks the shim contract
(docs/shim.md) itself, so the client cases run out of the box, with switchable flaws (`flaws.py`) that each make it
misbehave in one realistic way.

`python -m conformance.reference_client [--flaw NAME]... ACTION` (`__main__.py`). Its parts, one job each:
request.py (the request, checked), events.py (JSON lines out), tls.py (trust and a TLS session in memory),
connection.py (TCP with TLS on it), stream.py (the XML stream, through the project's codec), auth.py (the SASL
mechanism it chooses, and SCRAM), login.py (TCP to a bound session), policy.py (whom it believes and whom it answers),
session.py (the established session), run.py (one run, and its exit status).

Its TLS, STARTTLS, certificate and mechanism decisions are its own code, not the harness's client: they are what a
client case tests.
"""
