"""TLS 1.3 resumption with 0-RTT early data (RFC 8446 §2.3, §4.2.10), both ends, held in memory (sans-IO).

Python's ssl module can neither send nor accept early data, nor say what a session ticket allows, so this drives
OpenSSL itself through the cffi bindings the `cryptography` package ships (the ones pyOpenSSL is built on):
SSL_write_early_data, SSL_read_early_data, SSL_CTX_set_max_early_data, with memory BIOs as the transport.

What the peer said about early data is read from its own handshake messages, as OpenSSL's message callback hands
them over decrypted, and parsed with scapy's TLS layers: the `early_data` extension (type 42) of a NewSessionTicket
(with its max_early_data_size) and of EncryptedExtensions (the server took the early data), and `pre_shared_key`
(type 41) in the ServerHello (the server resumed the session).

* `ClientContext` / `ClientConnection`: the harness resuming with early data. `start()` gives the first flight
  (ClientHello, then the early data records); `receive()` can hold back the client's Finished, so a test can see
  what the server sends before the handshake is complete ("0.5-RTT" data, RFC 8446 §4.6.1 footnote).
* `ServerContext` / `ServerConnection`: a server that takes early data and hands it to its application at once
  (the reference service's flaw that proves the early-data case can fail; the impostor a client under test meets,
  whose tickets allow early data).

The reference client's flaw 'client-early-data' resumes through `ClientContext` too, with its certificate checks,
and keeps its ticket between runs (`Ticket.to_bytes` / `from_bytes`).

Nothing here touches a socket or knows an application protocol.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from .hello_bytes import EARLY_DATA, PRE_SHARED_KEY

MAX_EARLY_DATA = 16384  # what the server end offers in its tickets (OpenSSL's own default when it is enabled)
READ = 64 * 1024
HANDSHAKE, NEW_SESSION_TICKET, ENCRYPTED_EXTENSIONS, SERVER_HELLO = 22, 4, 8, 2
SSL_OP_NO_ANTI_REPLAY = 1 << 24  # OpenSSL 3: single-use tickets off (ssl.h, SSL_OP_BIT(24))
READ_EARLY_ERROR, READ_EARLY_SUCCESS, READ_EARLY_FINISH = 0, 1, 2  # SSL_read_early_data's results (ssl.h)
NEEDED = ("SSL_write_early_data", "SSL_read_early_data", "SSL_CTX_set_max_early_data",
          "SSL_SESSION_get_max_early_data", "SSL_CTX_set_msg_callback")


class EarlyDataUnavailable(Exception):
    """The installed cryptography package does not expose OpenSSL's early-data functions."""


class TlsFailed(Exception):
    """The TLS session ended in an error (an alert, a bad record)."""


class TlsEnded(Exception):
    """The peer closed the TLS session."""


def _bindings():
    try:
        from cryptography.hazmat.bindings.openssl.binding import Binding
    except ImportError as exc:  # pragma: no cover - cryptography is a dependency
        raise EarlyDataUnavailable(f"no OpenSSL bindings: {exc}") from None
    binding = Binding()
    missing = [name for name in NEEDED if not hasattr(binding.lib, name)]
    if missing:
        raise EarlyDataUnavailable(f"this cryptography package's OpenSSL bindings lack {', '.join(missing)}")
    return binding.ffi, binding.lib


@dataclasses.dataclass
class Seen:
    """What the peer's handshake messages said, as they arrived."""

    tickets: list[int] = dataclasses.field(default_factory=list)  # max_early_data_size of each ticket (0: none)
    early_data_accepted: bool | None = None  # EncryptedExtensions carried early_data (None: none seen yet)
    psk_accepted: bool | None = None  # the ServerHello carried pre_shared_key

    def handshake_message(self, message: bytes) -> None:
        kind = message[0] if message else None
        if kind not in (NEW_SESSION_TICKET, ENCRYPTED_EXTENSIONS, SERVER_HELLO):
            return
        from scapy.layers.tls.handshake import TLS13NewSessionTicket, TLSEncryptedExtensions, TLSServerHello
        try:
            if kind == NEW_SESSION_TICKET:
                offered = 0
                for extension in TLS13NewSessionTicket(message).ext or []:
                    if extension.type == EARLY_DATA:
                        offered = int(getattr(extension, "max_early_data_size", 0) or 0)
                self.tickets.append(offered)
            elif kind == ENCRYPTED_EXTENSIONS:
                types = {e.type for e in TLSEncryptedExtensions(message).ext or []}
                self.early_data_accepted = EARLY_DATA in types
            elif kind == SERVER_HELLO:
                types = {e.type for e in TLSServerHello(message).ext or []}
                self.psk_accepted = PRE_SHARED_KEY in types
        except Exception:  # a message scapy cannot parse says nothing; OpenSSL has judged it already
            pass


