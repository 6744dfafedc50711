"""Flaw 'client-early-data': the client keeps its TLS 1.3 session from one run to the next and, when the server's
ticket allows it, resumes it with its stream header and initial presence sent as 0-RTT early data, which anyone who
recorded the first flight can replay (RFC 8446 §8) and which goes before the service has proven anything in this
connection. The clean client never does: Python's ssl module has no early data.

Under the flaw the TLS session is OpenSSL's through the cffi bindings (conformance/transport/early_data.py) behind
TlsSession's interface (tls.py), with the same checks: the request's CA only and the service's name; TLS 1.3 only.
Tickets are kept per (host, port, account) in the system's temporary directory, each used once.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from conformance.transport import early_data

from .tls import TlsFailure

TICKETS = Path(tempfile.gettempdir()) / "impp-reference-client-tickets"
_ALERT = re.compile(r"alert (.+)$")  # OpenSSL's reason for a received alert: "tlsv1 alert unknown ca"


def ticket_file(host: str, port: int, account: str) -> Path:
    return TICKETS / hashlib.sha256(f"{host}:{port}:{account}".encode()).hexdigest()[:32]


class EarlyDataTlsSession:
    """A client TLS session in memory, as tls.TlsSession, that resumes with early data when it has a ticket."""

    def __init__(self, ca_file: str, server_hostname: str, tickets: Path, early: bytes):
        try:
            self._context = early_data.ClientContext(server_name=server_hostname, ca_file=ca_file, observe=False)
        except (early_data.EarlyDataUnavailable, early_data.TlsFailed) as exc:
            raise TlsFailure(str(exc), "local") from None
        self._tickets = tickets
        ticket = self._take_ticket()
        self._conn = self._context.connection(ticket=ticket, early_data=early)
        self.sent_early_data = bool(self._conn.early_data)
        self._out = b""
        self._plaintext = bytearray()
        self._started = self._ended = self._saved = False

    def _take_ticket(self) -> early_data.Ticket | None:
        try:
            data = self._tickets.read_bytes()
            self._tickets.unlink()
        except OSError:
            return None
        return early_data.Ticket.from_bytes(self._context, data)

    def _keep_ticket(self) -> None:
        if self._saved or not self._conn.established:
            return
        ticket = self._conn.ticket(early_data_only=True)
        if ticket is None:
            return
        self._saved = True
        try:
            self._tickets.parent.mkdir(mode=0o700, exist_ok=True)
            temporary = self._tickets.with_suffix(f".{os.getpid()}")
            temporary.write_bytes(ticket.to_bytes(self._context))
            temporary.replace(self._tickets)
        except OSError:
            pass  # no ticket kept: the next run makes a full handshake

    def _call(self, step, *args):
        try:
            return step(*args)
        except early_data.TlsEnded:
            self._ended = True
            return (b"", b"") if step == self._conn.receive else b""
        except early_data.TlsFailed as exc:
            self._out += self._conn.outgoing()  # the client's own alert, if OpenSSL wrote one
            raise _failure(str(exc), established=self._conn.established) from None

    @property
    def established(self) -> bool:
        return self._conn.established

    def outgoing(self) -> bytes:
        out, self._out = self._out, b""
        return out

    def handshake(self) -> bool:
        if not self._started:
            self._started = True
            self._out += self._call(self._conn.start)
        return self._conn.established

    def feed(self, ciphertext: bytes) -> None:
        plaintext, reply = self._call(self._conn.receive, ciphertext)
        self._out += reply
        self._plaintext += plaintext
        self._keep_ticket()

    def read(self) -> bytes | None:
        if self._plaintext:
            data, self._plaintext = bytes(self._plaintext), bytearray()
            return data
        return b"" if self._ended else None

    def write(self, plaintext: bytes) -> None:
        self._out += self._call(self._conn.send, plaintext)

    def close_notify(self) -> None:
        self._out += self._conn.close_notify()

    @property
    def version(self) -> str | None:
        return self._conn.version

    @property
    def cipher(self) -> str | None:
        return self._conn.cipher


def _failure(reason: str, *, established: bool) -> TlsFailure:
    if "certificate verify failed" in reason:
        return TlsFailure(reason, "certificate")
    alert = _ALERT.search(reason)
    if alert:
        return TlsFailure(reason, "alert", alert.group(1).strip().replace(" ", "_"))
    return TlsFailure(reason, "record" if established else "local")
