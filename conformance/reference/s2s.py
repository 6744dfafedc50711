"""One inbound server-to-server stream of the reference service: the receiving server's side (RFC 6120 §4-§6,
§8.1.2; XEP-0178).

Another domain's server connects, STARTTLS is required, and it authenticates with SASL EXTERNAL on the strength
of its TLS client certificate: EXTERNAL is offered only when the certificate verified against the service's CA
and names the domain the stream header's 'from' claims (RFC 6125 rules as XEP-0178 §3 and RFC 6120 §13.7.1.2
use them). Server dialback (XEP-0220) is the other way, unless the service is configured for certificates only
(`ServiceConfig.s2s_dialback`): on a TLS-protected stream the peer sends a dialback key for the domain it claims,
and the service asks that domain's authoritative server (found in its peer map, reached over TLS with its
certificate checked: s2s_out.verify_dialback) whether the key is genuine; only a 'valid' answer authenticates the
stream. Stanzas are accepted only on an authenticated stream, only
from the authenticated domain and only to this service's domain; every other case is a stream error and the
stream is closed, with nothing routed (RFC 6120 §4.3.5, §8.1.2.2, §13.12).

The stream is one-way (RFC 6120 §4.5): what the service sends back to the peer's domain (errors, presence
answers) goes over an outbound stream of its own (s2s_out.py), when that domain is in its peer map, and is dropped
with a log line otherwise (`Service.deliver_direct`).
"""

from __future__ import annotations

import asyncio
import re
import secrets
import ssl
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.x509.oid import NameOID

from conformance.adapters.xmpp.codec import sasl
from conformance.adapters.xmpp.codec.jid import JID, JidError
from conformance.adapters.xmpp.codec.stanza import (CLIENT, SASL, SERVER, STANZAS_ERR, TLS, in_content_ns, kind,
                                                    q, stream_header)
from conformance.adapters.xmpp.codec.xml import E, Element, StreamOpened, split

from .stream_session import InboundStream

if TYPE_CHECKING:
    from conformance.pki import CertFiles

    from .service import Service

STREAM_TAG = "{http://etherx.jabber.org/streams}stream"
DIALBACK = "jabber:server:dialback"
DIALBACK_FEATURE = "urn:xmpp:features:dialback"
XMPP_ADDR = x509.ObjectIdentifier("1.3.6.1.5.5.7.8.5")  # id-on-xmppAddr (RFC 6120 §13.7.1.4)
SRV_NAME = x509.ObjectIdentifier("1.3.6.1.5.5.7.8.7")  # id-on-dnsSRV (RFC 4985)
HOSTNAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")  # after IDNA and lowercasing
X509_V_FLAG_NO_CHECK_TIME = 0x200000  # OpenSSL: skip the validity-period check (flaw 's2s-any-certificate-accepted')


def tls_context(certs: "CertFiles", *, any_certificate: bool = False) -> ssl.SSLContext:
    """The server side of s2s TLS: TLS 1.2 at least, no compression, and a client certificate requested and, when
    one is sent, verified against the service's own CA only (not the system's trust store). Python's ssl cannot
    request a certificate without verifying it, so one that does not verify ends the handshake."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION
    context.load_cert_chain(certs.cert, certs.key)
    context.verify_mode = ssl.CERT_OPTIONAL
    context.load_verify_locations(cafile=str(certs.ca))
    if any_certificate:  # flaw: expired certificates pass too (the rest of the flaw is in S2sSession)
        context.verify_flags |= X509_V_FLAG_NO_CHECK_TIME
    return context


# -- does a certificate name a domain? (RFC 6125 §6, as RFC 6120 §13.7.1.2 and XEP-0178 §3 apply it) ---------------

def _der_string(data: bytes) -> str | None:
    """The text of a DER UTF8String or IA5String (the value of an XmppAddr or SRVName otherName)."""
    if len(data) < 2 or data[0] not in (0x0C, 0x16):
        return None
    length, offset = data[1], 2
    if length & 0x80:
        count = length & 0x7F
        if count not in (1, 2) or len(data) < 2 + count:
            return None
        length, offset = int.from_bytes(data[2:2 + count], "big"), 2 + count
    if len(data) != offset + length:
        return None
    try:
        return data[offset:].decode("utf-8")
    except UnicodeDecodeError:
        return None


def _domain(text: str | None) -> str | None:
    """`text` as a normalised domain name, or None if it is not one (a JID with a local or resource part, a
    wildcard, an IP literal)."""
    if not text:
        return None
    try:
        jid = JID.parse(text)
    except JidError:
        return None
    if jid.local is not None or jid.resource is not None or not HOSTNAME.fullmatch(jid.domain):
        return None
    return jid.domain


def _dns_id_matches(pattern: str, domain: str) -> bool:
    """A DNS-ID (or CN) against a domain: exact, or a wildcard standing for exactly one whole leftmost label, and
    never for a label right under a top-level domain ('*.test' names nothing)."""
    pattern = pattern.strip().lower().rstrip(".")
    if not pattern.startswith("*."):
        return _domain(pattern) == domain
    rest = _domain(pattern[2:])
    if rest is None or "." not in rest:
        return False
    label, _, parent = domain.partition(".")
    return bool(label) and parent == rest


def certificate_names(der: bytes, domain: str) -> bool:
    """Is the certificate (DER) valid for `domain` (a normalised domain)? DNS-IDs, SRV-IDs for _xmpp-server and
    XmppAddr identifiers; the subject's CN only when the certificate has none of those (RFC 6125 §6.4.4)."""
    cert = x509.load_der_x509_certificate(der)
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        sans = None
    presented = False
    if sans is not None:
        for name in sans.get_values_for_type(x509.DNSName):
            presented = True
            if _dns_id_matches(name, domain):
                return True
        for other in sans.get_values_for_type(x509.OtherName):
            text = _der_string(other.value)
            if other.type_id == XMPP_ADDR:
                presented = True
                if _domain(text) == domain:  # no wildcards in XmppAddr (RFC 6120 §13.7.1.4)
                    return True
            elif other.type_id == SRV_NAME:
                presented = True
                service, _, name = (text or "").partition(".")
                if service.lower() == "_xmpp-server" and _domain(name) == domain:
                    return True
    if presented:
        return False
    return any(isinstance(cn.value, str) and _dns_id_matches(cn.value, domain)
               for cn in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME))


