"""Switchable flaws of the reference client: realistic mistakes a real XMPP client library could make.

They exist only to prove that every client-side conformance case can fail. Each flaw names the cases it breaks;
the kill matrix in `tests/` checks that switching it on turns exactly those cases to FAIL, WARN or INFO and changes
no other verdict. The code of a flaw lives next to the behaviour it breaks, guarded by `flawed("client-<name>")`.
"""

from __future__ import annotations

from typing import Callable, Iterable

from conformance.reference.flaws import Flaw  # one shape for the flaws of both references


_FLAWS = [
    # -- TLS and the server's identity: tls.py, login.py
    Flaw("client-any-certificate",
         "accepts any server certificate: no chain or name check",
         ("IMPP-5.2-4",)),
    Flaw("client-starttls-optional",
         "logs in without TLS when the service offers no STARTTLS",
         ("IMPP-T1-3",)),
    Flaw("client-starttls-only-when-required",
         "starts TLS only when the service marks STARTTLS required; offered but optional, it stays in clear",
         ("IMPP-5.1-7",)),
    Flaw("client-plaintext-fallback",
         "after TLS fails (refused, reset, alert, no ServerHello) reconnects once without TLS and logs in in clear",
         ("IMPP-5.7-2",)),
    Flaw("client-legacy-tls",
         "accepts TLS 1.0/1.1 and every cipher suite, SECLEVEL 0",
         ("IMPP-T1-5",)),
    Flaw("client-downgrade-sentinel-ignored",
         "never checks the end of a TLS 1.2 server random for RFC 8446's downgrade sentinel",
         ("IMPP-T1-5",)),
    Flaw("client-tls12-without-ems",
         "takes a TLS 1.2 session without the extended master secret",
         ("IMPP-T1-5",)),
    Flaw("client-tls-errors-ignored",
         "on a TLS error keeps the connection open and silent instead of closing it",
         ("IMPP-T1-8", "IMPP-5.8-5", "IMPP-5.13-2")),
    # -- SASL: auth.py
    Flaw("client-plain-preferred",
         "chooses PLAIN whenever it is offered, even next to SCRAM",
         ("IMPP-5.2-3",)),
    Flaw("client-server-signature-ignored",
         "does not check the SCRAM ServerSignature",
         ("IMPP-5.2-5",)),
    # -- who may tell the client what: policy.py
    Flaw("client-receipts-from-anyone",
         "marks a message delivered on a receipt from anyone",
         ("IMPP-5.2-6",)),
    Flaw("client-errors-from-anyone",
         "marks a message failed on an error stanza from anyone",
         ("IMPP-5.2-6",)),
    Flaw("client-roster-pushes-from-anyone",
         "applies roster pushes from any sender",
         ("IMPP-5.2-7",)),
    Flaw("client-carbons-from-anyone",
         "accepts message carbons from any sender",
         ("IMPP-5.2-7",)),
    Flaw("client-archive-results-from-anyone",
         "takes an archive result carrying its query's id from any sender",
         ("IMPP-5.2-7",)),
    Flaw("client-duplicates-shown",
         "shows a message again when it arrives again with the same stanza-id",
         ("IMPP-5.13-2",)),
    Flaw("client-receipts-to-strangers",
         "answers receipt requests from anyone, not only from contacts allowed to see its presence",
         ("IMPP-5.1-6",)),
    # -- the order of the session's first stanzas: login.py
    Flaw("client-early-data",
         "keeps its TLS 1.3 session between runs and resumes it with its stream header and initial presence as 0-RTT "
         "early data",
         ("IMPP-5.1-1",)),
    Flaw("client-pipelines-presence",
         "sends its initial presence in the same write as the resource-binding request, before the bind result",
         ("IMPP-5.1-1",)),
]

FLAWS: dict[str, Flaw] = {flaw.name: flaw for flaw in _FLAWS}


class UnknownFlaw(ValueError):
    pass


def check(names: Iterable[str]) -> frozenset[str]:
    names = list(names)
    unknown = [n for n in names if n not in FLAWS]
    if unknown:
        raise UnknownFlaw(f"unknown flaw {', '.join(unknown)}; the reference client's flaws are "
                          f"{', '.join(FLAWS)}")
    return frozenset(names)


Flawed = Callable[[str], bool]


def switched_on(names: Iterable[str]) -> Flawed:
    """`flawed(name)`: is this flaw on? A name outside the registry is a bug of the caller, not a silent False."""
    active = check(names)

    def flawed(name: str) -> bool:
        if name not in FLAWS:
            raise KeyError(f"{name!r} is not a flaw of the reference client")
        return name in active
    return flawed


NO_FLAWS: Flawed = switched_on(())
