"""The attacker a client IUT meets (the `impostor` fixture): the on-path relay (conformance/attacker) between the
client and the harness's genuine stand-in service, or answering in the service's place with a certificate of its
choosing. What it needs of XMPP (where TLS starts, what SASL looks like) comes from here; what it does to bytes and
TLS records is the relay's.

Observations are what the attacker saw the client send: in clear (before any TLS, or on connections where TLS never
came up) and, where the attacker terminated TLS itself, the client's decrypted plaintext.
"""

from __future__ import annotations

import re
import ssl
import warnings
from typing import Any

from conformance.attacker.eavesdropper import Eavesdropper, search
from conformance.attacker.handshake_seen import HandshakeSeen
from conformance.attacker.terminator import EarlyDataTermination
from conformance.attacker.on_path import OnPathAttacker, RecordMark, VictimTraffic
from conformance.transport import hello_bytes
from conformance.transport.early_data import EarlyDataUnavailable
from conformance.verdicts import SetupFailed, Unsupported

from .on_path import XmppStreamHooks
from .stand_in import StandIn

# What a client must never send outside TLS: credentials and stanzas (its stream header and <starttls/> may go)
_CLEARTEXT_FORBIDDEN = {b"<auth": "a SASL <auth/> (credentials)", b"<response": "a SASL <response/> (credentials)",
                        b"<message": "a <message/>", b"<presence": "a <presence/>", b"<iq": "an <iq/>"}
_PLAIN_OFFER = re.compile(rb"<(?:[\w.-]+:)?mechanism>\s*PLAIN\s*</(?:[\w.-]+:)?mechanism>")
_AFTER_SUCCESS = (b"<bind", b"<presence", b"<message", b"<session")


# OpenSSL 3's SSL_OP_NO_EXTENDED_MASTER_SECRET (bit 0), which Python's ssl module does not name
_OP_NO_EXTENDED_MASTER_SECRET = 1 << 0


def _tls_offer(offer: str | None) -> dict[str, Any]:
    if offer is None or offer == "tls-1.3-early-data":
        return {}
    if offer == "tls-1.0-1.1-only":  # RFC 8996 deprecates both
        return {"minimum": ssl.TLSVersion.TLSv1, "maximum": ssl.TLSVersion.TLSv1_1, "ciphers": "ALL:@SECLEVEL=0"}
    if offer == "weak-suites-only":  # TLS 1.2 with nothing but NULL, anonymous, export, RC4 or 3DES suites
        return {"minimum": ssl.TLSVersion.TLSv1_2, "maximum": ssl.TLSVersion.TLSv1_2,
                "ciphers": "eNULL:aNULL:EXP:RC4:3DES:@SECLEVEL=0"}
    if offer == "tls-1.3-taken-out":
        # The attacker's TLS end can do 1.3; TLS 1.3 is taken out of the client's ClientHello on the way, so it
        # answers TLS 1.2 and (OpenSSL follows RFC 8446 §4.1.3) marks its random with the downgrade sentinel.
        return {"minimum": ssl.TLSVersion.TLSv1_2, "hello": _without_tls13}
    if offer == "tls-1.2-without-ems":
        # RFC 7627's extended master secret left out. (OpenSSL always answers renegotiation_info: RFC 5746's
        # extension stays in this ServerHello.)
        return {"minimum": ssl.TLSVersion.TLSv1_2, "maximum": ssl.TLSVersion.TLSv1_2,
                "options": _OP_NO_EXTENDED_MASTER_SECRET}
    raise ValueError(f"unknown TLS offer {offer!r}")


def _without_tls13(record: bytes) -> bytes:
    return hello_bytes.without_tls13(record)[0]