class _Context:
    """An SSL_CTX, and the message callback that routes each connection's handshake messages to its `Seen`."""

    def __init__(self, *, server: bool, observe: bool = True):
        self.ffi, self.lib = _bindings()
        lib = self.lib
        method = lib.TLS_server_method() if server else lib.TLS_client_method()
        self.ctx = self.ffi.gc(lib.SSL_CTX_new(method), lib.SSL_CTX_free)
        if self.ctx == self.ffi.NULL:
            raise TlsFailed("SSL_CTX_new failed")
        lib.SSL_CTX_set_min_proto_version(self.ctx, lib.TLS1_3_VERSION)  # early data exists in TLS 1.3 only
        self._seen: dict[int, Seen] = {}
        if server or not observe:
            return  # a server end has no use for what its clients say about early data

        def on_message(write_p, _version, content_type, buf, length, ssl, _arg):
            seen = self._seen.get(int(self.ffi.cast("uintptr_t", ssl)))
            if seen is not None and not write_p and content_type == HANDSHAKE:
                seen.handshake_message(bytes(self.ffi.buffer(buf, length)))

        # kept as an attribute: cffi frees a callback whose Python object is collected
        self._callback = self.ffi.callback("void(int, int, int, void *, size_t, SSL *, void *)", on_message)
        lib.SSL_CTX_set_msg_callback(self.ctx, self._callback)

    def _new_ssl(self, seen: Seen):
        ffi, lib = self.ffi, self.lib

        def free(ssl) -> None:
            # Freed without a shutdown, OpenSSL would mark the connection's session "not resumable" (it takes an
            # unclosed connection for a failed one), and the harness's ticket with it.
            lib.SSL_set_shutdown(ssl, lib.SSL_SENT_SHUTDOWN | lib.SSL_RECEIVED_SHUTDOWN)
            lib.SSL_free(ssl)

        ssl = ffi.gc(lib.SSL_new(self.ctx), free)
        incoming, outgoing = lib.BIO_new(lib.BIO_s_mem()), lib.BIO_new(lib.BIO_s_mem())
        lib.SSL_set_bio(ssl, incoming, outgoing)  # the SSL owns both BIOs from here on
        self._seen[int(ffi.cast("uintptr_t", ssl))] = seen
        return ssl, incoming, outgoing

    def _forget(self, ssl) -> None:
        self._seen.pop(int(self.ffi.cast("uintptr_t", ssl)), None)


class _Connection:
    def __init__(self, context: _Context):
        self._context = context
        self.ffi, self.lib = context.ffi, context.lib
        self.seen = Seen()
        self.ssl, self._in, self._out = context._new_ssl(self.seen)
        self.established = False
        self._buffer = self.ffi.new("char[]", READ)
        self._held = bytearray()  # plaintext to send once the handshake allows it

    def __del__(self):
        context = getattr(self, "_context", None)
        if context is not None:
            context._forget(self.ssl)

    def _feed(self, data: bytes) -> None:
        if data:
            self.lib.BIO_write(self._in, data, len(data))

    def _drain(self) -> bytes:
        out = bytearray()
        while True:
            n = self.lib.BIO_read(self._out, self._buffer, READ)
            if n <= 0:
                return bytes(out)
            out += self.ffi.buffer(self._buffer, n)

    def outgoing(self) -> bytes:
        """What OpenSSL has for the peer and no call returned yet (an alert after a failure, for instance)."""
        return self._drain()

    def _error(self, result: int, doing: str) -> None:
        """Raise for a failed call, unless OpenSSL only wants more input."""
        lib = self.lib
        code = lib.SSL_get_error(self.ssl, result)
        if code in (lib.SSL_ERROR_WANT_READ, lib.SSL_ERROR_WANT_WRITE):
            return
        if code == lib.SSL_ERROR_ZERO_RETURN:
            raise TlsEnded("the peer sent close_notify")
        reason = lib.ERR_get_error()
        text = lib.ERR_reason_error_string(reason) if reason else self.ffi.NULL
        lib.ERR_clear_error()
        detail = self.ffi.string(text).decode("ascii", "replace") if text != self.ffi.NULL else f"error {code}"
        raise TlsFailed(f"{doing}: {detail}")

    def _handshake(self) -> None:
        result = self.lib.SSL_do_handshake(self.ssl)
        if result == 1:
            self.established = True
        else:
            self._error(result, "handshake")

    def _read_plaintext(self) -> bytes:
        plaintext = bytearray()
        while self.established:
            n = self.lib.SSL_read(self.ssl, self._buffer, READ)
            if n <= 0:
                self._error(n, "read")
                break
            plaintext += self.ffi.buffer(self._buffer, n)
        return bytes(plaintext)

    def _write(self, plaintext: bytes) -> None:
        if plaintext and self.lib.SSL_write(self.ssl, plaintext, len(plaintext)) <= 0:
            raise TlsFailed("write failed")

    def send(self, plaintext: bytes) -> bytes:
        """Encrypt plaintext for the peer (held back until the handshake allows it)."""
        if not self.established:
            self._held += plaintext
            return b""
        self._write(plaintext)
        return self._drain()

    @property
    def resumed(self) -> bool:
        return bool(self.lib.SSL_session_reused(self.ssl))

    @property
    def version(self) -> str | None:
        return self.ffi.string(self.lib.SSL_get_version(self.ssl)).decode() if self.established else None

    @property
    def cipher(self) -> str | None:
        cipher = self.lib.SSL_get_current_cipher(self.ssl)
        return self.ffi.string(self.lib.SSL_CIPHER_get_name(cipher)).decode() if cipher != self.ffi.NULL else None

    def close_notify(self) -> bytes:
        """End TLS with a close_notify; returns it to send."""
        self.lib.SSL_shutdown(self.ssl)
        self.lib.ERR_clear_error()
        return self._drain()


