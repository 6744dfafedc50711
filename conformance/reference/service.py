"""The embedded reference service: a small, correct XMPP service (RFC 6120/6121) on loopback.

It exists so the suite runs out of the box and so that each conformance case can be shown to fail, by switching
on one of its flaws (`flaws.py`). Routing lives here; presence, account IQs, blocking, PEP and stream management
have their own modules.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import secrets
import ssl
import time
import uuid
import warnings

from conformance import pki
from conformance.adapters.xmpp.codec.jid import JID, JidError
from conformance.adapters.xmpp.codec.stanza import (BLOCKING_ERRORS, CARBONS, CLIENT, DELAY, DISCO_INFO, FORWARD,
                                                    HINTS, PING, STANZA_ID, iq_result, kind, q, stanza_error)
from conformance.adapters.xmpp.codec.xml import E, Element, StreamParser, UnitReceived, to_bytes, split

from .account_iq import AccountIq
from .blocking import Blocking
from .c2s import Session
from .config import ServiceConfig
from .limits import ConnectionLimits
from .pep import Pep
from .presence import Presence
from .s2s import S2sSession
from .s2s import tls_context as s2s_tls_context
from .s2s_out import OutboundLinks
from .sm import StreamManagement
from .store import Store
from .tls_lenience import swallow_tls_errors

STORABLE_MESSAGE_TYPES = ("normal", "chat")


def _now_stamp() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Service:
    def __init__(self, config: ServiceConfig):
        self.config = config
        self.flaws = config.flaws
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.certs = pki.write_server_certs(config.data_dir / "certs", config.domain)
        self.tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        # TLS 1.2 at least (RFC 8996), OpenSSL's default suites at its default security level (no NULL, RC4, EXPORT
        # or anonymous suites), no compression (BCP 195); OpenSSL answers TLS_FALLBACK_SCSV itself (RFC 7507).
        self.tls_context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.tls_context.options |= ssl.OP_NO_COMPRESSION
        if self.flawed("legacy-tls-accepted"):  # a "compatibility" setting: old versions and every suite back on
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # ssl deprecates TLSv1 itself, rightly
                self.tls_context.minimum_version = ssl.TLSVersion.TLSv1
            self.tls_context.set_ciphers("ALL:aNULL:eNULL:@SECLEVEL=0")
        self.tls_context.load_cert_chain(self.certs.cert, self.certs.key)
        # Server-to-server (s2s.py) has its own context: it asks peers for certificates and verifies them.
        self.s2s_tls_context = s2s_tls_context(self.certs, any_certificate=self.flawed("s2s-any-certificate-accepted"))
        self.store = Store(config.data_dir / "state.json", persist_blocklists=not self.flawed("blocklist-not-persisted"))
        self.passwords_file = config.data_dir / "passwords.txt"
        self.passwords = self._ensure_accounts()
        self.sessions: dict[JID, Session] = {}
        self.limits = ConnectionLimits(config.max_preauth_per_address, config.max_connections)
        self.presence = Presence(self)
        self.blocking = Blocking(self)
        self.account_iq = AccountIq(self)
        self.pep = Pep(self)
        self.sm = StreamManagement(self)
        self.stopping = False
        self._server: asyncio.base_events.Server | None = None
        self._side_door: asyncio.base_events.Server | None = None
        self.side_door_port: int | None = None
        self._s2s: asyncio.base_events.Server | None = None
        self.s2s_port: int | None = None
        self.s2s_sessions: set[S2sSession] = set()
        self.s2s_out = OutboundLinks(self)  # outbound server-to-server, to the domains of config.peers (s2s_out.py)
        self._tasks: set[asyncio.Task] = set()
        self._log = open(config.data_dir / "service.log", "a", encoding="utf-8", buffering=1)
        # Set by the harness when this service stands in for the service of a client IUT: called with (stream,
        # "in" or "out", unit) for every unit of every stream, so the harness sees what the client said inside TLS.
        self.tap = None
        # The harness's stand-in may play a lenient service (STARTTLS offered, not required): then only the client's
        # own policy keeps its session in TLS (IMPP-5.1-7, client side). Never set for the reference as an IUT.
        self.tls_optional = False
        # The stand-in may hold archive queries open (IMPP-5.2-7 (c)): answered once this is set. Never for the IUT.
        self.archive_gate: asyncio.Event | None = None
        if self.flawed("tls-errors-ignored"):
            swallow_tls_errors(self.log)

    def flawed(self, name: str) -> bool:
        from .flaws import FLAWS
        assert name in FLAWS, f"unknown flaw {name}"
        return name in self.flaws

    def log(self, text: str) -> None:
        if not self._log.closed:
            self._log.write(f"{time.strftime('%H:%M:%S')} {text}\n")

    def _ensure_accounts(self) -> dict[str, str]:
        passwords: dict[str, str] = {}
        if self.passwords_file.exists():
            for line in self.passwords_file.read_text(encoding="utf-8").splitlines():
                user, _, password = line.partition(" ")
                passwords[user] = password
        for user in self.config.accounts:
            if user not in passwords or user not in self.store.accounts:
                passwords[user] = secrets.token_urlsafe(12)
                self.store.add_account(user, passwords[user])
        self.store.save()
        self.passwords_file.write_text("".join(f"{u} {p}\n" for u, p in passwords.items()), encoding="utf-8")
        self.passwords_file.chmod(0o600)
        return passwords

    # -- lifecycle -----------------------------------------------------------------------------------------------------

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, self.config.host, self.config.port,
                                                  reuse_address=True, limit=64 * 1024)
        port = self._server.sockets[0].getsockname()[1]
        self.log(f"listening on {self.config.host}:{port} as {self.config.domain}; flaws: {sorted(self.flaws) or 'none'}")
        # A second door for clients, as real deployments have: direct TLS (XEP-0368). Under the flaw
        # 'plaintext-side-door' it is a legacy port that serves plaintext streams without requiring STARTTLS.
        # Under 'early-data-acted-on' its TLS takes 0-RTT early data and serves it at once (early_data_door.py).
        plaintext = self.flawed("plaintext-side-door")
        if self.flawed("early-data-acted-on"):
            from . import early_data_door
            context = early_data_door.server_context(self)
            door = "direct TLS taking 0-RTT early data"
            self._side_door = await asyncio.start_server(
                lambda r, w: early_data_door.serve(self, context, r, w,
                                                   lambda r2, w2: self._accept(r2, w2, direct_tls=True)),
                self.config.host, self.config.side_door_port, reuse_address=True, limit=64 * 1024)
        else:
            door = "plaintext" if plaintext else "direct TLS"
            self._side_door = await asyncio.start_server(
                lambda r, w: self._accept(r, w, direct_tls=not plaintext, plaintext_door=plaintext),
                self.config.host, self.config.side_door_port, ssl=None if plaintext else self.tls_context,
                reuse_address=True, limit=64 * 1024)
        self.side_door_port = self._side_door.sockets[0].getsockname()[1]
        self.log(f"second client listener on {self.config.host}:{self.side_door_port} ({door})")
        # Inbound server-to-server (s2s.py): other domains' servers, authenticated by certificate (XEP-0178).
        self._s2s = await asyncio.start_server(self._accept_s2s, self.config.host, self.config.s2s_port,
                                               reuse_address=True, limit=64 * 1024)
        self.s2s_port = self._s2s.sockets[0].getsockname()[1]
        self.log(f"server-to-server listener on {self.config.host}:{self.s2s_port}")
        return port

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, direct_tls: bool = False,
                      plaintext_door: bool = False) -> None:
        peer = writer.get_extra_info("peername")
        address = peer[0] if peer else "?"
        # RFC 6120 §13.12: limit connections per address, so that one party's unauthenticated connections cannot
        # take the places of everyone else's (IMPP-5.3-2).
        refused = self.limits.admit(address, per_address_limit=not self.flawed("preauth-connections-unlimited"))
        if refused is not None:
            self.log(f"refusing a connection from {address}: {refused}")
            writer.transport.abort()
            return
        session = Session(self, reader, writer, direct_tls=direct_tls, plaintext_door=plaintext_door)
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            await session.run()
        finally:
            self.limits.closed(address, was_authenticated=session.counted_as_authenticated)
            self._tasks.discard(task)

    async def _accept_s2s(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = S2sSession(self, reader, writer)
        task = asyncio.current_task()
        self._tasks.add(task)
        self.s2s_sessions.add(session)
        try:
            await session.run()
        finally:
            self.s2s_sessions.discard(session)
            self._tasks.discard(task)

    async def stop(self) -> None:
        self.stopping = True
        for server in (self._server, self._side_door, self._s2s):
            if server is not None:
                server.close()
        self.sm.shutdown()
        for session in list(self.sessions.values()):
            session.close("system-shutdown")
        for s2s_session in list(self.s2s_sessions):
            s2s_session.close("system-shutdown")
        self.s2s_out.stop()
        for task in list(self._tasks):
            task.cancel()
        self.store.save()
        self.log("stopped")
        self._log.close()

    # -- sessions ------------------------------------------------------------------------------------------------------

    def bind(self, session: Session, jid: JID) -> JID:
        if self.flawed("resource-conflict-across-accounts"):
            for other in list(self.sessions.values()):
                if other.jid.resource == jid.resource and other.jid.bare != jid.bare:
                    other.close("conflict", "resource bound elsewhere")
                    self.session_ended(other)
        if jid in self.sessions:  # RFC 6120 §7.7.2.2: keep the old session, give the new one another resource
            jid = jid.with_resource(f"{jid.resource}-{secrets.token_hex(3)}")
        self.sessions[jid] = session
        return jid

    def session_ended(self, session: Session) -> None:
        if session.jid is None or self.sessions.get(session.jid) is not session:
            return
        if session.available:
            self.presence.broadcast(session, session.jid, E(q(CLIENT, "presence"), {"type": "unavailable",
                                                                                  "from": str(session.jid)}))
        del self.sessions[session.jid]
        if session.user and not self.sessions_of(session.user):
            self.store.last_seen[session.user] = time.time()
            self.store.save()

    def sessions_of(self, user: str | None) -> list[Session]:
        return [s for jid, s in self.sessions.items() if jid.local == user and not s.closed]

    def available_sessions(self, user: str | None) -> list[Session]:
        return [s for s in self.sessions_of(user) if s.available]

    # -- routing (RFC 6120 §8, §10) --------------------------------------------------------------------------------------

    def handle_stanza(self, session: Session, stanza: Element, sender: JID | None = None) -> None:
        """A stanza from a client stream. `sender` is only given on flawed paths that bypass binding."""
        if sender is None:
            claimed = stanza.get("from")
            sender = session.jid
            if claimed is not None:
                try:
                    claimed_jid = JID.parse(claimed)
                except JidError:
                    session.close("invalid-from", "malformed 'from' address")
                    return
                if self.flawed("trusts-client-from"):
                    sender = claimed_jid
                elif claimed_jid not in (session.jid, session.jid.bare):
                    # RFC 6120 §8.1.2.1: the 'from' of a client stanza is the authenticated identity.
                    session.close("invalid-from", "you may only send as yourself")
                    return
        stanza.set("from", str(sender))
        to_text = stanza.get("to")
        to = None
        if to_text is not None:
            try:
                to = JID.parse(to_text)
            except JidError:
                self.deliver_direct(sender, stanza_error(stanza, "jid-malformed", "modify"))
                return
            stanza.set("to", str(to))
        bound = session if session.jid is not None else None  # flawed paths route for streams never bound
        what = kind(stanza)
        if what == "presence":
            self.presence.outbound(bound, sender, stanza, to)
        elif what == "message":
            self.route_message(bound, sender, stanza, to or sender.bare)
        else:
            self.route_iq(bound, sender, stanza, to)

    def handle_remote_stanza(self, sender: JID, stanza: Element, to: JID) -> None:
        """A stanza from another domain's user, off an authenticated server-to-server stream (s2s.py checked its
        'from' against the peer's domain and its 'to' against ours). There is no sending session: what the service
        answers to `sender` goes through deliver_direct, over an outbound s2s link if the sender's domain is in
        config.peers (dropped otherwise)."""
        what = kind(stanza)
        if what == "presence":
            self.presence.inbound_remote(sender, stanza, to)
        elif what == "message":
            self.route_message(None, sender, stanza, to)
        else:
            self.route_iq(None, sender, stanza, to)

    def deliver_direct(self, to: JID, stanza: Element) -> None:
        """Deliver to a local full JID, or to every available resource of a local bare JID; no storage. A JID of
        another domain goes to that domain's server (s2s_out.py), if the service knows where it is."""
        if to.domain != self.config.domain:
            self.send_remote(to, stanza)
            return
        if to.resource is not None:
            target = self.sessions.get(to)
            if target is not None:
                target.send(stanza)
            return
        for target in self.available_sessions(to.local) or self.sessions_of(to.local):
            copy_ = copy.deepcopy(stanza)
            target.send(copy_)

    def send_remote(self, to: JID, stanza: Element) -> bool:
        """Hand a stanza for another domain to the outbound s2s link of that domain; False (and a log line) for a
        domain not in config.peers: no DNS lookups, the stanza is dropped."""
        if self.s2s_out.send(to, stanza):
            return True
        self.log(f"no server known for {to.domain}: dropped <{split(stanza.tag)[1]} "
                 f"type='{stanza.get('type', '')}'/> to {to}")
        return False

    def _bounce(self, sender: JID, stanza: Element, condition: str, error_type: str = "cancel",
                extra: Element | None = None) -> None:
        if stanza.get("type") in ("error", "result", "groupchat", "headline"):
            return
        self.deliver_direct(sender, stanza_error(stanza, condition, error_type, extra=extra))

    def route_message(self, session: Session | None, sender: JID, stanza: Element, to: JID) -> None:
        if to.domain != self.config.domain:
            self._route_message_out(session, sender, stanza, to)
            return
        if to.local is None or to.local not in self.store.accounts:
            self._bounce(sender, stanza, "service-unavailable")
            return
        sender_local = sender.local if sender.domain == self.config.domain else None
        if sender_local and self.blocking.blocks(sender_local, to):
            # XEP-0191 §3.3: a user may not send to someone they block.
            self._bounce(sender, stanza, "not-acceptable", "cancel", E("blocked", ns=BLOCKING_ERRORS))
            return
        recipient = to.local
        mtype = stanza.get("type", "normal")
        if self.flawed("long-bodies-truncated"):
            for body in stanza.findall(q(CLIENT, "body")):
                body.text = (body.text or "")[:4096]  # flaw: a fixed-size buffer for message text
        storable = self.storable(stanza)
        archivable = storable and stanza.find(q(HINTS, "no-permanent-store")) is None  # XEP-0334 §4.1
        if sender_local and archivable and sender_local != recipient:
            self.archive(sender_local, str(to), stanza)
        available = self.available_sessions(recipient)
        blocked = self.blocking.blocks(recipient, sender)
        if blocked and self.flawed("blocked-offline-delivered") and not available:
            blocked = False  # flaw: the blocklist is consulted for live delivery only
        if blocked:
            if archivable and self.flawed("blocked-messages-archived"):
                self.archive(recipient, str(sender), stanza)
            self._bounce(sender, stanza, "service-unavailable")
            return
        if archivable:
            entry = self.archive(recipient, str(sender), stanza)
            stanza.append(E("stanza-id", {"by": f"{recipient}@{self.config.domain}", "id": entry},
                            ns=STANZA_ID))
        targets: list[Session]
        if to.resource is not None and to in self.sessions:
            targets = [self.sessions[to]]
        else:
            targets = available
        if not targets:
            if storable:
                self.store_offline(recipient, stanza)
            elif mtype not in ("error", "headline", "groupchat"):
                self._bounce(sender, stanza, "service-unavailable")
            return
        for target in targets:
            copy_ = copy.deepcopy(stanza)
            copy_.set("to", str(target.jid) if to.resource is None else str(to))
            target.send(copy_)
        if mtype == "chat":
            self._carbons("received", recipient, stanza, exclude=targets)
            if sender_local and session is not None:
                self._carbons("sent", sender_local, stanza, exclude=[session])

    def _route_message_out(self, session: Session | None, sender: JID, stanza: Element, to: JID) -> None:
        """A message to another domain's user: over the outbound s2s link (s2s_out.py), archived and carbon-copied
        for a local sender as a local message would be."""
        if not self.s2s_out.reaches(to.domain):
            self._bounce(sender, stanza, "remote-server-not-found")
            return
        sender_local = sender.local if sender.domain == self.config.domain else None
        if sender_local and self.blocking.blocks(sender_local, to):
            self._bounce(sender, stanza, "not-acceptable", "cancel", E("blocked", ns=BLOCKING_ERRORS))
            return
        if sender_local and self.storable(stanza) and stanza.find(q(HINTS, "no-permanent-store")) is None:
            self.archive(sender_local, str(to), stanza)
        self.send_remote(to, stanza)
        if sender_local and session is not None and stanza.get("type") == "chat":
            self._carbons("sent", sender_local, stanza, exclude=[session])

    @staticmethod
    def storable(stanza: Element) -> bool:
        """A message offline storage keeps (RFC 6121 §8.5.2.2): normal or chat with a body, no no-store hint."""
        return (stanza.get("type", "normal") in STORABLE_MESSAGE_TYPES and stanza.find(q(CLIENT, "body")) is not None
                and stanza.find(q(HINTS, "no-store")) is None)

    def redeliver(self, session: Session, messages: list[Element]) -> None:
        """Messages a session never acknowledged (XEP-0198 §4): to the user's other resources, else offline."""
        user = session.jid.local
        others = [] if self.stopping else [s for s in self.available_sessions(user)
                                             if s is not session and not s.detached]
        for stanza in messages:
            if not self.storable(stanza):
                continue
            if others:
                for target in others:
                    copy_ = copy.deepcopy(stanza)
                    copy_.set("to", str(target.jid))
                    target.send(copy_)
            else:
                self.store_offline(user, stanza)

    def _carbons(self, direction: str, owner: str, stanza: Element, exclude: list[Session]) -> None:
        if self.flawed("carbons-across-accounts"):
            candidates = [s for s in self.sessions.values() if s.carbons]
        else:
            candidates = [s for s in self.sessions_of(owner) if s.carbons]
        for target in candidates:
            if target in exclude:
                continue
            forwarded = E("forwarded", None, copy.deepcopy(stanza), ns=FORWARD)
            carbon = E(q(CLIENT, "message"), {"from": f"{owner}@{self.config.domain}", "to": str(target.jid),
                                              "type": "chat"}, E(direction, None, forwarded, ns=CARBONS))
            target.send(carbon)

    def route_iq(self, session: Session | None, sender: JID, stanza: Element, to: JID | None) -> None:
        itype = stanza.get("type")
        if itype not in ("get", "set", "result", "error"):
            self._bounce(sender, stanza, "bad-request", "modify")
            return
        if to is not None and to.domain != self.config.domain:
            if not self.send_remote(to, stanza):
                self._bounce(sender, stanza, "remote-server-not-found")
            return
        if itype in ("result", "error"):
            if to is not None:
                self.deliver_direct(to, stanza)
            return
        if to is None or (to.local is None and to.resource is None):
            if to is None and sender.local is not None:
                self.account_iq.handle(session, sender, sender.local, stanza)
            else:
                self._server_iq(sender, stanza)
            return
        if to.local is None or to.local not in self.store.accounts:
            self._bounce(sender, stanza, "service-unavailable")
            return
        if to.resource is None:
            self.account_iq.handle(session, sender, to.local, stanza)
            return
        target = self.sessions.get(to)
        same_account = sender.bare == to.bare
        item = self.store.item(to.local, str(sender.bare))
        authorized = same_account or (item is not None and item.has_from and not self.blocking.blocks(to.local, sender))
        if target is None and self.flawed("absent-resource-distinct-error"):
            self._bounce(sender, stanza, "recipient-unavailable", "wait")  # flaw: tells absent from present
            return
        if target is None or not authorized:
            # RFC 6121 §8.5.3.2.1: <service-unavailable/> for an absent resource; the same answer for a present
            # one that the requester may not know about, so nothing leaks about which resources are online.
            self._bounce(sender, stanza, "service-unavailable")
            return
        target.send(stanza)

    def _server_iq(self, sender: JID, stanza: Element) -> None:
        child = stanza[0] if len(stanza) else None
        ns = split(child.tag)[0] if child is not None else None
        if ns == PING:
            self.deliver_direct(sender, iq_result(stanza))
        elif ns == DISCO_INFO:
            features = ["http://jabber.org/protocol/disco#info", PING, "urn:xmpp:blocking", "jabber:iq:last",
                        CARBONS, "msgoffline"]
            answer = E("query", None, E("identity", {"category": "server", "type": "im",
                                                     "name": "impp-conformance reference"}, ns=DISCO_INFO),
                       *(E("feature", {"var": f}, ns=DISCO_INFO) for f in features), ns=DISCO_INFO)
            self.deliver_direct(sender, iq_result(stanza, answer))
        else:
            self._bounce(sender, stanza, "service-unavailable")

    # -- storage ---------------------------------------------------------------------------------------------------------

    def archive(self, owner: str, with_jid: str, stanza: Element) -> str:
        entries = self.store.archives.setdefault(owner, [])
        entry_id = uuid.uuid4().hex
        entries.append({"id": entry_id, "stamp": _now_stamp(), "with": with_jid,
                        "xml": to_bytes(stanza, CLIENT).decode()})
        del entries[:-self.config.max_archive_per_user]
        self.store.save()
        return entry_id

    def archive_of(self, owner: str) -> list[dict]:
        return list(self.store.archives.get(owner, []))

    def store_offline(self, owner: str, stanza: Element) -> None:
        queue = self.store.offline.setdefault(owner, [])
        if len(queue) >= self.config.max_offline_per_user:
            return
        stored = copy.deepcopy(stanza)
        if stored.find(q(DELAY, "delay")) is None:  # a redelivered message keeps the stamp of its first delay
            stored.append(E("delay", {"from": self.config.domain, "stamp": _now_stamp()}, ns=DELAY))
        queue.append(to_bytes(stored, CLIENT).decode())
        self.store.save()

    def flush_offline(self, session: Session) -> None:
        queue = self.store.offline.pop(session.jid.local, [])
        if not queue:
            return
        self.store.save()
        for raw in queue:
            stanza = self.parse_stored(raw)
            stanza.set("to", str(session.jid))
            session.send(stanza)

    def flush_offline_to(self, session: Session, address: str) -> None:
        """Flaw 'offline-to-announced-identity': stored messages pushed to whoever announces the address."""
        try:
            jid = JID.parse(address)
        except JidError:
            return
        if jid.domain != self.config.domain:
            return
        for raw in self.store.offline.pop(jid.local, []):
            stanza = self.parse_stored(raw)
            stanza.set("to", address)
            session.send(stanza)
        self.store.save()

    @staticmethod
    def parse_stored(raw: str) -> Element:
        parser = StreamParser()
        events = parser.feed(b"<s xmlns='jabber:client'>" + raw.encode() + b"</s>")
        return next(e.element for e in events if isinstance(e, UnitReceived))
