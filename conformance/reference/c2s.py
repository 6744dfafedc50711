"""One client-to-server stream of the reference service: STARTTLS (required), SASL, resource binding, then stanzas.

The order is enforced as RFC 6120 §4.3.5 and §7.1 require: nothing is routed before TLS, authentication and
binding are complete; anything else gets a stream error and the stream is closed. Stream management (XEP-0198,
`sm.py`) may be enabled once bound; a session whose connection drops without its stream being closed then
hibernates, and a later stream of the same user may resume it in place of binding.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import secrets
from typing import TYPE_CHECKING

from scramp import ScramException, ScramMechanism
from scramp.core import CBindData
from scramp.core import ChannelBinding as ScramChannelBinding
from scramp.utils import ServerError

from conformance.adapters.xmpp.codec import sasl
from conformance.adapters.xmpp.codec.jid import JID, JidError
from conformance.adapters.xmpp.codec.stanza import (BIND, CLIENT, SASL, SESSION, SM, TLS, iq_result, kind, q,
                                                    stanza_error, stream_header)
from conformance.adapters.xmpp.codec.xml import E, Element, Limits, StreamOpened, StreamParser, split

from .limits import TokenBucket
from .stream_session import InboundStream

if TYPE_CHECKING:
    from .service import Service
    from .sm import SmState

STREAM_TAG = "{http://etherx.jabber.org/streams}stream"
STREAM_LIMITS = "urn:xmpp:stream-limits:0"  # XEP-0478
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-1")
SCRAM_PLUS_MECHANISMS = ("SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS")
# SCRAM errors about channel binding (RFC 5802 §7 server-error): refused as <not-authorized/>, the error in <text/>.
CHANNEL_BINDING_ERRORS = (ServerError.CHANNEL_BINDINGS_DONT_MATCH, ServerError.SERVER_DOES_SUPPORT_CHANNEL_BINDING,
                          ServerError.CHANNEL_BINDING_NOT_SUPPORTED, ServerError.UNSUPPORTED_CHANNEL_BINDING_TYPE)


class Session(InboundStream):
    content_ns = CLIENT

    def __init__(self, service: "Service", reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 direct_tls: bool = False, plaintext_door: bool = False):
        super().__init__(service, reader, writer)
        self.tls = direct_tls  # XEP-0368: TLS from the first byte
        self.plaintext_door = plaintext_door  # flaw 'plaintext-side-door': a legacy port without STARTTLS
        self.channel_binding: tuple[str, bytes] | None = \
            sasl.tls_unique(writer.get_extra_info("ssl_object")) if direct_tls else None
        self.user: str | None = None  # authenticated localpart
        self.jid: JID | None = None  # bound full JID
        self.anonymous = False
        self.available = False
        self.presence: Element | None = None  # last available presence broadcast by this resource
        self.directed: set[str] = set()
        self.carbons = False
        self.auth_failures = 0
        self.counted_as_authenticated = False  # told the connection limits that this one has authenticated
        self.fetches = TokenBucket(service.config.fetch_rate, service.config.fetch_burst)
        self.sm: "SmState | None" = None  # stream management, once enabled (sm.py)
        self.detached = False  # the connection is gone but the session waits for resumption
        self.superseded = False  # another stream resumed this session
        self._scram = None
        self.header_sent = False  # our stream header of the current stream (a stream error must follow one)

    def _new_parser(self) -> StreamParser:
        config = self.service.config
        limits = Limits(max_unit_bytes=config.max_unit_bytes, max_depth=config.max_depth)
        if self.service.flawed("stanza-size-unlimited"):
            limits = dataclasses.replace(limits, max_unit_bytes=config.max_write_buffer * 16)
        if self.service.flawed("nesting-depth-unlimited"):
            limits = dataclasses.replace(limits, max_depth=1_000_000)
        # Flaw 'entities-expanded': a parser left at a general-purpose XML library's defaults, which takes a
        # document type declaration and expands the entities of its internal subset (RFC 6120 §11.1 forbids both).
        return StreamParser(limits, expand_internal_entities=self.service.flawed("entities-expanded"))

    def _idle_timeout(self) -> float:
        return self.service.config.idle_timeout if self.jid else self.service.config.preauth_idle_timeout

    def _on_restart(self) -> None:
        self.header_sent = False

    # -- output -----------------------------------------------------------------------------------------------

    def log(self, text: str) -> None:
        self.service.log(f"[{self.id} {self.jid or self.user or self.peer}] {text}")

    def send(self, element: Element) -> None:
        """Send a stanza to the client (counted and kept until acknowledged when stream management is on)."""
        if self.closed and not self.detached:
            return
        if self.sm is not None and kind(element) is not None:
            self.service.sm.track(self, element)
        self.emit(element)

    def _writable(self) -> bool:
        return not (self.closed or self.detached)

    def close(self, condition: str | None = None, text: str | None = None, extra: Element | None = None) -> None:
        if self.detached:
            self.service.sm.end_hibernation(self, f"closed by the service ({condition or 'no error'})")
            return
        super().close(condition, text, extra)

    def _before_stream_error(self) -> None:
        if not self.header_sent:  # RFC 6120 §4.9.1.1: an error before our header still opens the stream
            self._send_header()

    # -- end of the connection ------------------------------------------------------------------------------------------

    def _ended(self) -> None:
        if self.superseded:
            self.log("stream closed; its session lives on in the stream that resumed it")
            return
        if not self.closing and self.service.sm.hibernate(self):
            self.closed = False  # still a session of its user: stanzas to it are queued for the resumption
            return
        self.service.session_ended(self)
        self.service.sm.session_over(self)
        self.log("closed")

    def _send_header(self) -> None:
        self.writer.write(stream_header(to=None, from_=self.service.config.domain, stream_id=secrets.token_hex(8)))
        self.header_sent = True

    def _on_stream_open(self, event: StreamOpened) -> None:
        self._send_header()
        if event.tag != STREAM_TAG:
            self.close("invalid-namespace", "the root element must be <stream:stream/>")
            return
        if event.default_ns != CLIENT:
            self.close("invalid-namespace", "this port serves jabber:client streams")
            return
        if event.attrs.get("to", "").lower() != self.service.config.domain:
            self.close("host-unknown", f"this service is {self.service.config.domain}")
            return
        features = E("{http://etherx.jabber.org/streams}features")
        plaintext_allowed = self._plaintext_allowed()
        if not self.tls:
            features.append(E("starttls", None, None if plaintext_allowed else E("required", ns=TLS), ns=TLS))
        if (self.tls or plaintext_allowed) and self.user is None:
            mechs = E("mechanisms", ns=SASL)
            for name in self._mechanisms():
                mechs.append(E("mechanism", text=name, ns=SASL))
            features.append(mechs)
            if self.channel_binding is not None:  # XEP-0440: which channel-binding type the -PLUS mechanisms use
                features.append(E("sasl-channel-binding", None,
                                  E("channel-binding", {"type": self.channel_binding[0]}, ns=sasl.SASL_CB),
                                  ns=sasl.SASL_CB))
        elif self.user is not None and self.jid is None:
            features.append(E("bind", ns=BIND))
            features.append(E("session", None, E("optional", ns=SESSION), ns=SESSION))
            features.append(self.service.sm.feature())
        if not self.service.flawed("stanza-size-unlimited"):  # XEP-0478: the limits this stream is held to
            features.append(E("limits", None, E("max-bytes", text=str(self.service.config.max_unit_bytes),
                                                ns=STREAM_LIMITS), ns=STREAM_LIMITS))
        self.emit(features)
        claimed = event.attrs.get("from")
        if claimed and self.tls and self.user is None and self.service.flawed("offline-to-announced-identity"):
            # Flaw: "deliver early" keyed on the identity the stream header announces, before SASL has proved it.
            self.service.flush_offline_to(self, claimed)

    async def _on_unit(self, unit: Element) -> None:
        if not self.tls and (unit.tag == q(TLS, "starttls") or not self._plaintext_allowed()):
            await self._pre_tls(unit)
        elif self.user is None and not self.anonymous:
            self._pre_auth(unit)
        elif self.jid is None:
            self._pre_bind(unit)
        elif kind(unit) is not None:
            self.service.handle_stanza(self, unit)
            if self.sm is not None:
                self.sm.handled_in += 1
        elif split(unit.tag)[0] == SM:
            self.service.sm.nonza(self, unit)
        else:
            self.close("unsupported-stanza-type", f"unexpected <{unit.tag}/> on an established stream")

    # -- STARTTLS (RFC 6120 §5) -------------------------------------------------------------------------------------

    async def _pre_tls(self, unit: Element) -> None:
        if unit.tag == q(TLS, "starttls"):
            ssl_object = await self._upgrade_to_tls(self.service.tls_context, E("proceed", ns=TLS),
                                                    keep_open_on_failure=self.service.flawed("tls-errors-ignored"))
            if ssl_object is None:
                return
            self.log(f"TLS established: {ssl_object.version()}")
            # SCRAM-*-PLUS only where the binding identifies this connection: tls-unique on TLS 1.2 (RFC 9266 §3
            # forbids it on TLS 1.3; Python's ssl has no exporter for tls-exporter).
            self.channel_binding = sasl.tls_unique(ssl_object)
        elif unit.tag == q(SASL, "auth"):
            # RFC 6120 §6.4: mechanisms are only offered after TLS; say why instead of silently failing.
            self.send(E("failure", None, E("encryption-required", ns=SASL), ns=SASL))
        elif kind(unit) is not None and self.service.flawed("unauthenticated-stanzas-routed"):
            self._route_unauthenticated(unit)
        else:
            self.close("not-authorized", "STARTTLS and authentication are required first")

    # -- SASL (RFC 6120 §6) --------------------------------------------------------------------------------------------

    def _pre_auth(self, unit: Element) -> None:
        if unit.tag in (q(SM, "enable"), q(SM, "resume")):
            self.service.sm.nonza(self, unit)  # XEP-0198: <failed/>, neither is allowed before authentication
        elif unit.tag == q(SASL, "auth"):
            self._sasl_auth(unit)
        elif unit.tag == q(SASL, "response") and self._scram is not None:
            self._sasl_response(unit)
        elif unit.tag == q(SASL, "abort"):
            self._scram = None
            self.send(E("failure", None, E("aborted", ns=SASL), ns=SASL))
        elif kind(unit) == "iq" and unit.find(q(BIND, "bind")) is not None and self.service.flawed("anonymous-bind"):
            self.anonymous = True
            self.user = f"anon-{secrets.token_hex(4)}"
            self._bind(unit)
        elif kind(unit) is not None and self.service.flawed("unauthenticated-stanzas-routed"):
            self._route_unauthenticated(unit)
        else:
            self.close("not-authorized", "authenticate first")

    def _route_unauthenticated(self, unit: Element) -> None:
        # Flaw: believe whatever 'from' an unauthenticated stream claims.
        try:
            claimed = JID.parse(unit.get("from") or "")
        except JidError:
            self.close("not-authorized", "authenticate first")
            return
        if claimed.domain != self.service.config.domain or claimed.local not in self.service.store.accounts:
            self.close("not-authorized", "authenticate first")
            return
        self.service.handle_stanza(self, unit, sender=claimed)

    def _sasl_failure(self, condition: str, text: str | None = None) -> None:
        self._scram = None
        self.auth_failures += 1
        self.log(f"SASL failure {condition} ({self.auth_failures} so far)")
        self.send(E("failure", None, E(condition, ns=SASL), E("text", text=text, ns=SASL) if text else None, ns=SASL))
        limit = self.service.config.max_auth_failures
        if self.auth_failures >= limit and not self.service.flawed("unlimited-auth-retries"):
            self.close("policy-violation", f"too many failed authentication attempts ({limit})")

    def _sasl_success(self, user: str, additional: bytes = b"") -> None:
        self._scram = None
        self.user = user
        self._count_as_authenticated()
        self.log(f"authenticated as {user}")
        self.send(E("success", text=sasl.b64(additional) if additional else None, ns=SASL))
        self._restart = True

    def _count_as_authenticated(self) -> None:
        if not self.counted_as_authenticated:
            self.counted_as_authenticated = True
            self.service.limits.authenticated(self.peer.rsplit(":", 1)[0])

    def _account(self, username: str) -> str | None:
        try:
            user = JID.parse(f"{username}@{self.service.config.domain}").local
        except JidError:
            return None
        return user if user in self.service.store.accounts else None

    def _plaintext_allowed(self) -> bool:
        """Whether a stream may go on without TLS: under flaws, or where the stand-in plays a lenient service."""
        return self.service.flawed("starttls-optional") or self.plaintext_door or self.service.tls_optional

    def _mechanisms(self) -> tuple[str, ...]:
        # PLAIN only where a flaw wants it: next to SCRAM it would only put a reusable secret on the wire
        # (RFC 6120 §13.8.3).
        plain = self.service.flawed("authzid-honoured") or (self.service.config.offer_plain and self.tls) or \
            ((self.service.flawed("starttls-optional") or self.plaintext_door) and not self.tls)
        scram = (*SCRAM_PLUS_MECHANISMS, *SCRAM_MECHANISMS) if self.channel_binding is not None else SCRAM_MECHANISMS
        # XEP-0175 guests, inside TLS only: authenticated as no one, they get a temporary address and no rights
        anonymous = ("ANONYMOUS",) if self.tls else ()
        return (*scram, "PLAIN", *anonymous) if plain else (*scram, *anonymous)

    def _sasl_auth(self, unit: Element) -> None:
        mechanism = unit.get("mechanism", "")
        if mechanism not in self._mechanisms():
            self._sasl_failure("invalid-mechanism")
            return
        try:
            data = sasl.unb64(unit.text)
        except ValueError:
            self._sasl_failure("incorrect-encoding")
            return
        if mechanism == "PLAIN":
            self._sasl_plain(data)
        elif mechanism == "ANONYMOUS":
            self._sasl_success(f"anon-{secrets.token_hex(6)}")  # RFC 4505: the trace data proves nothing
        elif mechanism in SCRAM_MECHANISMS or mechanism in SCRAM_PLUS_MECHANISMS:
            self._sasl_scram_first(mechanism, data)
        else:
            self._sasl_failure("invalid-mechanism")

    def _sasl_plain(self, data: bytes) -> None:
        try:
            authzid, authcid, password = data.decode("utf-8").split("\0")
        except (UnicodeDecodeError, ValueError):
            self._sasl_failure("malformed-request")
            return
        user = self._account(authcid)
        if user is None or not self.service.store.check_password(user, password):
            self._sasl_failure("not-authorized")
            return
        if authzid:
            wanted = self._authzid_account(authzid)
            if wanted != user:
                if self.service.flawed("authzid-honoured") and wanted is not None:
                    self._sasl_success(wanted)
                    return
                self._sasl_failure("invalid-authzid", "you may act only as yourself")
                return
        self._sasl_success(user)

    def _authzid_account(self, authzid: str) -> str | None:
        try:
            jid = JID.parse(authzid)
        except JidError:
            return None
        if jid.domain != self.service.config.domain or jid.resource or jid.local not in self.service.store.accounts:
            return None
        return jid.local

    def _sasl_scram_first(self, mechanism: str, data: bytes) -> None:
        try:
            first = data.decode("utf-8")
            gs2_flag, authzid_part, bare = first.split(",", 2)
            username = next(p[2:] for p in bare.split(",") if p.startswith("n="))
        except (UnicodeDecodeError, ValueError, StopIteration):
            self._sasl_failure("malformed-request")
            return
        username = username.replace("=2C", ",").replace("=3D", "=")
        user = self._account(username)
        if authzid_part:
            # RFC 6120 §6.3.8: an authorization identity other than the user's own is refused.
            wanted = self._authzid_account(authzid_part[2:]) if authzid_part.startswith("a=") else None
            self._sasl_failure("invalid-authzid" if wanted != user or user is None else "not-authorized",
                               "you may act only as yourself")
            return
        store = self.service.store

        def auth_fn(_name: str):
            info = store.scram_auth_info(user, mechanism) if user else None
            if info is None:  # unknown user: run the exchange with random keys so it fails like a bad password
                salt, stored, server, iterations = ScramMechanism(mechanism).make_auth_info(secrets.token_hex(16))
                return salt, stored, server, iterations
            return info

        # Flaw 'scram-nonce-reused': a server nonce derived from the user name instead of fresh randomness, so a
        # recorded exchange verifies again.
        s_nonce = hashlib.sha256(username.encode()).hexdigest()[:24] if self.service.flawed("scram-nonce-reused") \
            else None
        # With channel binding on offer, every SCRAM exchange knows it, so that a client sending the GS2 flag 'y'
        # (it supports channel binding but saw no -PLUS mechanism) is refused: RFC 5802 §6.
        # Flaw 'channel-binding-downgrade-accepted': only the -PLUS mechanisms are given the channel binding, so
        # the non-PLUS ones accept 'y' as if the service had none.
        binding = self.channel_binding
        if not mechanism.endswith("-PLUS") and self.service.flawed("channel-binding-downgrade-accepted"):
            binding = None
        server = ScramMechanism(mechanism).make_server(auth_fn, channel_binding=binding, s_nonce=s_nonce)
        try:
            server.set_client_first(first)
            challenge = server.get_server_first()
        except ScramException as exc:
            if exc.server_error in CHANNEL_BINDING_ERRORS:
                self._sasl_failure("not-authorized", f"e={exc.server_error.value}")
            else:
                self._sasl_failure("malformed-request", str(exc))
            return
        self._scram = (server, user)
        self.send(E("challenge", text=sasl.b64(challenge), ns=SASL))

    def _sasl_response(self, unit: Element) -> None:
        server, user = self._scram
        try:
            client_final = sasl.unb64(unit.text).decode("utf-8")
            if server.cb is not None and self.service.flawed("channel-binding-ignored"):
                self._believe_client_channel_binding(server, client_final)
            server.set_client_final(client_final)
            final = server.get_server_final()
        except ScramException as exc:
            cb_error = exc.server_error in CHANNEL_BINDING_ERRORS
            self._sasl_failure("not-authorized", f"e={exc.server_error.value}" if cb_error else None)
            return
        except (ValueError, UnicodeDecodeError):
            self._sasl_failure("not-authorized")
            return
        if user is None:
            self._sasl_failure("not-authorized")
            return
        self._sasl_success(user, final.encode())

    @staticmethod
    def _believe_client_channel_binding(server, client_final: str) -> None:
        """Flaw 'channel-binding-ignored': take the channel-binding data in the client's c= attribute for the
        stream's own, so the comparison always holds, whichever TLS session (a MITM's) the client measured."""
        c_attr = next((part[2:] for part in client_final.split(",") if part.startswith("c=")), "")
        header = str(server.gs2_header).encode()
        claimed = sasl.unb64(c_attr)
        if claimed.startswith(header) and len(claimed) > len(header):
            server.cb = ScramChannelBinding(server.cb.name, CBindData(claimed[len(header):]))

    # -- resource binding (RFC 6120 §7) ------------------------------------------------------------------------------

    def _pre_bind(self, unit: Element) -> None:
        if kind(unit) == "iq" and unit.find(q(BIND, "bind")) is not None and unit.get("type") == "set":
            self._bind(unit)
        elif unit.tag in (q(SM, "enable"), q(SM, "resume")):
            self.service.sm.nonza(self, unit)  # resumption takes the place of binding; enabling must wait for it
        elif kind(unit) is not None and self.service.flawed("stanza-before-bind-routed"):
            sender = JID.parse(f"{self.user}@{self.service.config.domain}")
            self.service.handle_stanza(self, unit, sender=sender)
        else:
            self.close("not-authorized", "bind a resource first")

    def _bind(self, unit: Element) -> None:
        requested = unit.findtext(f"{q(BIND, 'bind')}/{q(BIND, 'resource')}")
        domain = self.service.config.domain
        try:
            jid = JID.parse(f"{self.user}@{domain}/{requested or secrets.token_hex(4)}")
        except JidError:
            self.send(stanza_error(unit, "bad-request", "modify"))
            return
        self.jid = self.service.bind(self, jid)
        self.log(f"bound {self.jid}")
        self.send(iq_result(unit, E("bind", None, E("jid", text=str(self.jid), ns=BIND), ns=BIND)))
