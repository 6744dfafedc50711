"""A TLS "hello probe": offer exactly the versions, cipher suites and compression methods a test chooses, and see
what the IUT answers first, without going further than that answer.

Python's ssl module (the harness's own OpenSSL) cannot be made to offer everything a downgrade test needs (TLS 1.0
without lowering its own security level, EXPORT or RC4 suites it no longer has, deflate it was built without, a
TLS_FALLBACK_SCSV of our choosing), and it would not say which alert the peer sent. So the ClientHello is built with
scapy's TLS layers and the answer is classified here:

* `Hello` says what to offer and builds the record (sans-IO);
* `AnswerReader` is fed the bytes received and returns an `Answer` once it has one (sans-IO):
  `ServerHello` (version, suite, compression; the version taking supported_versions into account), `Alert`, or
  `NotTls` for anything that is not a TLS answer;
* `probe()` drives both over a `Connection` whose next bytes are TLS (e.g. right after XMPP's <proceed/>), bounded
  by a timeout: there it adds `Closed` and `Silent`. Everything it sends and receives goes through the Connection's
  recorded socket (the tcp layer) and is summarised in the recorder's events.

Nothing here knows an application protocol.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from scapy.layers.tls.crypto.suites import _tls_cipher_suites
from scapy.layers.tls.extensions import (ServerName, TLS_Ext_ServerName, TLS_Ext_SignatureAlgorithms,
                                         TLS_Ext_SupportedGroups, TLS_Ext_SupportedPointFormat,
                                         TLS_Ext_SupportedVersion_CH, TLS_Ext_SupportedVersion_SH)
from scapy.layers.tls.handshake import TLSClientHello, TLSServerHello
from scapy.layers.tls.keyexchange_tls13 import KeyShareEntry, TLS_Ext_KeyShare_CH
from scapy.layers.tls.record import TLS, TLSAlert, _tls_alert_description

from .connection import Connection, ConnectionClosed
from .hello_bytes import PRE_SHARED_KEY  # the ServerHello extension that says a session was resumed

# -- what can be offered -------------------------------------------------------------------------------------------

VERSIONS = {"SSLv3": 0x0300, "TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
VERSION_NAMES = {code: name for name, code in VERSIONS.items()}
COMPRESSION = {"null": 0, "deflate": 1}  # RFC 3749
COMPRESSION_NAMES = {code: name for name, code in COMPRESSION.items()}
FALLBACK_SCSV = 0x5600  # RFC 7507

_SUITE_CODES = {name: code for code, name in _tls_cipher_suites.items()}


def _suites(*names: str) -> tuple[int, ...]:
    return tuple(_SUITE_CODES[name] for name in names)


def suite_name(code: int) -> str:
    return _tls_cipher_suites.get(code, f"0x{code:04x}")


TLS13_SUITES = _suites("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
# What a current client offers below TLS 1.3: forward-secret AEAD suites first, then the CBC suites that TLS 1.0 and
# 1.1 can use (so a probe offering only those versions is refused for its version, not for want of a suite).
STRONG_SUITES = _suites(
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256", "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_RSA_WITH_AES_128_CBC_SHA", "TLS_RSA_WITH_AES_256_CBC_SHA")
# Only what BCP 195 (RFC 9325 §4.1) forbids: no encryption (NULL), RC4 (RFC 7465), EXPORT, no authentication (anon).
WEAK_SUITES = _suites(
    "TLS_ECDHE_ECDSA_WITH_NULL_SHA", "TLS_ECDHE_RSA_WITH_NULL_SHA", "TLS_RSA_WITH_NULL_SHA256",
    "TLS_RSA_WITH_NULL_SHA", "TLS_RSA_WITH_NULL_MD5", "TLS_ECDH_anon_WITH_NULL_SHA",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", "TLS_ECDHE_RSA_WITH_RC4_128_SHA", "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_RC4_128_MD5",
    "TLS_RSA_EXPORT_WITH_RC4_40_MD5", "TLS_RSA_EXPORT_WITH_DES40_CBC_SHA", "TLS_DHE_RSA_EXPORT_WITH_DES40_CBC_SHA",
    "TLS_ECDH_anon_WITH_AES_128_CBC_SHA", "TLS_ECDH_anon_WITH_AES_256_CBC_SHA",
    "TLS_DH_anon_WITH_AES_128_GCM_SHA256", "TLS_DH_anon_WITH_AES_256_GCM_SHA384",
    "TLS_DH_anon_WITH_AES_128_CBC_SHA", "TLS_DH_anon_WITH_AES_256_CBC_SHA", "TLS_DH_anon_WITH_RC4_128_MD5")
CIPHER_SETS = {"strong": STRONG_SUITES, "weak": WEAK_SUITES}

GROUPS = (29, 23, 24)  # x25519, secp256r1, secp384r1
SIGNATURE_ALGORITHMS = (0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601, 0x0807,  # RFC 8446 §4.2.3
                        0x0201, 0x0203)  # rsa_pkcs1_sha1, ecdsa_sha1: what TLS 1.2 servers with old chains need

# RFC 8446 §4.1.3: a HelloRetryRequest is a ServerHello whose random is SHA-256("HelloRetryRequest").
HELLO_RETRY_RANDOM = hashlib.sha256(b"HelloRetryRequest").digest()

# TLS record content types (RFC 8446 §5.1) and the handshake type of ServerHello (§4).
ALERT, HANDSHAKE = 21, 22
SERVER_HELLO = 2
MAX_RECORD = 2 ** 14 + 2048  # largest TLSCiphertext a peer may send
MAX_ANSWER = 64 * 1024  # bytes read before giving up on finding a ServerHello or an Alert


@dataclasses.dataclass(frozen=True)
class Hello:
    """One ClientHello: every TLS version from `min_version` to `max_version`, these suites and compression methods.

    Up to TLS 1.2 the version is the hello's legacy_version; offering TLS 1.3 puts 1.2 there and lists the versions
    in supported_versions (with an x25519 key share), as RFC 8446 §4.1.2 and §4.2.1 say a client does."""

    max_version: int = VERSIONS["TLSv1.2"]
    min_version: int = VERSIONS["SSLv3"]  # a hello without supported_versions takes any version up to its own
    ciphers: tuple[int, ...] = STRONG_SUITES
    compression: tuple[int, ...] = (COMPRESSION["null"],)
    server_name: str | None = None

    @property
    def versions(self) -> tuple[int, ...]:
        return tuple(range(self.max_version, min(self.min_version, self.max_version) - 1, -1))

    @property
    def fallback_scsv(self) -> bool:
        return FALLBACK_SCSV in self.ciphers

    def accepted_by(self, answer: "Answer") -> bool:
        """Did the IUT take this offer: a ServerHello choosing a version, a real suite and a compression offered?"""
        return (isinstance(answer, ServerHello) and answer.version in self.versions
                and answer.cipher in self.ciphers and answer.cipher != FALLBACK_SCSV
                and answer.compression in self.compression)

    def to_bytes(self) -> bytes:
        legacy = min(self.max_version, VERSIONS["TLSv1.2"])
        extensions = [TLS_Ext_SupportedGroups(groups=list(GROUPS)), TLS_Ext_SupportedPointFormat(ecpl=[0])]
        if self.server_name:
            extensions.insert(0, TLS_Ext_ServerName(servernames=[ServerName(servername=self.server_name.encode())]))
        if self.max_version >= VERSIONS["TLSv1.2"]:
            # RFC 5246 §7.4.1.4.1: not meaningful before TLS 1.2; a client offering only older versions leaves it out.
            extensions.append(TLS_Ext_SignatureAlgorithms(sig_algs=list(SIGNATURE_ALGORITHMS)))
        if self.max_version >= VERSIONS["TLSv1.3"]:
            public = X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            extensions += [TLS_Ext_SupportedVersion_CH(versions=list(self.versions)),
                           TLS_Ext_KeyShare_CH(client_shares=[KeyShareEntry(group=29, key_exchange=public)])]
        random = os.urandom(32)
        hello = TLSClientHello(version=legacy, gmt_unix_time=int.from_bytes(random[:4], "big"),
                               random_bytes=random[4:], ciphers=list(self.ciphers), comp=list(self.compression),
                               ext=extensions)
        # RFC 8446 §5.1 (and common practice before it): the record carrying the first ClientHello says TLS 1.0.
        return bytes(TLS(type=HANDSHAKE, version=VERSIONS["TLSv1"], msg=[hello]))

    def __str__(self) -> str:
        versions = VERSION_NAMES.get(self.max_version, hex(self.max_version))
        if self.max_version < VERSIONS["TLSv1.3"]:
            versions += " at most"  # legacy_version: the client takes any version up to it
        elif len(self.versions) > 1:
            versions = f"{VERSION_NAMES.get(self.versions[-1], '?')} to {versions}"
        real = [c for c in self.ciphers if c != FALLBACK_SCSV]
        if set(real) <= set(WEAK_SUITES):
            suites = f"only NULL/RC4/EXPORT/anonymous suites ({len(real)})"
        else:
            suites = f"{len(real)} suites"
        parts = [versions, suites + (" and TLS_FALLBACK_SCSV" if self.fallback_scsv else "")]
        parts.append("compression " + ", ".join(COMPRESSION_NAMES.get(c, str(c)) for c in self.compression))
        return "; ".join(parts)


# -- what can come back ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ServerHello:
    version: int  # the negotiated version: supported_versions if the ServerHello has it, else legacy_version
    cipher: int
    compression: int
    retry: bool = False  # a HelloRetryRequest (TLS 1.3): the IUT took the version but wants another key share
    resumed: bool = False  # pre_shared_key (TLS 1.3, RFC 8446 §4.2.11): the IUT resumed a session the hello offered

    @property
    def version_name(self) -> str:
        return VERSION_NAMES.get(self.version, f"0x{self.version:04x}")

    def __str__(self) -> str:
        what = "HelloRetryRequest" if self.retry else "ServerHello"
        return (f"{what} {self.version_name} {suite_name(self.cipher)} "
                f"compression {COMPRESSION_NAMES.get(self.compression, self.compression)}")


@dataclasses.dataclass(frozen=True)
class Alert:
    level: int  # 1 warning, 2 fatal
    description: int

    @property
    def name(self) -> str:
        return _tls_alert_description.get(self.description, f"alert {self.description}")

    def __str__(self) -> str:
        return f"{'fatal' if self.level == 2 else 'warning'} alert {self.name}"


@dataclasses.dataclass(frozen=True)
class Closed:
    reason: str

    def __str__(self) -> str:
        return f"connection closed without a TLS answer ({self.reason})"


@dataclasses.dataclass(frozen=True)
class Silent:
    seconds: float

    def __str__(self) -> str:
        return f"no TLS answer within {self.seconds:g}s"


@dataclasses.dataclass(frozen=True)
class NotTls:
    detail: str

    def __str__(self) -> str:
        return f"an answer that is not a TLS ServerHello or Alert ({self.detail})"


Answer = ServerHello | Alert | Closed | Silent | NotTls


class AnswerReader:
    """Feed it what the IUT sent after the ClientHello; it returns the first ServerHello or Alert (or NotTls).

    The 5-byte record header is read by hand (content type, version, length: RFC 8446 §5.1) to find record and
    handshake-message boundaries, since a ServerHello may be split over records; the alert and the ServerHello
    themselves are parsed with scapy."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._handshake = bytearray()
        self.received = bytearray()  # everything fed so far (bounded by MAX_ANSWER)
        self.consumed = 0  # bytes of `received` in complete records read so far: the answer's evidence

    def feed(self, data: bytes) -> Answer | None:
        self.received += data[:max(0, MAX_ANSWER - len(self.received))]
        self._buffer += data
        while len(self._buffer) >= 5:
            content_type, major, length = self._buffer[0], self._buffer[1], int.from_bytes(self._buffer[3:5], "big")
            if content_type not in (ALERT, HANDSHAKE) or major != 3 or length > MAX_RECORD:
                return NotTls(f"starts with {bytes(self._buffer[:16])!r}")
            if len(self._buffer) < 5 + length:
                break
            fragment = bytes(self._buffer[5:5 + length])
            del self._buffer[:5 + length]
            self.consumed += 5 + length
            if content_type == ALERT:
                if len(fragment) < 2:
                    return NotTls(f"an alert record of {len(fragment)} bytes")
                alert = TLSAlert(fragment[:2])
                return Alert(level=alert.level, description=alert.descr)
            self._handshake += fragment
            if self._handshake and self._handshake[0] != SERVER_HELLO:
                return NotTls(f"handshake message type {self._handshake[0]} before any ServerHello")
            if len(self._handshake) >= 4:
                need = 4 + int.from_bytes(self._handshake[1:4], "big")
                if len(self._handshake) >= need:
                    return _server_hello(bytes(self._handshake[:need]))
        if len(self.received) >= MAX_ANSWER:
            return NotTls(f"{MAX_ANSWER} bytes without a complete ServerHello or Alert")
        return None


