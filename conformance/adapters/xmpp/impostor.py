"""The attacker a client IUT meets (the `impostor` fixture): the on-path relay (conformance/attacker) between the
client and the harness's genuine stand-in service, or answering in the service's place with a certificate of its
choosing. What it needs of XMPP (where TLS starts, what SASL looks like) comes from here; what it does to bytes and
TLS records is the relay's.

Observations are what the attacker saw the client send: in clear (before any TLS, or on connections where TLS never
came up) and, where the attacker terminated TLS itself, the client's decrypted plaintext.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import warnings
from typing import Any

from conformance.attacker.on_path import OnPathAttacker
from conformance.verdicts import SetupFailed, Unsupported

from .on_path import XmppStreamHooks
from .stand_in import StandIn

# What a client must never send outside TLS: credentials and stanzas (its stream header and <starttls/> may go)
_CLEARTEXT_FORBIDDEN = {b"<auth": "a SASL <auth/> (credentials)", b"<response": "a SASL <response/> (credentials)",
                        b"<message": "a <message/>", b"<presence": "a <presence/>", b"<iq": "an <iq/>"}
_PLAIN_OFFER = re.compile(rb"<(?:[\w.-]+:)?mechanism>\s*PLAIN\s*</(?:[\w.-]+:)?mechanism>")
_AFTER_SUCCESS = (b"<bind", b"<presence", b"<message", b"<session")


def _legacy_context(offer: str | None) -> dict[str, Any]:
    if offer is None:
        return {}
    if offer == "tls-1.0-1.1-only":  # RFC 8996 deprecates both
        return {"minimum": ssl.TLSVersion.TLSv1, "maximum": ssl.TLSVersion.TLSv1_1, "ciphers": "ALL:@SECLEVEL=0"}
    if offer == "weak-suites-only":  # TLS 1.2 with nothing but NULL, anonymous, export, RC4 or 3DES suites
        return {"minimum": ssl.TLSVersion.TLSv1_2, "maximum": ssl.TLSVersion.TLSv1_2,
                "ciphers": "eNULL:aNULL:EXP:RC4:3DES:@SECLEVEL=0"}
    raise ValueError(f"unknown TLS offer {offer!r}")


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

    def _arming(self):
        relay = self.attacker._relay()
        self._armed_at = len(relay.legs)
        return relay

    def _set(self, **knobs: Any) -> None:
        relay = self._arming()

        async def set_knobs():
            for name, value in knobs.items():
                setattr(relay, name, value)
        self.rt.call(set_knobs)

    # -- arranging --------------------------------------------------------------------------------------------------

    def presents(self, certificate: str, *, tls: str | None = None) -> None:
        """From the next connection on, answer the client's TLS with a `certificate` of the stand-in's making
        (see StandIn.certificate) and, with `tls`, a downgraded offer; relay on to the genuine service, with the
        -PLUS mechanisms hidden (their channel binding would tell the service about the attacker)."""
        cert, key = self.stand_in.certificate(certificate)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        legacy = _legacy_context(tls)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # ssl deprecates TLS 1.0/1.1, which is the point
            context.minimum_version = legacy.get("minimum", ssl.TLSVersion.TLSv1_2)
            if "maximum" in legacy:
                context.maximum_version = legacy["maximum"]
        if "ciphers" in legacy:
            try:
                context.set_ciphers(legacy["ciphers"])
            except ssl.SSLError:
                raise Unsupported(f"this machine's OpenSSL cannot offer {tls} as a server") from None
        context.load_cert_chain(cert, key)
        self._arming()

        async def arm():
            self.attacker.relay.terminate_tls(context)
            self.attacker.relay.rewrite_to_victim = self.hooks.strip_channel_binding
        self.rt.call(arm)

    def strips_starttls(self) -> None:
        """Remove STARTTLS from the service's features and offer SCRAM and PLAIN in clear instead."""
        self._set(strip_tls_offer=True, rewrite_to_victim=self.hooks.offer_login_in_clear)

    def makes_tls_fail(self, how: str) -> None:
        """Every TLS attempt from now on fails: `refused` (<failure/> to <starttls/>), `reset` (TCP RST after the
        ClientHello) or `alert` (a fatal internal_error alert)."""
        self._set(fail_tls=how, rewrite_to_victim=self.hooks.offer_login_in_clear)

    def tampers_with_server_signature(self) -> None:
        """Alter the ServerSignature in what the service sends the client (with only SCRAM left to choose: the
        attacker hides PLAIN and the -PLUS mechanisms)."""
        def rewrite(data: bytes) -> bytes:
            data = _PLAIN_OFFER.sub(b"", self.hooks.strip_channel_binding(data))
            tampered = self.hooks.tamper_server_signature(data)
            if tampered != data:
                self.tampered_signatures += 1
            return tampered
        self._set(rewrite_to_victim=rewrite)

    def flips_a_bit_towards_client(self) -> None:
        relay = self._arming()

        async def arm():
            self.attacker._flip = relay.flip("middle", towards="victim")
        self.rt.call(arm)

    def tampered(self) -> str:
        return self.attacker.tampered()

    def marks_records_to_client(self) -> tuple[int, int]:
        leg = self._latest_leg()
        return leg.index, leg.records_to_victim_seen

    def records_to_client_since(self, mark: tuple[int, int]) -> list[bytes]:
        kept = self.attacker.relay.legs[mark[0]].records_to_victim_since(mark[1])
        if kept is None:
            raise SetupFailed("the attacker no longer holds all the records sent to the client since its mark")
        if not kept:
            raise SetupFailed("the attacker saw no TLS record go to the client since its mark")
        return [record for _, record in kept]

    def replays_to_client(self, records: list[bytes]) -> None:
        leg = self._latest_leg()
        self.rt.call(self.attacker.relay.inject_to_victim, leg, b"".join(records))

    # -- observing --------------------------------------------------------------------------------------------------

    def _latest_leg(self):
        leg = self.attacker._relay().latest_leg()
        if leg is None:
            raise SetupFailed("the client made no connection through the attacker")
        return leg

    def sees_client_close(self, within: float | None = None) -> float | None:
        """Seconds until the client closed its connection through the attacker, or None within T_CLOSE."""
        leg = self._latest_leg()
        bound = within if within is not None else self.rt.timeouts.close

        async def wait():
            loop = asyncio.get_running_loop()
            started = loop.time()
            try:
                await asyncio.wait_for(leg.victim_closed.wait(), bound)
            except asyncio.TimeoutError:
                return None
            return loop.time() - started
        return self.rt.call(wait, timeout=bound + 5)

    def _armed_legs(self) -> list:
        return self.attacker._relay().legs[self._armed_at:]

    def _cleartext(self) -> list[tuple[str, bytes]]:
        return [(leg.label, bytes(leg.cleartext_from_victim)) for leg in self._armed_legs()]

    def _decrypted(self) -> bytes:
        return b"".join(bytes(leg.plaintext_from_victim) for leg in self._armed_legs())

    def saw_client_authenticate(self) -> bool:
        return b"<auth" in self._decrypted() or any(b"<auth" in data for _, data in self._cleartext())

    def saw_client_ask_for_tls(self) -> bool:
        return any(b"<starttls" in data for _, data in self._cleartext())

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

    def client_cleartext_findings(self, secrets: tuple[str, ...] = ()) -> list[str]:
        """What the client sent outside TLS that it must not: credentials, stanzas, or any of `secrets`."""
        findings = []
        for label, data in self._cleartext():
            for marker, what in _CLEARTEXT_FORBIDDEN.items():
                if marker in data:
                    findings.append(f"{what} on {label}")
            for secret in secrets:
                if secret and secret.encode() in data:
                    findings.append(f"a secret ({secret[:12]}…) on {label}")
        return findings