class S2sSession(InboundStream):
    """The receiving side of one s2s stream: STARTTLS (required), SASL EXTERNAL or dialback, then stanzas from one
    domain."""

    content_ns = SERVER

    def __init__(self, service: "Service", reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        super().__init__(service, reader, writer)
        self.certificate: bytes | None = None  # the peer's verified TLS client certificate (DER), if it sent one
        self.claimed: str | None = None  # the domain the current stream header's 'from' claims
        self.authenticated: str | None = None  # the domain SASL EXTERNAL proved; the only one stanzas may come from
        self.auth_failures = 0
        self.awaiting_response = False  # EXTERNAL without an initial response: an empty challenge went out
        self.stream_id = ""  # the id of our current stream header (a dialback key is bound to it)
        self.verifying: asyncio.Task | None = None  # a dialback key being checked with its authoritative server

    def _idle_timeout(self) -> float:
        config = self.service.config
        return config.idle_timeout if self.authenticated else config.preauth_idle_timeout

    def log(self, text: str) -> None:
        self.service.log(f"[s2s {self.id} {self.authenticated or self.claimed or self.peer}] {text}")

    # -- stream header and features (RFC 6120 §4.7, §4.3.2) ------------------------------------------------------

    def _on_stream_open(self, event: StreamOpened) -> None:
        domain = self.service.config.domain
        claimed_text = event.attrs.get("from")
        claimed = _domain(claimed_text)
        # The response header goes out first, even when an error follows (RFC 6120 §4.9.1.2).
        self.stream_id = secrets.token_hex(8)
        self.writer.write(stream_header(to=claimed, from_=domain, content_ns=SERVER, stream_id=self.stream_id,
                                        extra_ns={"db": DIALBACK} if self.service.config.s2s_dialback else None))
        if event.tag != STREAM_TAG:
            self.close("invalid-namespace", "the root element must be <stream:stream/>")
            return
        if event.default_ns != SERVER:
            self.close("invalid-namespace", "this port serves jabber:server streams")
            return
        if not event.attrs.get("version", "").startswith("1."):
            self.close("unsupported-version", "stream features (version 1.0) are needed for STARTTLS and SASL")
            return
        if event.attrs.get("to", "").lower().rstrip(".") != domain:
            self.close("host-unknown", f"this service is {domain}")
            return
        if claimed_text is not None and (claimed is None or claimed == domain):
            self.close("invalid-from", "'from' must be the domain of the initiating server")
            return
        if claimed is None and self.tls:
            # RFC 6120 §4.7.1: the initiating server says which domain it is, at the latest once TLS protects it.
            self.close("improper-addressing", "a server-to-server stream header needs 'from' (the initiating domain)")
            return
        if self.authenticated is not None and claimed != self.authenticated:
            self.close("invalid-from", f"this stream is authenticated as {self.authenticated}")
            return
        self.claimed = claimed
        features = E("{http://etherx.jabber.org/streams}features")
        if not self.tls:
            features.append(E("starttls", None, E("required", ns=TLS), ns=TLS))
        elif self.authenticated is None:
            if self._external_allowed():
                features.append(E("mechanisms", None, E("mechanism", text="EXTERNAL", ns=SASL), ns=SASL))
            if self.service.config.s2s_dialback:
                features.append(E("dialback", ns=DIALBACK_FEATURE))  # XEP-0220 §2.1.1
        # otherwise no feature: without a certificate that proves the claimed domain the peer can only give up
        self.emit(features)

    def _external_allowed(self) -> bool:
        """May this peer authenticate as the domain it claims? Only with a certificate that verified against the
        service's CA (the TLS layer saw to that) and names the claimed domain."""
        if self.certificate is None or self.claimed is None:
            return False
        if self.service.flawed("s2s-any-certificate-accepted"):
            return True  # flaw: a certificate, any certificate, is taken as proof of whatever domain is claimed
        try:
            return certificate_names(self.certificate, self.claimed)
        except ValueError as exc:  # a certificate the X.509 parser refuses proves nothing
            self.log(f"peer certificate unreadable: {exc}")
            return False

    # -- units --------------------------------------------------------------------------------------------------

    async def _on_unit(self, unit: Element) -> None:
        uri = split(unit.tag)[0]
        if uri == DIALBACK:
            self._on_dialback(unit)
        elif not self.tls:
            await self._pre_tls(unit)
        elif self.authenticated is None:
            self._pre_auth(unit)
        elif kind(unit) is not None:
            self._on_stanza(unit, self.authenticated)
        else:
            self.close("unsupported-stanza-type", f"unexpected <{split(unit.tag)[1]}/> on an established stream")

    async def _pre_tls(self, unit: Element) -> None:
        if unit.tag == q(TLS, "starttls"):
            ssl_object = await self._upgrade_to_tls(self.service.s2s_tls_context, E("proceed", ns=TLS))
            if ssl_object is None:
                return
            self.certificate = ssl_object.getpeercert(binary_form=True)
            self.log(f"TLS established: {ssl_object.version()}, "
                     f"{'a verified' if self.certificate else 'no'} client certificate")
        elif unit.tag == q(SASL, "auth"):
            self.emit(E("failure", None, E("encryption-required", ns=SASL), ns=SASL))
        else:
            self.close("not-authorized", "STARTTLS and authentication are required first")

    def _pre_auth(self, unit: Element) -> None:
        if unit.tag == q(SASL, "auth"):
            self._sasl_auth(unit)
        elif unit.tag == q(SASL, "response") and self.awaiting_response:
            self.awaiting_response = False
            self._sasl_external(unit.text)
        elif unit.tag == q(SASL, "abort"):
            self.awaiting_response = False
            self.emit(E("failure", None, E("aborted", ns=SASL), ns=SASL))
        elif kind(unit) is not None and self.claimed and self.service.flawed("s2s-unauthenticated-stanzas-accepted"):
            # Flaw: the domain the stream header claims is believed as if SASL had proved it.
            self._on_stanza(unit, self.claimed)
        else:
            # RFC 6120 §4.3.5, §13.12: nothing from an unauthenticated peer is processed.
            self.close("not-authorized", "authenticate first (SASL EXTERNAL with a certificate for your domain)")

    # -- SASL EXTERNAL (RFC 6120 §6, RFC 4422 appendix A, XEP-0178 §3) -------------------------------------------

    def _sasl_auth(self, unit: Element) -> None:
        if unit.get("mechanism") != "EXTERNAL":
            self._sasl_failure("invalid-mechanism")
            return
        if not (unit.text or "").strip():  # no initial response: ask for it with an empty challenge
            self.awaiting_response = True
            self.emit(E("challenge", ns=SASL))
            return
        self._sasl_external(unit.text)

    def _sasl_external(self, response: str | None) -> None:
        try:
            authzid = sasl.unb64(response).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            self._sasl_failure("incorrect-encoding")
            return
        if authzid and _domain(authzid) != self.claimed:
            self._sasl_failure("invalid-authzid", "a server may act only as the domain its stream header names")
            return
        if not self._external_allowed():
            self._sasl_failure("not-authorized", f"no verified certificate for {self.claimed}")
            return
        self.authenticated = self.claimed
        self.log(f"authenticated as {self.authenticated} (SASL EXTERNAL)")
        self.emit(E("success", ns=SASL))
        self._restart = True

    def _sasl_failure(self, condition: str, text: str | None = None) -> None:
        self.auth_failures += 1
        self.log(f"SASL failure {condition} ({self.auth_failures} so far)")
        self.emit(E("failure", None, E(condition, ns=SASL), E("text", text=text, ns=SASL) if text else None, ns=SASL))
        limit = self.service.config.max_auth_failures
        if self.auth_failures >= limit:
            self.close("policy-violation", f"too many failed authentication attempts ({limit})")

    # -- server dialback (XEP-0220), the receiving server's part ----------------------------------------------------

    def _on_dialback(self, unit: Element) -> None:
        name = split(unit.tag)[1]
        if name == "verify" and unit.get("type") is None:
            # We are asked, as an authoritative server, about a key one of our own streams sent. This service
            # never initiates dialback, so no key is ours.
            self.emit(E(f"{{{DIALBACK}}}verify", {"from": self.service.config.domain, "to": unit.get("from"),
                                                  "id": unit.get("id"), "type": "invalid"}))
            return
        if name != "result" or unit.get("type") is not None or not self.tls:
            self.close("policy-violation", "only a dialback key (<db:result/>) over TLS is taken here")
            return
        if self.service.flawed("dialback-unverified-accepted"):
            self._dialback_without_verification(unit)
            return
        if not self.service.config.s2s_dialback:
            # Certificates only: identity is proved by SASL EXTERNAL (XEP-0178).
            self.close("policy-violation", "server dialback is not offered; authenticate with SASL EXTERNAL")
            return
        claimed = _domain(unit.get("from"))
        if claimed is None or claimed != self.claimed:
            self.close("invalid-from", "a dialback key is for the domain the stream header names")
            return
        if (unit.get("to") or "").lower() != self.service.config.domain:
            self.close("host-unknown", f"this service is {self.service.config.domain}")
            return
        if self.authenticated is not None or self.verifying is not None:
            self.close("policy-violation", "one dialback claim per stream")
            return
        self.verifying = asyncio.get_running_loop().create_task(self._verify(claimed, (unit.text or "").strip()))

    async def _verify(self, claimed: str, key: str) -> None:
        """XEP-0220 §2.2-§2.4: ask the claimed domain's authoritative server; only 'valid' authenticates."""
        answer = await self.service.s2s_out.verify_dialback(claimed, self.stream_id, key)
        if self.closed:
            return
        if answer == "invalid" and self.service.flawed("dialback-verification-ignored"):
            answer = "valid"  # flaw: the authoritative server answered, and an answer is taken for a confirmation
        self.log(f"dialback key for {claimed}: {answer} (its authoritative server's answer)")
        attrs = {"from": self.service.config.domain, "to": claimed, "type": "valid" if answer == "valid" else
                 "invalid" if answer == "invalid" else "error"}
        if answer == "valid":
            self.authenticated = claimed
            self.emit(E(f"{{{DIALBACK}}}result", attrs))
        elif answer == "invalid":
            self.emit(E(f"{{{DIALBACK}}}result", attrs))
            self.close("not-authorized", f"{claimed}'s authoritative server did not confirm the dialback key")
        else:
            self.emit(E(f"{{{DIALBACK}}}result", attrs, E("remote-server-not-found", ns=STANZAS_ERR)))
            self.close("not-authorized", f"{claimed}'s authoritative server could not be asked: {answer}")
        await self._drain()

    def _dialback_without_verification(self, result: Element) -> None:
        """Flaw 'dialback-unverified-accepted': takes a dialback key as proof without asking the claimed domain's
        authoritative server to verify it (XEP-0220 §2.2.1 requires that verification)."""
        claimed = _domain(result.get("from"))
        if claimed is None:
            self.close("improper-addressing", "dialback result without a valid 'from'")
            return
        self.authenticated = claimed
        self.log(f"dialback key from {claimed} accepted unverified (flaw)")
        self.emit(E(f"{{{DIALBACK}}}result", {"from": self.service.config.domain, "to": claimed, "type": "valid"}))

    # -- stanzas (RFC 6120 §8.1.1.1, §8.1.2.2) ---------------------------------------------------------------------

    def _on_stanza(self, stanza: Element, domain: str) -> None:
        if split(stanza.tag)[0] != SERVER:
            self.close("invalid-namespace", "stanzas on a server-to-server stream are in 'jabber:server'")
            return
        from_text, to_text = stanza.get("from"), stanza.get("to")
        if not from_text or not to_text:
            self.close("improper-addressing", "stanzas between servers carry both 'from' and 'to'")
            return
        try:
            sender = JID.parse(from_text)
        except JidError:
            self.close("invalid-from", "malformed 'from' address")
            return
        if sender.domain != domain and not self.service.flawed("s2s-from-not-checked"):
            self.close("invalid-from", f"this stream is authenticated for {domain} only")
            return
        try:
            to = JID.parse(to_text)
        except JidError:
            self.close("improper-addressing", "malformed 'to' address")
            return
        if to.domain != self.service.config.domain:
            self.close("host-unknown", f"this service is {self.service.config.domain} and relays for no one")
            return
        # the routing code works in 'jabber:client', as stanzas are stored and delivered to local users
        stanza = in_content_ns(stanza, SERVER, CLIENT)
        stanza.set("from", str(sender))
        stanza.set("to", str(to))
        self.service.handle_remote_stanza(sender, stanza, to)
