"""Outbound server-to-server streams of the reference service: the initiating server's side (RFC 6120 §4-§6,
§13.7.2; XEP-0178).

When a stanza must go to another domain, the service looks the domain up in its static map
(`ServiceConfig.peers`: domain -> host, port; never DNS) and hands the stanza to that domain's link: one outbound
connection at a time per domain, opened on demand, with a bounded queue. A connection goes through

    TCP connect -> stream header (jabber:server, from our domain, to theirs) -> features
    -> STARTTLS (required; the peer's certificate is verified against the service's own CA with the hostname check
       for the remote domain, and the service's certificate is presented as TLS client certificate)
    -> stream restart -> SASL EXTERNAL (authzid: our domain) -> <success/> -> stream restart
    -> the queued stanzas, then later ones, until the peer closes or the stream has been idle too long.

No stanza leaves before <success/> (RFC 6120 §4.3.5, §6.4.6). A peer that offers no STARTTLS or no EXTERNAL, a
certificate that does not verify, a <failure/> or a timeout ends the attempt: the queued stanzas are dropped with
a log line, and messages and IQs among them are bounced to their local senders. There are no retries: the next
stanza for that domain opens a new connection. What the peer sends on the established stream is ignored, except
that a stream error or the closing of its stream ends the connection.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import ssl
import traceback
from typing import TYPE_CHECKING

from conformance.adapters.xmpp.codec import sasl
from conformance.adapters.xmpp.codec.jid import JID, JidError
from conformance.adapters.xmpp.codec.stanza import (CLIENT, SASL, SERVER, STREAM_CLOSE, TLS, error_condition,
                                                    in_content_ns, is_stream_error, kind, q, stream_header)
from conformance.adapters.xmpp.codec.xml import (E, Element, Limits, StreamClosed, StreamOpened, StreamParser,
                                                 UnitReceived, XmlError, split, to_bytes)

if TYPE_CHECKING:
    from conformance.pki import CertFiles

    from .service import Service

STREAM_TAG = "{http://etherx.jabber.org/streams}stream"
FEATURES = "{http://etherx.jabber.org/streams}features"
DIALBACK = "jabber:server:dialback"
MAX_UNITS_BEFORE_VERDICT = 8  # what an authoritative server may send before it answers a <db:verify/>
EARLY_SEND_GRACE = 0.3  # flaw 's2s-out-before-authentication': how long it waits for <success/> before sending


def tls_context(certs: "CertFiles", *, verify: bool = True) -> ssl.SSLContext:
    """The client side of s2s TLS: TLS 1.2 at least, no compression, the service's own certificate as client
    certificate (the peer authenticates it with SASL EXTERNAL), and the peer's certificate verified against the
    service's CA only, with the hostname check for the remote domain (`server_hostname` at the handshake)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname by default
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION
    context.load_cert_chain(certs.cert, certs.key)
    if verify:
        context.load_verify_locations(cafile=str(certs.ca))
    else:  # flaw 's2s-out-certificate-unchecked': any certificate, for any name, from anyone
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class GiveUp(Exception):
    """This connection attempt ends; `condition` is the stanza error bounced to local senders."""

    def __init__(self, reason: str, condition: str = "remote-server-not-found"):
        super().__init__(reason)
        self.condition = condition