# -- the client: resuming with early data ---------------------------------------------------------------------------

class Ticket:
    """A session the server gave (SSL_SESSION), to resume with."""

    def __init__(self, context: _Context, session):
        self.session = context.ffi.gc(session, context.lib.SSL_SESSION_free)
        self.max_early_data = int(context.lib.SSL_SESSION_get_max_early_data(self.session))

    def to_bytes(self, context: _Context) -> bytes:
        """The session in OpenSSL's DER form (i2d_SSL_SESSION), to keep it beyond this process."""
        ffi, lib = context.ffi, context.lib
        length = lib.i2d_SSL_SESSION(self.session, ffi.NULL)
        buffer = ffi.new("unsigned char[]", length)
        cursor = ffi.new("unsigned char **", buffer)
        lib.i2d_SSL_SESSION(self.session, cursor)
        return bytes(ffi.buffer(buffer, length))

    @classmethod
    def from_bytes(cls, context: _Context, data: bytes) -> "Ticket | None":
        ffi, lib = context.ffi, context.lib
        buffer = ffi.new("unsigned char[]", data)
        cursor = ffi.new("unsigned char **", buffer)
        session = lib.d2i_SSL_SESSION(ffi.NULL, cursor, len(data))
        if session == ffi.NULL:
            lib.ERR_clear_error()
            return None
        return cls(context, session)


class ClientContext(_Context):
    """A client end. The harness's probes do not verify the server's certificate: nothing secret is sent over their
    connections (early data carries a stream header and a SASL first message, which names no secret). The reference
    client's flaw 'client-early-data' gives a `ca_file`, and the certificate is checked as its clean TLS does."""

    def __init__(self, *, server_name: str, keylog: Path | None = None, ca_file: str | None = None,
                 observe: bool = True):
        super().__init__(server=False, observe=observe)
        self.server_name = server_name.encode("idna")
        # With `ca_file`, the server's chain must lead to it and its certificate name `server_name` (a client of
        # the reference's that resumes with early data); without, nothing is checked (the harness's probes).
        self.verify = ca_file is not None
        if self.verify:
            if self.lib.SSL_CTX_load_verify_locations(self.ctx, ca_file.encode(), self.ffi.NULL) != 1:
                self.lib.ERR_clear_error()
                raise TlsFailed(f"cannot load the CA file {ca_file}")
        self.lib.SSL_CTX_set_verify(self.ctx, self.lib.SSL_VERIFY_PEER if self.verify else self.lib.SSL_VERIFY_NONE,
                                    self.ffi.NULL)
        self.lib.SSL_CTX_set_session_cache_mode(self.ctx, 1)  # SSL_SESS_CACHE_CLIENT: keep tickets to resume with
        if keylog is not None:  # NSS key log lines, as Python's ssl writes them, so the pcap can be decrypted
            def log_key(_ssl, line) -> None:
                with open(keylog, "a", encoding="ascii") as out:
                    out.write(self.ffi.string(line).decode("ascii", "replace") + "\n")

            self._keylog = self.ffi.callback("void(SSL *, char *)", log_key)
            self.lib.SSL_CTX_set_keylog_callback(self.ctx, self._keylog)

    def connection(self, *, ticket: Ticket | None = None, early_data: bytes = b"") -> "ClientConnection":
        return ClientConnection(self, ticket=ticket, early_data=early_data)


