"""The harness's own XMPP client stream (c2s initiating side), asyncio over a recorded Connection.

Every negotiation step is a separate coroutine so a test can stop after any of them, skip one, or send raw bytes
in between. After negotiation a pump task reads the stream; everything received is kept (bounded) so that
negative checks can look back over all of it.

Stream management (XEP-0198) is spoken at byte level too: the client counts the stanzas it handled once
<enabled/> arrives, answers <r/> with the true count unless told not to, can send an <a/> with any count, drop
its connection without closing the stream, and resume a session on a fresh stream.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import ssl
from typing import Callable

from conformance.transport.connection import Connection, ConnectionClosed

from .codec import sasl
from .codec.jid import JID
from .codec.stanza import (BIND, BLOCKING, CLIENT, PING, PRIVACY, ROSTER, SASL, SM, STREAM_CLOSE, TLS, error_condition,
                           is_stream_error, iq, iq_result, kind, new_id, q, stanza_error, stream_header)
from .codec.xml import E, Element, Limits, StreamClosed, StreamOpened, StreamParser, UnitReceived, XmlError, to_bytes

MAX_KEPT_UNITS = 20_000
MAX_KEPT_BYTES = 8 * 1024 * 1024  # wire size of the units one stream keeps: 20 000 units of the maximal size would
# otherwise be gigabytes. Beyond either bound units are dropped (counted): a fence sent afterwards is lost with them,
# so a check that needs it ends in ERROR, never in a verdict drawn from what was not kept.
PUSHES = ((ROSTER, "query"), (BLOCKING, "block"), (BLOCKING, "unblock"), (PRIVACY, "query"))
CLOSE_WAIT = 1.0  # seconds to wait for the IUT's closing tag after ours


class ProtocolViolation(Exception):
    """The IUT answered something that is not XMPP as negotiated (wrong element, malformed XML, ...)."""


class StreamEnded(Exception):
    """The IUT ended the stream (stream error, </stream:stream> or TCP close) while we waited for something."""

    def __init__(self, client: "XmppClient"):
        self.condition = client.stream_error_condition
        super().__init__(client.end_reason())


@dataclasses.dataclass
class AuthResult:
    mechanism: str
    success: bool
    condition: str | None  # SASL failure condition, or the stream error condition if the stream ended
    element: Element | None


class XmppClient:
    def __init__(self, conn: Connection, domain: str, *, limits: Limits, timeout: float):
        self.conn = conn
        self.domain = domain
        self.limits = limits
        self.timeout = timeout  # bound for each single protocol step
        self.parser = StreamParser(limits)
        self.stream_attrs: dict[str, str] = {}
        self.features: Element | None = None
        self.jid: JID | None = None
        self.received: list[Element] = []
        self.dropped_units = 0
        self.kept_bytes = 0
        self._unit_size = 0  # wire size of the unit _next_unit returned last
        self.stream_error: Element | None = None
        self.stream_closed = False  # IUT sent </stream:stream>
        self.xml_error: XmlError | None = None
        self._pending: collections.deque[tuple[Element, int]] = collections.deque()
        self._changed = asyncio.Event()
        self._pump: asyncio.Task | None = None
        self.auto_reply = True
        self.sasl_sent: list[str] = []  # the client's SASL messages of the last exchange (for replay tests)
        self.sasl_received: list[str] = []  # the IUT's SCRAM messages of the last exchange (server-first, -final)
        self.announce: str | None = None  # 'from' of the stream headers sent from now on (RFC 6120 §4.7.1)
        self.prolog = b""  # sent before the next stream header only (e.g. a DOCTYPE, which RFC 6120 §11.1 forbids)
        self.content_ns = CLIENT  # jabber:server when the harness plays a server (server-to-server streams)
        self.extra_ns: dict[str, str] = {}  # prefixes the stream header declares (a server's xmlns:db, XEP-0220)
        self.trusted: set[str] = set()  # bare JIDs of approved contacts (the owning party keeps it up to date)
        # stream management (XEP-0198)
        self.sm_id: str | None = None  # SM-ID of the session, when the IUT made it resumable
        self.sm_counting = False  # <enabled/> (or <resumed/>) arrived: stanzas received are counted
        self.sm_handled = 0  # stanzas handled since then: the 'h' this client reports
        self.sm_auto_ack = True  # answer <r/> with the true count
        self._resume_h = 0  # the count a <resume/> reported: counting goes on from there after <resumed/>

    # -- state --------------------------------------------------------------------------------------------------

    @property
    def label(self) -> str:
        return self.conn.label

    @property
    def ended(self) -> bool:
        return self.stream_error is not None or self.stream_closed or self.conn.closed or self.xml_error is not None

    @property
    def stream_error_condition(self) -> str | None:
        return error_condition(self.stream_error) if self.stream_error is not None else None

    def end_reason(self) -> str:
        if self.stream_error is not None:
            return f"stream error <{self.stream_error_condition}/>"
        if self.xml_error is not None:
            return f"the IUT sent XML we refuse ({self.xml_error})"
        if self.stream_closed:
            return "the IUT closed the stream"
        if self.conn.closed:
            return f"the connection failed ({self.conn.ended_by})" if self.conn.ended_by else \
                "the IUT closed the connection"
        return "stream open"

    # -- reading ------------------------------------------------------------------------------------------------

    async def _fill(self) -> None:
        """Read once from the connection and parse; raises ConnectionClosed at EOF."""
        data = await self.conn.recv()
        try:
            events = self.parser.feed(data)
        except XmlError as exc:
            self.xml_error = exc
            self.conn.recorder.event(self.label, f"refused XML from the IUT: {exc}")
            raise ConnectionClosed(str(exc)) from None
        for event in events:
            if isinstance(event, StreamOpened):
                self.stream_attrs = event.attrs
            elif isinstance(event, UnitReceived):
                self._pending.append((event.element, event.raw_size))
            elif isinstance(event, StreamClosed):
                self.stream_closed = True

    async def _next_unit(self, timeout: float | None) -> Element:
        async def read() -> Element:
            while not self._pending:
                if self.stream_closed:
                    raise ConnectionClosed("stream closed")
                await self._fill()
            unit, self._unit_size = self._pending.popleft()
            return unit

        unit = await (asyncio.wait_for(read(), timeout) if timeout is not None else read())
        if is_stream_error(unit):
            self.stream_error = unit
            raise ConnectionClosed(f"stream error {error_condition(unit)}")
        return unit

    async def read_unit(self, timeout: float | None = None) -> Element:
        """The next unit during negotiation (before the pump runs). Raises StreamEnded or TimeoutError."""
        try:
            return await self._next_unit(self.timeout if timeout is None else timeout)
        except ConnectionClosed:
            raise StreamEnded(self) from None

    # -- negotiation --------------------------------------------------------------------------------------------

    async def send(self, element: Element) -> None:
        await self.conn.send(to_bytes(element, self.content_ns))

    async def send_raw(self, data: bytes) -> None:
        await self.conn.send(data)

    async def open_stream(self, *, to: str | None = None, from_: str | None = None) -> Element:
        """Send a stream header, read the IUT's header and its stream features."""
        self.parser = StreamParser(self.limits)
        self.stream_attrs = {}
        self._pending.clear()
        header = stream_header(to=to or self.domain, from_=from_ or self.announce, content_ns=self.content_ns,
                               extra_ns=self.extra_ns or None)
        if self.prolog:
            header, self.prolog = header.replace(b"?>", b"?>" + self.prolog, 1), b""
        await self.send_raw(header)
        unit = await self.read_unit()
        if unit.tag != q("http://etherx.jabber.org/streams", "features"):
            raise ProtocolViolation(f"expected <stream:features/>, got {unit.tag}")
        self.features = unit
        return unit

    def feature(self, ns: str, local: str) -> Element | None:
        return self.features.find(q(ns, local)) if self.features is not None else None

    def mechanisms(self) -> list[str]:
        mechs = self.feature(SASL, "mechanisms")
        if mechs is None:
            return []
        return [(m.text or "").strip() for m in mechs.findall(q(SASL, "mechanism"))]

    def channel_binding_types(self) -> list[str] | None:
        """The channel-binding types the IUT advertised (XEP-0440); None when it did not say."""
        offer = self.feature(sasl.SASL_CB, "sasl-channel-binding")
        if offer is None:
            return None
        return [c.get("type", "") for c in offer.findall(q(sasl.SASL_CB, "channel-binding"))]

    def own_channel_binding(self) -> sasl.ChannelBinding | None:
        """The channel binding of this client's own TLS connection, where the harness can compute one (tls-unique on
        TLS 1.2). Through an on-path attacker this is the attacker's TLS session with the client, not the IUT's."""
        return sasl.tls_unique(self.conn.tls_object())

    async def request_tls(self) -> None:
        """Send <starttls/> and read <proceed/> (RFC 6120 §5.4.2): the next bytes on the socket are TLS."""
        await self.send(E("starttls", ns=TLS))
        answer = await self.read_unit()
        if answer.tag != q(TLS, "proceed"):
            raise ProtocolViolation(f"STARTTLS refused: got <{answer.tag.split('}')[-1]}/>")

    async def starttls(self, context: ssl.SSLContext) -> None:
        await self.request_tls()
        await self.conn.start_tls(context, server_hostname=self.domain, timeout=self.timeout)
        await self.open_stream()

    async def authenticate(self, username: str, password: str, *, mechanism: str | None = None,
                           authzid: str | None = None, channel_binding: sasl.ChannelBinding | None = None,
                           claim_no_channel_binding: bool = False) -> AuthResult:
        """SASL with the given or best offered mechanism. Never raises for a refusal: returns it.

        Without a mechanism the best offered non-PLUS SCRAM is chosen, or with `channel_binding` (type, data) the
        best offered SCRAM-*-PLUS. `claim_no_channel_binding` sends the GS2 flag 'y' (RFC 5802 §6)."""
        offered = self.mechanisms()
        if mechanism is None:
            preference = sasl.SCRAM_PLUS_PREFERENCE if channel_binding is not None else sasl.SCRAM_PREFERENCE
            mechanism = next((m for m in preference if m in offered), None)
            if mechanism is None and channel_binding is None and "PLAIN" in offered and self.conn.tls_active:
                mechanism = "PLAIN"
            if mechanism is None:
                raise ProtocolViolation(f"no usable SASL mechanism offered (offered: {offered or 'none'})")
        try:
            if mechanism == "PLAIN":
                result = await self._auth_plain(username, password, authzid or "")
            elif mechanism == "ANONYMOUS":
                result = await self._auth_anonymous()
            elif mechanism == "EXTERNAL":
                result = await self._auth_external(authzid)
            else:
                result = await self._auth_scram(mechanism, username, password, authzid,
                                                channel_binding=channel_binding,
                                                claim_no_channel_binding=claim_no_channel_binding)
        except StreamEnded as ended:
            return AuthResult(mechanism, False, ended.condition or "stream-ended", self.stream_error)
        if result.success:
            await self.open_stream()
        return result

    async def _auth_external(self, authzid: str | None) -> AuthResult:
        """SASL EXTERNAL (RFC 4422 App. A, XEP-0178): the identity is the TLS client certificate's; a server names
        the domain it claims as authorization identity, or sends '=' to let the certificate speak."""
        await self.send(E("auth", {"mechanism": "EXTERNAL"}, text=sasl.b64(authzid or ""), ns=SASL))
        return self._auth_outcome("EXTERNAL", await self.read_unit())

    async def _auth_anonymous(self) -> AuthResult:
        """SASL ANONYMOUS (RFC 4505, XEP-0175): no credentials; the service assigns a temporary identity."""
        await self.send(E("auth", {"mechanism": "ANONYMOUS"}, ns=SASL))
        return self._auth_outcome("ANONYMOUS", await self.read_unit())

    async def _auth_plain(self, username: str, password: str, authzid: str) -> AuthResult:
        await self.send(E("auth", {"mechanism": "PLAIN"}, text=sasl.b64(sasl.plain_message(username, password, authzid)),
                          ns=SASL))
        answer = await self.read_unit()
        return self._auth_outcome("PLAIN", answer)

    async def _auth_scram(self, mechanism: str, username: str, password: str, authzid: str | None, *,
                          channel_binding: sasl.ChannelBinding | None = None,
                          claim_no_channel_binding: bool = False) -> AuthResult:
        client = sasl.scram_client(mechanism, username, password, authzid, channel_binding=channel_binding,
                                   claim_no_channel_binding=claim_no_channel_binding)
        client_first = client.get_client_first()
        self.sasl_sent = [client_first]
        self.sasl_received = []
        await self.send(E("auth", {"mechanism": mechanism}, text=sasl.b64(client_first), ns=SASL))
        answer = await self.read_unit()
        if answer.tag != q(SASL, "challenge"):
            return self._auth_outcome(mechanism, answer)
        try:
            self.sasl_received.append(sasl.unb64(answer.text).decode())
            client.set_server_first(self.sasl_received[0])
            final = client.get_client_final()
        except (ValueError, UnicodeError, sasl.scramp.ScramException) as exc:
            raise ProtocolViolation(f"malformed SCRAM server-first-message: {exc}") from None
        self.sasl_sent.append(final)
        await self.send(E("response", text=sasl.b64(final), ns=SASL))
        answer = await self.read_unit()
        if answer.tag == q(SASL, "challenge"):  # server-final sent as a challenge (RFC 6120 §6.4.6 allows it)
            server_final = sasl.unb64(answer.text).decode(errors="replace")
            await self.send(E("response", ns=SASL))
            answer = await self.read_unit()
        elif answer.tag == q(SASL, "success"):
            server_final = sasl.unb64(answer.text).decode(errors="replace")
        else:
            return self._auth_outcome(mechanism, answer)
        self.sasl_received.append(server_final)
        outcome = self._auth_outcome(mechanism, answer)
        if outcome.success:
            try:
                client.set_server_final(server_final)
            except sasl.scramp.ScramException as exc:
                raise ProtocolViolation(f"the IUT's SCRAM server signature does not verify: {exc}") from None
        return outcome

    @staticmethod
    def _auth_outcome(mechanism: str, answer: Element) -> AuthResult:
        if answer.tag == q(SASL, "success"):
            return AuthResult(mechanism, True, None, answer)
        if answer.tag == q(SASL, "failure"):
            return AuthResult(mechanism, False, error_condition(answer) or "failure", answer)
        raise ProtocolViolation(f"unexpected answer during SASL: <{answer.tag.split('}')[-1]}/>")

    async def bind(self, resource: str | None = None) -> JID:
        request = iq("set", E("bind", None, E("resource", text=resource, ns=BIND) if resource else None, ns=BIND))
        await self.send(request)
        answer = await self.read_unit()
        if kind(answer) != "iq" or answer.get("id") != request.get("id"):
            raise ProtocolViolation("unexpected answer to resource binding")
        if answer.get("type") != "result":
            raise ProtocolViolation(f"resource binding refused: <{error_condition(answer)}/>")
        jid_text = answer.findtext(f"{q(BIND, 'bind')}/{q(BIND, 'jid')}")
        if not jid_text:
            raise ProtocolViolation("bind result carries no JID")
        self.jid = JID.parse(jid_text)
        return self.jid

    # -- after negotiation ----------------------------------------------------------------------------------------

    def start_pump(self) -> None:
        if self._pump is None:
            self._pump = asyncio.get_running_loop().create_task(self._run_pump(), name=f"pump-{self.label}")

    async def _run_pump(self) -> None:
        try:
            while True:
                unit = await self._next_unit(None)
                self._count(unit)
                self._keep(unit)
                await self._answer(unit)
        except (ConnectionClosed, asyncio.CancelledError):
            pass
        except Exception as exc:  # never let a hostile answer kill the event loop thread
            self.conn.recorder.event(self.label, f"pump stopped: {type(exc).__name__}: {exc}")
        finally:
            self._changed.set()

    def _keep(self, unit: Element) -> None:
        if len(self.received) >= MAX_KEPT_UNITS or self.kept_bytes + self._unit_size > MAX_KEPT_BYTES:
            if not self.dropped_units:
                self.conn.recorder.event(self.label, f"keeping no more of what the IUT sends on this stream: "
                                                     f"{len(self.received)} units, {self.kept_bytes} bytes kept")
            self.dropped_units += 1
            return
        self.kept_bytes += self._unit_size
        self.received.append(unit)
        self._changed.set()

    def _count(self, unit: Element) -> None:
        """XEP-0198 §4: the client's count of handled stanzas starts at zero when <enabled/> arrives."""
        if unit.tag == q(SM, "enabled"):
            self.sm_counting, self.sm_handled = True, 0
        elif unit.tag == q(SM, "resumed"):
            self.sm_counting, self.sm_handled = True, self._resume_h
        elif self.sm_counting and kind(unit) is not None:
            self.sm_handled += 1

    async def _answer(self, unit: Element) -> None:
        """Behave like an ordinary client: acknowledge roster pushes, answer pings, refuse other requests."""
        if unit.tag == q(SM, "r") and self.sm_counting and self.sm_auto_ack:
            try:
                await self.send(E("a", {"h": str(self.sm_handled)}, ns=SM))
            except ConnectionClosed:
                pass
            return
        if not self.auto_reply or kind(unit) != "iq" or unit.get("type") not in ("get", "set"):
            return
        sender = unit.get("from")
        sender_bare = sender.split("/", 1)[0] if sender else None
        own = sender is None or (self.jid is not None and sender_bare in (str(self.jid.bare), self.jid.domain))
        push = own and unit.get("type") == "set" and any(unit.find(q(ns, local)) is not None for ns, local in PUSHES)
        if push:
            reply = iq_result(unit)  # RFC 6121 §2.1.6, XEP-0191 §3: pushes from the own account are acknowledged
        elif unit.find(q(PING, "ping")) is not None and (own or sender_bare in self.trusted):
            reply = iq_result(unit)  # XEP-0199, answered only to the own account and approved contacts...
        else:
            # ...a privacy-aware client answers anyone else as if no resource were there (RFC 6121 §8.5.3.2.1),
            # so what an outsider learns about this resource depends on the IUT alone.
            reply = stanza_error(unit, "service-unavailable")
        reply.attrib.pop("from", None)
        try:
            await self.send(reply)
        except ConnectionClosed:
            pass

    async def wait_for(self, predicate: Callable[[Element], bool], timeout: float, since: int = 0) -> Element | None:
        """First received unit (from index `since`) matching `predicate`, waiting up to `timeout` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        index = since
        while True:
            while index < len(self.received):
                unit = self.received[index]
                index += 1
                if predicate(unit):
                    return unit
            remaining = deadline - loop.time()
            if self.ended or remaining <= 0:
                return None
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def request(self, request: Element, timeout: float | None = None) -> Element:
        """Send an IQ and return its result or error. Raises StreamEnded or TimeoutError."""
        if request.get("id") is None:
            request.set("id", new_id("iq"))
        since = len(self.received)
        await self.send(request)
        rid = request.get("id")
        answer = await self.wait_for(
            lambda u: kind(u) == "iq" and u.get("id") == rid and u.get("type") in ("result", "error"),
            self.timeout if timeout is None else timeout, since)
        if answer is None:
            if self.ended:
                raise StreamEnded(self)
            raise asyncio.TimeoutError(f"no answer to iq {rid} within {self.timeout if timeout is None else timeout:g}s")
        return answer

    async def wait_ended(self, timeout: float) -> bool:
        """True once the IUT has ended the stream or connection (within `timeout`)."""
        if self._pump is None:
            async def drain() -> None:
                try:
                    while True:
                        self._keep(await self._next_unit(None))
                except ConnectionClosed:
                    pass
            try:
                await asyncio.wait_for(drain(), timeout)
            except asyncio.TimeoutError:
                pass
            return self.ended
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.ended and not self._pump.done():
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                break
        return self.ended or self._pump.done()

    # -- stream management (XEP-0198) -------------------------------------------------------------------------------

    async def enable_sm(self, resume: bool) -> Element:
        """Send <enable/> on a running stream; the IUT's <enabled/> or <failed/>. Raises StreamEnded or TimeoutError."""
        since = len(self.received)
        await self.send(E("enable", {"resume": "true" if resume else None}, ns=SM))
        answer = await self.wait_for(lambda u: u.tag in (q(SM, "enabled"), q(SM, "failed")), self.timeout, since)
        if answer is None:
            if self.ended:
                raise StreamEnded(self)
            raise asyncio.TimeoutError(f"no answer to <enable/> within {self.timeout:g}s")
        if answer.tag == q(SM, "enabled") and answer.get("resume") in ("true", "1"):
            self.sm_id = answer.get("id")
        return answer

    async def resume_sm(self, previd: str, h: int) -> Element:
        """Send <resume/>; the IUT's <resumed/> or <failed/>. Normally sent after SASL and before binding (then the
        pump is not running yet); after <resumed/> the count goes on from `h`, retransmitted stanzas included."""
        answers = (q(SM, "resumed"), q(SM, "failed"))
        self._resume_h = h
        if self._pump is None:
            await self.send(E("resume", {"previd": previd, "h": str(h)}, ns=SM))
            answer = await self.read_unit()
            if answer.tag not in answers:
                raise ProtocolViolation(f"unexpected answer to <resume/>: <{answer.tag.split('}')[-1]}/>")
            self._count(answer)
        else:
            since = len(self.received)
            await self.send(E("resume", {"previd": previd, "h": str(h)}, ns=SM))
            answer = await self.wait_for(lambda u: u.tag in answers, self.timeout, since)
            if answer is None:
                if self.ended:
                    raise StreamEnded(self)
                raise asyncio.TimeoutError(f"no answer to <resume/> within {self.timeout:g}s")
        if answer.tag == q(SM, "resumed"):
            self.sm_id = previd
        return answer

    async def acknowledge(self, h: int) -> None:
        """Send <a h='h'/>, whatever the true count."""
        await self.send(E("a", {"h": str(h)}, ns=SM))

    def drop(self) -> None:
        """Lose the connection without closing the stream (the session may hibernate, XEP-0198 §5)."""
        if self._pump is not None:
            self._pump.cancel()
        self.conn.abort()
        self._changed.set()

    async def close(self) -> None:
        """Close the stream gracefully: (acknowledge,) send </stream:stream>, wait a moment for the IUT's own
        closing tag (RFC 6120 §4.4), then end TLS and TCP. Ending the connection before the IUT has read our
        closing tag can make its TCP stack discard it (a reset), and the IUT would see a lost connection
        instead of a closed stream: with stream management, a session left waiting for resumption."""
        if self._pump is not None:
            self._pump.cancel()
            try:
                await self._pump
            except (asyncio.CancelledError, Exception):
                pass
        if not self.conn.closed and not self.ended:
            try:
                if self.sm_counting:  # XEP-0198 §4: say what was handled before a graceful close, so nothing is resent
                    await asyncio.wait_for(self.conn.send(to_bytes(E("a", {"h": str(self.sm_handled)}, ns=SM),
                                                                   CLIENT)), 1.0)
                await asyncio.wait_for(self.conn.send(STREAM_CLOSE), 1.0)
                await asyncio.wait_for(self._read_until_closed(), CLOSE_WAIT)
            except (ConnectionClosed, asyncio.TimeoutError, OSError):
                pass
        await self.conn.close()

    async def _read_until_closed(self) -> None:
        try:
            while True:
                self._keep(await self._next_unit(None))
        except ConnectionClosed:
            pass