class OutboundLinks:
    """Every outbound s2s link of the service, one per remote domain in `config.peers`."""

    def __init__(self, service: "Service"):
        self.service = service
        self.tls_context = tls_context(service.certs, verify=not service.flawed("s2s-out-certificate-unchecked"))
        self.links: dict[str, Link] = {}

    def reaches(self, domain: str) -> bool:
        return domain in self.service.config.peers

    def send(self, to: JID, stanza: Element) -> bool:
        """Queue a stanza (in 'jabber:client', as the routing code has it) for another domain. False if that
        domain is not in the map (the caller drops it)."""
        address = self.service.config.peers.get(to.domain)
        if address is None:
            return False
        domain = self.service.config.domain
        what = f"<{split(stanza.tag)[1]} type='{stanza.get('type', '')}'/> to {to}"
        if self.service.stopping:
            self.service.log(f"[s2s-out {to.domain}] shutting down: dropped {what}")
            return True
        sender_text = stanza.get("from")
        try:
            sender = JID.parse(sender_text) if sender_text else JID.parse(domain)
        except JidError:
            sender = None
        if sender is None or sender.domain != domain:
            # RFC 6120 §8.1.2.2: the receiving server accepts only our own domain's addresses from us.
            self.service.log(f"[s2s-out {to.domain}] dropped {what}: 'from' {sender_text!r} is not of {domain}")
            return True
        stanza = copy.deepcopy(stanza)
        stanza.set("from", str(sender))
        stanza.set("to", str(to))
        link = self.links.get(to.domain)
        if link is None:
            link = self.links[to.domain] = Link(self, to.domain, *address)
        link.enqueue(stanza)
        return True

    def stop(self) -> None:
        for link in self.links.values():
            link.stop()

    async def verify_dialback(self, domain: str, stream_id: str, key: str) -> str:
        """Ask `domain`'s authoritative server whether it sent this dialback key (XEP-0220 §2.3): a connection of
        its own, STARTTLS with the server's certificate checked for `domain`, then <db:verify/>. Returns 'valid',
        'invalid', or why it could not be asked (a domain not in the peer map is never asked: no DNS)."""
        address = self.service.config.peers.get(domain)
        if address is None:
            return f"{domain} is not in the peer map"
        link = Link(self, domain, *address)  # for its settings and log; it queues nothing
        link.log("asking the authoritative server to verify a dialback key")
        connection = Connection(link)
        try:
            await connection.connect()
            features = await connection.open_stream()
            if features.find(q(TLS, "starttls")) is None:
                return "the authoritative server offers no STARTTLS"
            connection.emit(E("starttls", ns=TLS))
            if (await connection.unit()).tag != q(TLS, "proceed"):
                return "the authoritative server refused STARTTLS"
            await connection.start_tls(self.tls_context)
            await connection.open_stream()
            connection.emit(E(f"{{{DIALBACK}}}verify", {"from": self.service.config.domain, "to": domain,
                                                        "id": stream_id}, text=key))
            for _ in range(MAX_UNITS_BEFORE_VERDICT):
                answer = await connection.unit()
                if answer.tag == f"{{{DIALBACK}}}verify" and answer.get("id") == stream_id:
                    verdict = answer.get("type")
                    return verdict if verdict in ("valid", "invalid") else f"answer type {verdict!r}"
            return "no <db:verify/> answer"
        except GiveUp as exc:
            return str(exc)
        except (OSError, ssl.SSLError, EOFError) as exc:
            return f"connection error: {exc}"
        finally:
            connection.close_stream()