class ClientConnection(_Connection):
    def __init__(self, context: ClientContext, *, ticket: Ticket | None, early_data: bytes):
        super().__init__(context)
        lib = self.lib
        lib.SSL_set_connect_state(self.ssl)
        lib.SSL_set_tlsext_host_name(self.ssl, context.server_name)
        if context.verify:
            lib.X509_VERIFY_PARAM_set1_host(lib.SSL_get0_param(self.ssl), context.server_name,
                                            len(context.server_name))
        self._ticket = ticket
        if ticket is not None:
            lib.SSL_set_session(self.ssl, ticket.session)
        self.early_data = early_data if ticket is not None and ticket.max_early_data >= len(early_data) else b""

    def start(self) -> bytes:
        """The first flight: the ClientHello, followed by the early data records where the ticket allows them."""
        if self.early_data:
            written = self.ffi.new("size_t *")
            result = self.lib.SSL_write_early_data(self.ssl, self.early_data, len(self.early_data), written)
            if result != 1:
                self._error(result, "early data")
        else:
            self._handshake()
        return self._drain()

    def receive(self, data: bytes) -> tuple[bytes, bytes]:
        """Take bytes from the server. Returns (plaintext, bytes to send back): once the handshake completes, the
        latter hold the client's Finished (and EndOfEarlyData), which the caller may send whenever it chooses."""
        self._feed(data)
        if not self.established:
            self._handshake()
            if self.established and self._held:
                self._write(bytes(self._held))
                self._held.clear()
        plaintext = self._read_plaintext()
        return plaintext, self._drain()

    def ticket(self, *, early_data_only: bool = False) -> Ticket | None:
        """The session to resume with, once the server has sent a ticket (after the handshake, so after reading).
        `early_data_only`: only a ticket that allows early data, told by the session itself (no observing)."""
        if early_data_only:
            session = self.lib.SSL_get1_session(self.ssl)
            if session == self.ffi.NULL:
                return None
            ticket = Ticket(self._context, session)
            return ticket if ticket.max_early_data else None
        if not self.seen.tickets:
            return None
        session = self.lib.SSL_get1_session(self.ssl)
        return Ticket(self._context, session) if session != self.ffi.NULL else None


# -- the server: taking early data ----------------------------------------------------------------------------------

class ServerContext(_Context):
    """A server that offers early data in its tickets and reads it. `anti_replay=False` turns off OpenSSL's
    single-use tickets (RFC 8446 §8.1), so a replayed ClientHello resumes, early data and all."""

    def __init__(self, certificate_chain: str, private_key: str, *, anti_replay: bool = True):
        super().__init__(server=True)
        lib = self.lib
        if lib.SSL_CTX_use_certificate_chain_file(self.ctx, certificate_chain.encode()) != 1 or \
                lib.SSL_CTX_use_PrivateKey_file(self.ctx, private_key.encode(), 1) != 1:  # 1: SSL_FILETYPE_PEM
            lib.ERR_clear_error()
            raise TlsFailed(f"cannot load {certificate_chain} / {private_key}")
        lib.SSL_CTX_set_max_early_data(self.ctx, MAX_EARLY_DATA)
        if not anti_replay:
            lib.SSL_CTX_set_options(self.ctx, SSL_OP_NO_ANTI_REPLAY)

    def connection(self) -> "ServerConnection":
        return ServerConnection(self)


class ServerConnection(_Connection):
    def __init__(self, context: ServerContext):
        super().__init__(context)
        self.lib.SSL_set_accept_state(self.ssl)
        self._early = True  # still reading early data (SSL_read_early_data has not said FINISH)
        self.early_data = bytearray()  # what the client sent as early data, all of it
        self._flight_sent = False  # the server's flight is out: 0.5-RTT data may follow it

    def receive(self, data: bytes) -> tuple[bytes, bytes]:
        """Take bytes from the client. Returns (plaintext, bytes to send back); early data is plaintext as soon as
        it arrives, before the client's Finished."""
        self._feed(data)
        plaintext = bytearray()
        read = self.ffi.new("size_t *")
        while self._early:
            result = self.lib.SSL_read_early_data(self.ssl, self._buffer, READ, read)
            if result == READ_EARLY_SUCCESS:
                self._flight_sent = True
                chunk = self.ffi.buffer(self._buffer, read[0])
                plaintext += chunk
                self.early_data += chunk
            elif result == READ_EARLY_FINISH:
                self._early = False
            else:
                self._error(result, "early data")
                break
        if not self._early and not self.established:
            self._handshake()
            if self.established and self._held:
                self._write(bytes(self._held))
                self._held.clear()
        plaintext += self._read_plaintext()
        return bytes(plaintext), self._drain()

    def send(self, plaintext: bytes) -> bytes:
        """Encrypt plaintext for the client; while early data is still coming in, as 0.5-RTT data."""
        if self._early and self._flight_sent and not self.established:
            written = self.ffi.new("size_t *")
            result = self.lib.SSL_write_early_data(self.ssl, plaintext, len(plaintext), written)
            if result != 1:
                self._error(result, "0.5-RTT write")
            return self._drain()
        return super().send(plaintext)
