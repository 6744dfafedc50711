"""One end of a TLS session the attacker terminates, held in memory (ssl.MemoryBIO): ciphertext in, plaintext out,
and the reverse. The relay keeps two of these per intercepted connection: as a server towards the victim (with a
certificate of the attacker's choice) and as a client towards the IUT.

Sans-IO: the caller moves the bytes; nothing here touches a socket.
"""

from __future__ import annotations

import ssl

READ = 64 * 1024


class TlsFailed(Exception):
    """The TLS session ended in an error (alert, bad certificate, bad record)."""


class TlsEnded(Exception):
    """The peer closed the TLS session (close_notify)."""


class TlsEnd:
    def __init__(self, context: ssl.SSLContext, *, server_side: bool, server_hostname: str | None = None):
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._in, self._out, server_side=server_side, server_hostname=server_hostname)
        self.established = False
        self._held = bytearray()  # plaintext to send once the handshake is done

    @property
    def version(self) -> str | None:
        return self._tls.version() if self.established else None

    def tls_object(self) -> ssl.SSLObject:
        return self._tls

    def start(self) -> bytes:
        """Begin the handshake; for a client end this yields the ClientHello to send."""
        self._handshake()
        return self._out.read()

    def receive(self, ciphertext: bytes) -> tuple[bytes, bytes]:
        """Take bytes from the peer. Returns (plaintext for the application, bytes to send back to the peer)."""
        self._in.write(ciphertext)
        plaintext = bytearray()
        try:
            if not self.established:
                self._handshake()
                if self.established and self._held:
                    self._tls.write(bytes(self._held))
                    self._held.clear()
            while self.established:
                try:
                    chunk = self._tls.read(READ)
                except ssl.SSLWantReadError:
                    break
                if not chunk:
                    raise TlsEnded("the peer ended the TLS stream")
                plaintext += chunk
        except ssl.SSLZeroReturnError:
            raise TlsEnded("the peer sent close_notify") from None
        except ssl.SSLError as exc:
            raise TlsFailed(exc.reason or str(exc)) from None
        return bytes(plaintext), self._out.read()

    def send(self, plaintext: bytes) -> bytes:
        """Encrypt plaintext for the peer (held back until the handshake completes)."""
        if not self.established:
            self._held += plaintext
            return b""
        try:
            self._tls.write(plaintext)
        except ssl.SSLError as exc:
            raise TlsFailed(exc.reason or str(exc)) from None
        return self._out.read()

    def leftover(self) -> bytes:
        """Bytes still to go to the peer (an alert after a failure, for instance)."""
        return self._out.read()

    def _handshake(self) -> None:
        try:
            self._tls.do_handshake()
            self.established = True
        except ssl.SSLWantReadError:
            pass


class EarlyDataTermination:
    """A server context for terminating the victim's TLS that, unlike Python's ssl, issues TLS 1.3 tickets allowing
    early data and reads it (transport/early_data.py): one per arming, so that a ticket from one of the victim's
    connections resumes on the next. `end()` gives a TlsEnd-like server end for one connection."""

    def __init__(self, certificate_chain: str, private_key: str):
        from conformance.transport.early_data import ServerContext  # OpenSSL through cffi: loaded only when used
        self.context = ServerContext(certificate_chain, private_key)

    def end(self) -> "EarlyDataEnd":
        return EarlyDataEnd(self.context.connection())


class EarlyDataEnd:
    """TlsEnd's interface over an early-data server connection: plaintext that `receive` returns while the end is
    not yet `established` is what the victim sent as 0-RTT early data."""

    def __init__(self, connection):
        self._conn = connection

    @property
    def established(self) -> bool:
        return self._conn.established

    @property
    def version(self) -> str | None:
        return self._conn.version

    def receive(self, ciphertext: bytes) -> tuple[bytes, bytes]:
        from conformance.transport import early_data
        try:
            return self._conn.receive(ciphertext)
        except early_data.TlsEnded as exc:
            raise TlsEnded(str(exc)) from None
        except early_data.TlsFailed as exc:
            raise TlsFailed(str(exc)) from None

    def send(self, plaintext: bytes) -> bytes:
        from conformance.transport import early_data
        try:
            return self._conn.send(plaintext)
        except early_data.TlsFailed as exc:
            raise TlsFailed(str(exc)) from None

    def leftover(self) -> bytes:
        return self._conn.outgoing()
