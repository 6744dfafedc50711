"""TLS for the reference client: the context it trusts, and a TLS session held in memory (ssl.MemoryBIO), so that
the client, not asyncio, decides what happens when TLS fails (a correct client closes; a flawed one may not).

Sans-IO: the caller (connection.py) moves ciphertext between these buffers and the socket.
"""

from __future__ import annotations

import re
import ssl
import warnings

from conformance.transport import hello_bytes

from .flaws import Flawed

READ = 64 * 1024

# What a fatal alert from the server may be called in OpenSSL's reason ("TLSV1_ALERT_INTERNAL_ERROR",
# "SSLV3_ALERT_HANDSHAKE_FAILURE") and the certificate verification error (raised locally, never received).
_ALERT = re.compile(r"(?:SSLV3|TLSV1|TLSV13)_ALERT_([A-Z_]+)")
_SSL_C = re.compile(r"\s*\(_ssl\.c:\d+\)$")


class TlsFailure(Exception):
    """TLS failed. `kind` says whose doing it was:

    * certificate: the client's own check refused the server's certificate (chain, name, dates);
    * alert: the server sent a fatal alert (`alert`: its name, e.g. 'internal_error', 'protocol_version');
    * broken: the connection was reset or closed in the middle of the handshake, or the server never finished it;
    * local: any other error OpenSSL raised here (no version or cipher in common, a malformed record);
    * record: a record of an established session failed its check (tampered with, replayed).
    """

    def __init__(self, reason: str, kind: str, alert: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.alert = alert


def failure(exc: ssl.SSLError, *, established: bool = False) -> TlsFailure:
    """The TlsFailure for an error OpenSSL raised, in OpenSSL's own words (without its source location)."""
    text = _SSL_C.sub("", str(exc))
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TlsFailure(text, "certificate")
    alert = _ALERT.search(exc.reason or "")
    if alert:
        return TlsFailure(text, "alert", alert.group(1).lower())
    if isinstance(exc, ssl.SSLEOFError):
        return TlsFailure(text, "broken")
    return TlsFailure(text, "record" if established else "local")


def client_context(ca_file: str, flawed: Flawed) -> ssl.SSLContext:
    """Trust the request's CA only (never the system's store), insist on the service's name, TLS 1.2 at least,
    OpenSSL's default cipher suites."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname and CERT_REQUIRED, no CA loaded
    context.load_verify_locations(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if flawed("client-legacy-tls"):
        # "Compatibility with every server out there": RFC 8996's deprecated versions and the suites RFC 7525
        # forbids, at OpenSSL's security level 0 so that nothing is refused as too weak.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.TLSv1
        context.set_ciphers("ALL:COMPLEMENTOFALL:@SECLEVEL=0")
    if flawed("client-any-certificate"):
        # A test server's self-signed certificate should "just work": the check that stops an impostor goes too.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class ServerHelloCheck:
    """The client's own look at the server's first record before OpenSSL reads it, for what OpenSSL has no setting:
    a TLS 1.2 session must use the extended master secret (RFC 7627 §5.2 lets a client abort without it; this one
    does, as RFC 9325 §3.5 would have TLS 1.2 used). OpenSSL itself checks the downgrade sentinel."""

    def __init__(self, flawed: Flawed):
        self.flawed = flawed
        self.done = False
        self._held = b""

    def feed(self, data: bytes) -> bytes:
        """What of the server's bytes may go on to OpenSSL now (b"" while the first record is incomplete);
        TlsFailure if the ServerHello is refused."""
        if self.done:
            return data
        self._held += data
        try:
            end = hello_bytes.complete_record(self._held)
            if end is None:
                return b""
            record, rest = self._held[:end], self._held[end:]
            fields = hello_bytes.walk(record)
        except hello_bytes.NotAHello:  # an alert, or a hello OpenSSL will refuse on its own
            self.done = True
            return self._held
        self.done = True
        if fields.msg_type == hello_bytes.SERVER_HELLO:
            if self.flawed("client-downgrade-sentinel-ignored"):
                # A TLS stack that never looks at the end of the server's random, modelled by showing OpenSSL a
                # random without the sentinel. (OpenSSL then finds the ServerKeyExchange signed over another random
                # and aborts with decrypt_error: a client that never checks would go on to its ClientKeyExchange.)
                record = hello_bytes.hide_downgrade_sentinel(record)
            if hello_bytes.chosen_version(record, fields) == hello_bytes.TLS12 \
                    and hello_bytes.EXTENDED_MASTER_SECRET not in fields.extensions \
                    and not self.flawed("client-tls12-without-ems"):
                raise TlsFailure("the server chose TLS 1.2 without the extended master secret (RFC 7627)", "local",
                                 alert="handshake_failure")
        return record + rest


# A fatal handshake_failure alert in clear (no keys yet): how the client refuses a ServerHello itself
_HANDSHAKE_FAILURE = bytes.fromhex("15030300020228")


class TlsSession:
    """A client TLS session in memory: `incoming` takes the server's ciphertext, `outgoing()` gives what to send."""

    def __init__(self, context: ssl.SSLContext, server_hostname: str, check: ServerHelloCheck | None = None):
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._in, self._out, server_side=False, server_hostname=server_hostname)
        self._check = check
        self.established = False

    def outgoing(self) -> bytes:
        return self._out.read()

    def handshake(self) -> bool:
        """One step of the handshake: True once it is done, False while it needs more from the server."""
        try:
            self._tls.do_handshake()
        except ssl.SSLWantReadError:
            return False
        except ssl.SSLError as exc:
            raise failure(exc) from None
        self.established = True
        return True

    def feed(self, ciphertext: bytes) -> None:
        if self._check is not None and not self._check.done:
            try:
                ciphertext = self._check.feed(ciphertext)
            except TlsFailure:
                self._out.write(_HANDSHAKE_FAILURE)
                raise
        self._in.write(ciphertext)

    def read(self) -> bytes | None:
        """Plaintext from the records received so far: None when more ciphertext is needed, b"" when the server
        ended TLS (close_notify); TlsFailure when a record fails."""
        try:
            data = self._tls.read(READ)
        except ssl.SSLWantReadError:
            return None
        except ssl.SSLZeroReturnError:
            return b""
        except ssl.SSLError as exc:
            raise failure(exc, established=True) from None
        return data

    def write(self, plaintext: bytes) -> None:
        try:
            self._tls.write(plaintext)
        except ssl.SSLError as exc:
            raise failure(exc, established=True) from None

    def close_notify(self) -> None:
        try:
            self._tls.unwrap()
        except (ssl.SSLError, ValueError):
            pass  # waiting for the server's close_notify, or TLS already failed: ours is in outgoing() if at all

    @property
    def version(self) -> str | None:
        return self._tls.version()

    @property
    def cipher(self) -> str | None:
        cipher = self._tls.cipher()
        return cipher[0] if cipher else None