class Link:
    """The outbound link to one remote domain: a bounded queue and at most one connection (task) at a time."""

    def __init__(self, owner: OutboundLinks, domain: str, host: str, port: int):
        self.owner = owner
        self.service = owner.service
        self.config = owner.service.config
        self.domain = domain
        self.host, self.port = host, port
        self.queue: collections.deque[Element] = collections.deque()  # jabber:client copies, 'from'/'to' set
        self.wakeup = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.connection: Connection | None = None
        self.attempts = 0

    def log(self, text: str) -> None:
        self.service.log(f"[s2s-out {self.domain} #{self.attempts}] {text}")

    def enqueue(self, stanza: Element) -> None:
        if len(self.queue) >= self.config.s2s_out_max_queue:
            self.log(f"queue full ({len(self.queue)}): dropped <{split(stanza.tag)[1]}/> to {stanza.get('to')}")
            self._bounce([stanza], "resource-constraint", "wait")
            return
        self.queue.append(stanza)
        self.wakeup.set()
        if self.task is None or self.task.done():
            self._start()

    def _start(self) -> None:
        self.attempts += 1
        self.task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self.connection is not None:
            self.connection.close_stream()
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self.queue.clear()

    # -- one connection ----------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        established = False
        connection = self.connection = Connection(self)
        try:
            await connection.connect()
            await self._negotiate(connection)
            established = True
            await self._serve(connection)
        except GiveUp as exc:
            self._give_up(str(exc), exc.condition)
        except (OSError, ssl.SSLError, EOFError) as exc:  # the connection broke in the middle of something
            if established:
                self.log(f"connection error: {exc}")
            else:
                self._give_up(f"connection error: {exc}", "remote-server-not-found")
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must show in the log, never as silence
            self.log("internal error:\n" + traceback.format_exc())
            self._give_up("internal error", "internal-server-error")
        finally:
            connection.close_stream()
            if self.connection is connection:
                self.connection = None
        if established and self.queue and not self.service.stopping:
            # Stanzas queued while an authenticated stream was ending: they get a connection of their own.
            self._start()

    def _give_up(self, reason: str, condition: str) -> None:
        dropped = list(self.queue)
        self.queue.clear()
        self.log(f"giving up: {reason}; dropped {len(dropped)} queued stanza(s)")
        error_type = "wait" if condition == "remote-server-timeout" else "cancel"
        self._bounce(dropped, condition, error_type)

    def _bounce(self, stanzas: list[Element], condition: str, error_type: str) -> None:
        """Tell local senders of messages and IQs that their stanza went nowhere (RFC 6120 §8.3.3)."""
        for stanza in stanzas:
            if kind(stanza) == "presence":
                continue
            try:
                sender = JID.parse(stanza.get("from"))
            except JidError:
                continue
            if sender.domain == self.service.config.domain:
                self.service._bounce(sender, stanza, condition, error_type)

    async def _negotiate(self, connection: "Connection") -> None:
        features = await connection.open_stream()
        if features.find(q(TLS, "starttls")) is None:
            if not self.service.flawed("s2s-out-plaintext"):
                raise GiveUp("the peer offers no STARTTLS, and this service sends nothing in clear")
            # Flaw: a peer without TLS gets everything in clear; EXTERNAL needs TLS, so no authentication either.
            self.log("the peer offers no STARTTLS: going on in clear, unauthenticated (flaw s2s-out-plaintext)")
            return
        connection.emit(E("starttls", ns=TLS))
        answer = await connection.unit()
        if answer.tag != q(TLS, "proceed"):
            raise GiveUp(f"STARTTLS refused (<{split(answer.tag)[1]}/>)")
        await connection.start_tls(self.owner.tls_context)
        features = await connection.open_stream()
        mechanisms = [m.text for m in features.iterfind(f"{q(SASL, 'mechanisms')}/{q(SASL, 'mechanism')}")]
        if "EXTERNAL" not in mechanisms:
            raise GiveUp(f"the peer offers no SASL EXTERNAL (mechanisms: {mechanisms or 'none'}); "
                         f"nothing is sent on an unauthenticated stream")
        connection.emit(E("auth", {"mechanism": "EXTERNAL"}, text=sasl.b64(self.service.config.domain), ns=SASL))
        answer = None
        if self.service.flawed("s2s-out-before-authentication"):
            # Flaw: an impatient initiator takes a peer's silence for consent and sends what it has queued.
            try:
                answer = await connection.unit(EARLY_SEND_GRACE, quiet=True)
            except asyncio.TimeoutError:
                self.log(f"no SASL answer within {EARLY_SEND_GRACE:g}s: sending {len(self.queue)} stanza(s) "
                         f"anyway (flaw s2s-out-before-authentication)")
                self._flush(connection)
        if answer is None:
            answer = await connection.unit(self.config.s2s_out_auth_timeout, condition="remote-server-timeout")
        if answer.tag == q(SASL, "failure"):
            raise GiveUp(f"SASL EXTERNAL failed (<{error_condition(answer)}/>)")
        if answer.tag != q(SASL, "success"):
            raise GiveUp(f"unexpected <{split(answer.tag)[1]}/> instead of the SASL outcome")
        connection.authenticated = True
        self.log("authenticated (SASL EXTERNAL)")
        await connection.open_stream()  # the features after SASL: nothing this service uses

    async def _serve(self, connection: "Connection") -> None:
        watcher = asyncio.get_running_loop().create_task(connection.watch())
        try:
            while True:
                self.wakeup.clear()
                if connection.gone():
                    self.log("the peer went away")
                    return
                self._flush(connection)
                if not await connection.drain():
                    self.log("the peer does not read; closing")
                    return
                if self.queue:
                    continue
                waiter = asyncio.get_running_loop().create_task(self.wakeup.wait())
                done, _ = await asyncio.wait({waiter, watcher}, timeout=self.config.s2s_out_idle_timeout,
                                             return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if watcher in done:
                    self.log(f"the peer ended the stream: {watcher.result()}")
                    return
                if not done:
                    self.log(f"idle for {self.config.s2s_out_idle_timeout:g}s: closing")
                    return
        finally:
            watcher.cancel()

    def _flush(self, connection: "Connection") -> None:
        while self.queue:
            stanza = self.queue.popleft()
            connection.emit(in_content_ns(copy.deepcopy(stanza), CLIENT, SERVER))
            self.log(f"sent <{split(stanza.tag)[1]} type='{stanza.get('type', '')}'/> from {stanza.get('from')} "
                     f"to {stanza.get('to')} ({connection.state()})")


class Connection:
    """One TCP connection of a link, with its stream parser; reads are bounded by the link's timeouts."""

    def __init__(self, link: Link):
        self.link = link
        self.config = link.config
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.parser = self._new_parser()
        self.pending: collections.deque = collections.deque()
        self.tls = False
        self.authenticated = False
        self.closed = False

    def _new_parser(self) -> StreamParser:
        return StreamParser(Limits(max_unit_bytes=self.config.max_unit_bytes))

    def state(self) -> str:
        return "authenticated" if self.authenticated else "TLS, unauthenticated" if self.tls else "in clear"

    async def connect(self) -> None:
        link = self.link
        try:
            self.reader, self.writer = await asyncio.wait_for(
                asyncio.open_connection(link.host, link.port, limit=64 * 1024), self.config.s2s_out_connect_timeout)
        except asyncio.TimeoutError:
            raise GiveUp(f"no TCP connection to {link.host}:{link.port} within "
                         f"{self.config.s2s_out_connect_timeout:g}s", "remote-server-timeout") from None
        except OSError as exc:
            raise GiveUp(f"cannot connect to {link.host}:{link.port}: {exc.strerror or exc}") from None
        link.log(f"connected to {link.host}:{link.port}")

    def emit(self, data: bytes | Element) -> None:
        if self.closed or self.writer is None:
            return
        self.writer.write(data if isinstance(data, bytes) else to_bytes(data, SERVER))

    async def drain(self) -> bool:
        try:
            await asyncio.wait_for(self.writer.drain(), self.config.s2s_out_step_timeout)
        except asyncio.TimeoutError:
            return False
        return True

    def gone(self) -> bool:
        return self.closed or self.reader.at_eof() or self.writer.transport.is_closing()

    async def start_tls(self, context: ssl.SSLContext) -> None:
        try:
            await asyncio.wait_for(self.writer.start_tls(context, server_hostname=self.link.domain),
                                   self.config.s2s_out_step_timeout)
        except asyncio.TimeoutError:
            raise GiveUp("TLS handshake timed out", "remote-server-timeout") from None
        except (ssl.SSLError, ssl.CertificateError, ConnectionError, OSError) as exc:
            self.closed = True  # nothing more can go over this connection
            raise GiveUp(f"TLS handshake failed: {exc}") from None
        self.tls = True
        ssl_object = self.writer.get_extra_info("ssl_object")
        self.link.log(f"TLS established: {ssl_object.version() if ssl_object else '?'}")

    async def open_stream(self) -> Element:
        """Send our stream header (a new stream on every restart) and return the peer's features."""
        self.parser, self.pending = self._new_parser(), collections.deque()
        self.emit(stream_header(to=self.link.domain, from_=self.link.service.config.domain, content_ns=SERVER,
                                extra_ns={"db": DIALBACK}))
        opened = await self._event(self.config.s2s_out_step_timeout)
        if not isinstance(opened, StreamOpened) or opened.tag != STREAM_TAG or opened.default_ns != SERVER:
            raise GiveUp("the peer did not answer with a jabber:server stream header")
        features = await self.unit()
        if features.tag != FEATURES:
            raise GiveUp(f"expected stream features, got <{split(features.tag)[1]}/>")
        return features

    async def unit(self, timeout: float | None = None, *, quiet: bool = False,
                   condition: str = "remote-server-timeout") -> Element:
        """The peer's next top-level element; a stream error or the end of its stream ends the attempt. With
        `quiet`, a timeout is raised as asyncio.TimeoutError instead of ending the attempt."""
        timeout = self.config.s2s_out_step_timeout if timeout is None else timeout
        event = await self._event(timeout, raise_timeout=quiet, condition=condition)
        if isinstance(event, StreamOpened):
            raise GiveUp("the peer restarted its stream unasked")
        if is_stream_error(event):
            raise GiveUp(f"the peer sent stream error <{error_condition(event)}/>")
        return event

    async def _event(self, timeout: float, *, raise_timeout: bool = False,
                     condition: str = "remote-server-timeout") -> StreamOpened | Element:
        while not self.pending:
            try:
                data = await asyncio.wait_for(self.reader.read(65536), timeout)
            except asyncio.TimeoutError:
                if raise_timeout:
                    raise
                raise GiveUp(f"no answer from the peer within {timeout:g}s", condition) from None
            if not data:
                raise GiveUp("the peer closed the connection")
            try:
                self.pending.extend(self.parser.feed(data))
            except XmlError as exc:
                raise GiveUp(f"the peer sent bad XML ({exc})") from None
        event = self.pending.popleft()
        if isinstance(event, StreamClosed):
            raise GiveUp("the peer closed its stream")
        return event.element if isinstance(event, UnitReceived) else event

    async def watch(self) -> str:
        """On an established stream: read and ignore what the peer sends, until its stream ends; say how."""
        while True:
            try:
                data = await self.reader.read(65536)
            except (ConnectionError, ssl.SSLError, OSError) as exc:
                return f"connection error ({exc})"
            if not data:
                return "connection closed"
            try:
                events = self.parser.feed(data)
            except XmlError as exc:
                return f"bad XML ({exc})"
            for event in events:
                if isinstance(event, StreamClosed):
                    return "stream closed"
                if isinstance(event, UnitReceived) and is_stream_error(event.element):
                    return f"stream error <{error_condition(event.element)}/>"

    def close_stream(self) -> None:
        """Close our stream (politely when the connection still works) and the connection."""
        if self.writer is None:
            return
        if not self.closed:
            self.closed = True
            try:
                if not self.writer.transport.is_closing():
                    self.writer.write(STREAM_CLOSE)
            except (ConnectionError, RuntimeError, OSError):
                pass
        try:
            self.writer.close()
        except (ConnectionError, RuntimeError, OSError):
            pass
