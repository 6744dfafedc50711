"""What the on-path attacker needs to know about XMPP: where STARTTLS hands the stream over to TLS, and what the
service's offer of TLS looks like in the stream features (RFC 6120 §5.4), so that it can be stripped."""

from __future__ import annotations

import dataclasses
import re

from .codec.stanza import TLS

_NS = re.escape(TLS.encode())
# <proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>: the last plaintext the service sends (RFC 6120 §5.4.2.3)
_PROCEED = re.compile(rb"<(?:[\w.-]+:)?proceed\b[^>]*" + _NS)
# <starttls xmlns='...xmpp-tls'/> or <starttls ...><required/></starttls> inside <stream:features/>
_STARTTLS = re.compile(rb"<(?:[\w.-]+:)?starttls\b[^>]*" + _NS + rb"[^>]*?(?:/>|>.*?</(?:[\w.-]+:)?starttls\s*>)",
                       re.S)


@dataclasses.dataclass(frozen=True)
class XmppStreamHooks:
    direct_tls: bool = False

    def tls_go_ahead(self, from_iut: bytes) -> bool:
        return _PROCEED.search(from_iut) is not None

    def strip_tls_offer(self, from_iut: bytes) -> bytes:
        return _STARTTLS.sub(b"", from_iut)
