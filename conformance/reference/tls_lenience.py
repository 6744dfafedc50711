"""Flaw 'tls-errors-ignored': what a server does that catches TLS errors (a record that fails its MAC or AEAD
check, a handshake whose Finished does not verify) and carries on, instead of closing the connection: the
connection stays open and silent until the client goes away.

asyncio closes the transport on any fatal TLS error; this flaw replaces that, for the flawed process only.
"""

from __future__ import annotations

from asyncio import sslproto


def swallow_tls_errors(log) -> None:
    def _fatal_error(self, exc, message="Fatal error on transport"):
        log(f"TLS error ignored (flaw tls-errors-ignored): {exc!r}")
        self._state = sslproto.SSLProtocolState.UNWRAPPED  # nothing more is decrypted, nothing is closed

    sslproto.SSLProtocol._fatal_error = _fatal_error


class HandshakeFailureKeptOpen:
    """asyncio's start_tls closes the socket when the handshake fails; under the flaw the socket's close is
    suppressed for the duration of the handshake, and restored once it succeeded."""

    def __init__(self, transport):
        self.transport = transport

    def __enter__(self):
        self.transport.close = lambda: None
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            del self.transport.close
        return False