def _server_hello(message: bytes) -> Answer:
    """A whole ServerHello handshake message (4-byte header included) -> what the IUT chose."""
    try:
        hello = TLSServerHello(message)
        version = hello.version
        for extension in hello.ext or []:
            if isinstance(extension, TLS_Ext_SupportedVersion_SH):
                version = extension.version  # RFC 8446 §4.2.1: this, not legacy_version, is the version
        compression = hello.comp[0] if isinstance(hello.comp, list) else hello.comp
        # header (4) + legacy_version (2), then the 32-byte random
        return ServerHello(version=version, cipher=hello.cipher, compression=compression,
                           retry=message[6:38] == HELLO_RETRY_RANDOM,
                           resumed=any(extension.type == PRE_SHARED_KEY for extension in hello.ext or []))
    except Exception as exc:  # a hostile or broken ServerHello is an answer too, never a harness crash
        return NotTls(f"a ServerHello scapy cannot parse: {exc}")


# -- driving it over a connection ------------------------------------------------------------------------------------

async def probe(conn: Connection, hello: Hello, *, timeout: float) -> Answer:
    """Send `hello` as the first TLS bytes on `conn` and wait (at most `timeout`) for the IUT's first answer.

    Uses the Connection's raw socket (recorded on its tcp layer); TLS is never started on it, so the caller
    should drop the connection afterwards."""
    record = hello.to_bytes()
    conn.recorder.event(conn.label, f"TLS probe: ClientHello offering {hello} ({len(record)} bytes) {record.hex()}")
    return await send_and_read(conn, record, timeout=timeout)


async def send_and_read(conn: Connection, flight: bytes, *, timeout: float) -> Answer:
    """Send `flight` (a ClientHello, and whatever follows it) as the first TLS bytes on `conn`, and wait (at most
    `timeout`) for the IUT's first answer."""
    reader = AnswerReader()

    async def answer() -> Answer:
        await conn._write_socket(flight)
        while True:
            got = reader.feed(await conn._read_socket())
            if got is not None:
                return got

    try:
        result = await asyncio.wait_for(answer(), timeout)
    except asyncio.TimeoutError:
        result = Silent(timeout)
    except ConnectionClosed as exc:
        result = Closed(str(exc))
    # the records that made the answer (all of what came, if it was no TLS), at most 512 bytes of them
    shown = bytes(reader.received[:reader.consumed or len(reader.received)][:512]).hex()
    conn.recorder.event(conn.label, f"TLS probe: the IUT answered {result}" + (f"; records {shown}" if shown else ""))
    return result