def _server_context(cert, key, legacy: dict[str, Any], tls: str | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # ssl deprecates TLS 1.0/1.1, which is the point
        context.minimum_version = legacy.get("minimum", ssl.TLSVersion.TLSv1_2)
        if "maximum" in legacy:
            context.maximum_version = legacy["maximum"]
    context.options |= legacy.get("options", 0)
    if "ciphers" in legacy:
        try:
            context.set_ciphers(legacy["ciphers"])
        except ssl.SSLError:
            raise Unsupported(f"this machine's OpenSSL cannot offer {tls} as a server") from None
    context.load_cert_chain(cert, key)
    return context


class Impostor:
    def __init__(self, attacker: OnPathAttacker, stand_in: StandIn, hooks: XmppStreamHooks):
        self.attacker = attacker
        self.rt = attacker.rt
        self.stand_in = stand_in
        self.hooks = hooks
        self.tampered_signatures = 0
        self._armed_at = 0  # observations count connections from the latest arming on (not the test's controls)

    @property
    def listening_at(self) -> tuple[str, int]:
        return self.attacker.listening_at

    def _arming(self) -> None:
        self._armed_at = len(self.attacker._relay().legs)

    # -- arranging --------------------------------------------------------------------------------------------------

    def presents(self, certificate: str, *, tls: str | None = None) -> None:
        """From the next connection on, answer the client's TLS with a `certificate` of the stand-in's making
        (see StandIn.certificate) and, with `tls`, a downgraded offer; relay on to the genuine service, with the
        -PLUS mechanisms hidden (their channel binding would tell the service about the attacker)."""
        cert, key = self.stand_in.certificate(certificate)
        legacy = _tls_offer(tls)
        if tls == "tls-1.3-early-data":  # its tickets allow 0-RTT data: a client may resume with early data
            try:
                termination = EarlyDataTermination(str(cert), str(key))
            except EarlyDataUnavailable as exc:
                raise Unsupported(f"the harness cannot take TLS 1.3 early data here: {exc}") from None
        else:
            termination = _server_context(cert, key, legacy, tls)
        self._arming()
        self.attacker.terminates_tls_with(termination)
        self.attacker.rewrites_client_hello(legacy.get("hello"))
        self.attacker.rewrites_to_victim(self.hooks.strip_channel_binding)

    def strips_starttls(self) -> None:
        """Remove STARTTLS from the service's features and offer SCRAM and PLAIN in clear instead."""
        self._arming()
        self.attacker.strips_tls_offer()
        self.attacker.rewrites_to_victim(self.hooks.offer_login_in_clear)

    def makes_tls_fail(self, how: str) -> None:
        """Every TLS attempt from now on fails: `refused` (<failure/> to <starttls/>), `reset` (TCP RST after the
        ClientHello), `alert` (a fatal internal_error alert) or `silent` (no ServerHello, ever); a login in clear is
        offered instead."""
        self._arming()
        self.attacker.makes_tls_fail(how)
        self.attacker.rewrites_to_victim(self.hooks.offer_login_in_clear)

    def tampers_with_server_signature(self) -> None:
        """Alter the ServerSignature in what the service sends the client (with only SCRAM left to choose: the
        attacker hides PLAIN and the -PLUS mechanisms)."""
        def rewrite(data: bytes) -> bytes:
            data = _PLAIN_OFFER.sub(b"", self.hooks.strip_channel_binding(data))
            tampered = self.hooks.tamper_server_signature(data)
            if tampered != data:
                self.tampered_signatures += 1
            return tampered
        self._arming()
        self.attacker.rewrites_to_victim(rewrite)

    def flips_a_bit_towards_client(self) -> None:
        self._arming()
        self.attacker.flips_a_bit_towards_victim()

    def tampered(self) -> str:
        return self.attacker.tampered()

    def marks_records_to_client(self) -> RecordMark:
        return self.attacker.mark_records_to_victim()

    def records_to_client_since(self, mark: RecordMark) -> list[bytes]:
        records = self.attacker.records_to_victim_since(mark)
        if not records:
            raise SetupFailed("the attacker saw no TLS record go to the client since its mark")
        return records

    def replays_to_client(self, records: list[bytes]) -> None:
        self.attacker.reinjects_to_victim(records)

    # -- observing --------------------------------------------------------------------------------------------------

    def sees_client_close(self, within: float | None = None) -> float | None:
        """Seconds until the client closed its connection through the attacker, or None within T_CLOSE."""
        return self.attacker.sees_the_victim_close(within)

    def _armed_legs(self) -> set[str]:
        """Labels of the connections through the attacker since its latest arming (the test's controls before)."""
        return {leg.label for leg in self.attacker._relay().legs[self._armed_at:]}

    def _sent(self) -> VictimTraffic:
        traffic = self.attacker.victim_sent()
        armed = self._armed_legs()
        return VictimTraffic(cleartext=[(label, data) for label, data in traffic.cleartext if label in armed],
                             decrypted=[(label, data) for label, data in traffic.decrypted if label in armed],
                             tls_failures=[(label, why) for label, why in traffic.tls_failures if label in armed],
                             handshakes=[(label, seen) for label, seen in traffic.handshakes if label in armed],
                             early_data=[(label, data) for label, data in traffic.early_data if label in armed])

    def _decrypted(self) -> bytes:
        return b"".join(data for _, data in self._sent().decrypted)

    def saw_client_authenticate(self) -> bool:
        sent = self._sent()
        return b"<auth" in self._decrypted() or bool(sent.cleartext_contains(b"<auth"))

    def saw_client_handshake(self) -> HandshakeSeen:
        """How the client's TLS handshake with the attacker went, on its first connection since the arming."""
        return self.saw_client_handshakes()[0]

    def saw_client_handshakes(self) -> list[HandshakeSeen]:
        """How each of the client's TLS handshakes with the attacker since the arming went."""
        handshakes = self._sent().handshakes
        if not handshakes:
            raise SetupFailed("the client started no TLS handshake with the attacker")
        return [seen for _, seen in handshakes]

    def saw_client_send_early_data(self) -> list[tuple[str, bytes]]:
        """What the client sent as TLS 1.3 early data on its connections since the arming, decrypted."""
        return self._sent().early_data

    def saw_client_ask_for_tls(self) -> bool:
        return bool(self._sent().cleartext_contains(b"<starttls"))

    def saw_scram_signature_tampered(self) -> None:
        if self.tampered_signatures:
            return
        if re.search(rb"mechanism=['\"]PLAIN['\"]", self._decrypted()):
            raise Unsupported("the client authenticated with PLAIN: there was no SCRAM signature to alter")
        raise SetupFailed("the attacker saw no SCRAM server-final-message to alter")

    def saw_client_send_after_success(self) -> bool:
        plaintext = self._decrypted()
        # after the altered <success/>, a client that goes on restarts the stream and binds
        return any(marker in plaintext for marker in _AFTER_SUCCESS)

    def reads_in_clear(self, *texts: str) -> list[str]:
        """Where a passive eavesdropper on the client's link reads any of `texts` (in any of the encodings the
        eavesdropper tries), in either direction, on every connection through the attacker."""
        legs = self._armed_legs()
        wire = {key: data for key, data in Eavesdropper(self.attacker.rt.recorder).wire().items() if key[0] in legs}
        if not wire:
            raise SetupFailed("no connection of the client went through the attacker: it can vouch for nothing")
        return [f"{hit.canary} ({hit.encoding}) at byte {hit.offset} "
                f"{'sent by the client' if hit.direction == 'out' else 'sent to the client'} on {hit.connection}"
                for hit in search(texts, wire)]

    def client_cleartext_findings(self, secrets: tuple[str, ...] = ()) -> list[str]:
        """What the client sent outside TLS that it must not: credentials, stanzas, or any of `secrets`."""
        findings = []
        for label, data in self._sent().cleartext:
            for marker, what in _CLEARTEXT_FORBIDDEN.items():
                if marker in data:
                    findings.append(f"{what} on {label}")
            for secret in secrets:
                if secret and secret.encode() in data:
                    findings.append(f"a secret ({secret[:12]}…) on {label}")
        return findings
