"""Streams that never prove an identity: after STARTTLS, in plaintext, or stopped after SASL before binding, they send what
only an authenticated party may send, claiming whatever identity the test asks for. The IUT must refuse it all.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING

from conformance.roles import EarlyData, Reaction, TlsOutcome, Update
from conformance.transport.connection import ConnectionClosed
from conformance.verdicts import SetupFailed, Unsupported, Violation, negative_check, note

from .anonymous import AnonymousSession
from .client import ProtocolViolation, StreamEnded, XmppClient
from .codec.stanza import BIND, BLOCKING, PING, ROSTER, SM, TLS, error_condition, iq, kind, message, presence, q
from .codec.xml import E, Element
from .observe import describe, error_of, reveals
from .runtime import Runtime

if TYPE_CHECKING:
    from .party import XmppParty


@dataclasses.dataclass(frozen=True)
class Offer:
    starttls: bool
    starttls_required: bool
    mechanisms: list[str]
    tls: bool
    detail: str

    def __str__(self) -> str:
        return self.detail


class UnauthenticatedStream:
    def __init__(self, rt: Runtime, client: XmppClient, label: str, cast):
        self.rt = rt
        self.client = client
        self.label = label
        self.cast = cast
        self._mark = 0
        self._request_id: str | None = None
        self._fence_id: str | None = None
        self._settled: Reaction | None = None

    def __repr__(self) -> str:
        return self.label

    bare = None  # no identity

    # -- sending -----------------------------------------------------------------------------------------------------

    async def _send(self, element: Element) -> None:
        """Send `element`, then a ping: whatever the IUT answers to the ping (even an error, or closing the
        stream) comes after it has dealt with `element`, since a stream is processed in order (RFC 6120 §10.1)."""
        self.client.start_pump()
        self._mark = len(self.client.received)
        self._request_id = element.get("id") if kind(element) == "iq" else None
        fence = iq("get", E("ping", ns=PING), to=self.rt.domain)
        self._fence_id = fence.get("id")
        self._settled: Reaction | None = None
        try:
            await self.client.send(element)
            await self.client.send(fence)
        except ConnectionError:
            pass

    def _update(self, kind_: str, canary: str) -> Update:
        return Update(kind=kind_, sender=self, canary=canary, marks=self.cast.marks(), fence=self._settle,
                      reveal_availability=False)

    def sends_presence(self, *, claiming: "XmppParty") -> Update:
        canary = self.rt.canary("unauth-status")

        async def run():
            update = self._update("presence", canary)
            await self._send(presence(status=canary, from_=claiming.bare))
            return update
        return self.rt.call(run)

    def sends_message(self, to: "XmppParty", *, claiming: "XmppParty | None" = None) -> Update:
        canary = self.rt.canary("unauth-msg")

        async def run():
            update = self._update("message", canary)
            await self._send(message(to.bare, canary, from_=claiming.bare if claiming else None))
            return update
        return self.rt.call(run)

    def requests_subscription_to(self, other: "XmppParty", *, claiming: "XmppParty") -> Update:
        canary = self.rt.canary("unauth-subscribe")

        async def run():
            update = self._update("presence", canary)
            await self._send(presence(to=other.bare, type_="subscribe", status=canary, from_=claiming.bare))
            return update
        return self.rt.call(run)

    def approves(self, other: "XmppParty", *, claiming: "XmppParty") -> None:
        self.rt.call(self._send, presence(to=other.bare, type_="subscribed", from_=claiming.bare))

    def reads_roster(self, *, claiming: "XmppParty") -> None:
        self.rt.call(self._send, iq("get", E("query", ns=ROSTER), from_=claiming.full_jid))

    def changes_permissions_of(self, owner: "XmppParty", *, grant: "XmppParty") -> None:
        item = E("item", {"jid": grant.bare, "subscription": "both"}, ns=ROSTER)
        self.rt.call(self._send, iq("set", E("query", None, item, ns=ROSTER), from_=owner.full_jid))

    def blocks(self, target: "XmppParty", *, claiming: "XmppParty") -> None:
        block = E("block", None, E("item", {"jid": target.bare}, ns=BLOCKING), ns=BLOCKING)
        self.rt.call(self._send, iq("set", block, from_=claiming.full_jid))

    def binds_resource(self) -> None:
        self.rt.call(self._send, iq("set", E("bind", None, E("resource", text="unauthenticated", ns=BIND), ns=BIND)))

    def enables_stream_management(self) -> Reaction:
        """Send XEP-0198 <enable resume='true'/> on this stream; how the IUT answers it (<enabled/>: processed)."""
        async def run():
            await self._send(E("enable", {"resume": "true"}, ns=SM))
            answers = (q(SM, "enabled"), q(SM, "failed"))
            got = await self.client.wait_for(lambda u: u.tag in answers or (kind(u) == "iq" and
                                                                           u.get("id") == self._fence_id),
                                             self.rt.timeouts.close, self._mark)
            if got is not None and got.tag == q(SM, "enabled"):
                return Reaction(answered=True, detail=describe(got))
            if got is not None and got.tag == q(SM, "failed"):
                return Reaction(stanza_error=error_condition(got) or "failed", detail=describe(got))
            if self.client.stream_error is not None:
                return Reaction(stream_error=self.client.stream_error_condition, closed=True)
            if self.client.ended:
                return Reaction(closed=True, detail=self.client.end_reason())
            return Reaction(detail="no answer to <enable/> (the ping after it was answered)" if got is not None
                            else f"no answer within {self.rt.timeouts.close:g}s")
        return self.rt.call(run)

    # -- observing the IUT's reaction -----------------------------------------------------------------------------------

    def does_not_receive(self, update: Update) -> None:
        """Nothing disclosing `update` reached this stream. Ends on a fence: the sender's round trip, then a ping on
        this stream, which the IUT answers (or refuses) only after everything it meant to send here."""
        negative_check(f"{self.label} does not receive {update.sender}'s {update.kind}")

        async def run():
            if update.fence is not None:
                await update.fence()
            if not self.client.ended:
                await self._send(iq("get", E("ping", ns=PING), to=self.rt.domain))  # answered or refused, in order
                await self._settle()
            for unit in self.client.received:
                if reveals(unit, update) and error_of(unit) is None:
                    raise Violation(f"{self.label}, which never authenticated, received {update.sender}'s "
                                    f"{update.kind}: {describe(unit)}")
        self.rt.call(run)

    async def _settle(self) -> None:
        """Ordering point for what this stream sent: the IUT's reaction to it, or a bounded wait if it gives none."""
        if self._settled is None:
            await self._reaction(self.rt.timeouts.close)

    async def _reaction(self, timeout: float) -> Reaction:
        self._settled = reaction = await self._observe(timeout)
        return reaction

    async def _observe(self, timeout: float) -> Reaction:
        client = self.client
        rid = self._request_id

        def answer(unit: Element) -> bool:
            if kind(unit) == "iq" and unit.get("id") == self._fence_id:
                return True
            if rid is not None:
                return kind(unit) == "iq" and unit.get("id") == rid
            return unit.get("type") == "error" and unit.get("id") != self._fence_id

        got = await client.wait_for(answer, timeout, self._mark)
        if got is not None and got.get("id") == self._fence_id and got.get("id") != rid:
            got = None  # the fence came back first: the stanza itself got no answer
        if got is not None and got.get("type") == "error":
            return Reaction(stanza_error=error_condition(got), detail=describe(got))
        if got is not None:
            return Reaction(answered=True, detail=describe(got))
        if client.stream_error is not None:
            return Reaction(stream_error=client.stream_error_condition, closed=True)
        if client.ended:
            return Reaction(closed=True, detail=client.end_reason())
        return Reaction(detail=f"no answer within {timeout:g}s")

    @property
    def offer(self) -> "Offer":
        """What the IUT offered on this stream before anything was negotiated."""
        features = self.client.features
        starttls = self.client.feature(TLS, "starttls")
        return Offer(starttls=starttls is not None,
                     starttls_required=starttls is not None and starttls.find(q(TLS, "required")) is not None,
                     mechanisms=self.client.mechanisms(), tls=self.client.conn.tls_active,
                     detail=describe(features) if features is not None else "no features")

    def reaction(self) -> Reaction:
        """How the IUT treated the last thing sent: stream error, stanza error, processed, or silence (T_CLOSE)."""
        reaction = self.rt.call(self._reaction, self.rt.timeouts.close)
        if not reaction.refused and not reaction.answered:
            note(f"{self.label}: the IUT gave no answer; RFC 6120 §4.9.3.12 expects a <not-authorized/> stream error")
        elif reaction.stanza_error:
            note(f"{self.label}: refused with a stanza error <{reaction.stanza_error}/> rather than the "
                 f"<not-authorized/> stream error of RFC 6120 §4.9.3.12")
        return reaction

    # -- authentication attempts -------------------------------------------------------------------------------------------

    def guesses_password_of(self, party: "XmppParty", *, mechanism: str | None = None) -> Reaction:
        """Authenticate as `party` with a wrong password (so no real secret ever travels, even in plaintext)."""
        wrong = "not-" + self.rt.canary("password")

        async def run():
            if self.client.ended:
                return Reaction(closed=True, detail=self.client.end_reason())
            result = await self.client.authenticate(party.account.username, wrong, mechanism=mechanism)
            if result.success:
                return Reaction(answered=True, detail=f"{result.mechanism} succeeded")
            if self.client.stream_error is not None:
                return Reaction(stream_error=self.client.stream_error_condition, closed=True)
            if self.client.ended:
                return Reaction(closed=True, detail=self.client.end_reason())
            return Reaction(stanza_error=result.condition, detail=f"{result.mechanism}: <{result.condition}/>")
        return self.rt.call(run)


class Unauthenticated:
    """Fixture object: each `connect()` opens a fresh stream that stops before authentication."""

    def __init__(self, rt: Runtime, cast):
        self.rt = rt
        self.cast = cast
        self._count = 0

    def connect(self, *, tls: bool = True, announcing: "XmppParty | None" = None) -> UnauthenticatedStream:
        """A fresh stream, after STARTTLS unless `tls=False` (then it stays in plaintext, ignoring the offer).
        `announcing` puts that party's address in the stream header's 'from' once TLS is up, as its own client
        would (RFC 6120 §4.7.1): a claim, which only authentication can back."""
        self._count += 1
        label = f"unauthenticated#{self._count}" + ("" if tls else "-plaintext")
        announce = announcing.bare if announcing is not None else None

        async def run():
            if tls:
                return await self.rt.secure_stream("unauthenticated", announce=announce)
            client = await self.rt.connect("unauthenticated")
            try:
                await client.open_stream()
            except (StreamEnded, ProtocolViolation, asyncio.TimeoutError) as exc:
                await client.close()
                raise SetupFailed(f"the IUT did not open a plaintext stream: {exc or type(exc).__name__}") from None
            return client
        client = self.rt.call(run)
        stream = UnauthenticatedStream(self.rt, client, label, self.cast)
        self.cast.extra_streams.append(stream)
        return stream

    def logs_in_anonymously(self) -> "AnonymousSession":
        """Log in with SASL ANONYMOUS (XEP-0175) where the profile says the service offers it (its anonymous
        domain, else the target's domain), and bind. UNSUPPORTED where ANONYMOUS is not offered."""
        domain = self.rt.profile.target.anonymous_domain or self.rt.domain

        async def run():
            client = await self.rt.secure_stream("anonymous", domain=domain)
            if "ANONYMOUS" not in client.mechanisms():
                offered = ", ".join(client.mechanisms()) or "none"
                await client.close()
                raise Unsupported(f"{domain} offers no SASL ANONYMOUS (offered: {offered}): there are no anonymous "
                                  f"watchers (set target.anonymous_domain if another host of the service has them)")
            result = await client.authenticate("", "", mechanism="ANONYMOUS")
            if not result.success:
                await client.close()
                raise SetupFailed(f"{domain} offers SASL ANONYMOUS but refused it: <{result.condition}/>")
            try:
                await client.bind()
            except (StreamEnded, ProtocolViolation) as exc:
                await client.close()
                raise SetupFailed(f"the anonymous session could not bind a resource: {exc}") from None
            client.start_pump()
            await client.send(presence())  # available, like any client: broadcasts and probe answers would reach it
            return client
        session = AnonymousSession(self.rt, self.rt.call(run))
        self.cast.extra_streams.append(session)
        return session

    def offers_tls(self, *, max_version: str = "TLSv1.2", ciphers: str = "strong", fallback_scsv: bool = False,
                   compression: str = "null") -> TlsOutcome:
        """On a fresh connection, right where TLS starts (after <proceed/>, RFC 6120 §5.4.2, or at once for direct
        TLS), offer a ClientHello of the harness's choosing and report the IUT's first answer. The hello offers every
        version up to `max_version` (TLS 1.3 through supported_versions), the `ciphers` ("strong": forward-secret
        AEAD and CBC suites; "weak": only NULL, RC4, EXPORT and anonymous suites), TLS_FALLBACK_SCSV if asked
        (RFC 7507), and `compression` ("null", or "deflate": deflate then null). The handshake goes no further."""
        from conformance.transport import tls_hello  # scapy's TLS layers: imported only by runs that probe TLS

        versions = tls_hello.VERSIONS
        if (max_version not in versions or ciphers not in tls_hello.CIPHER_SETS
                or compression not in ("null", "deflate")):
            raise ValueError(f"offers_tls: unknown max_version {max_version!r}, ciphers {ciphers!r} or "
                             f"compression {compression!r}")
        top = versions[max_version]
        suites = tls_hello.CIPHER_SETS[ciphers]
        if top >= versions["TLSv1.3"] and ciphers == "strong":
            suites = tls_hello.TLS13_SUITES + suites
        if fallback_scsv:
            suites = suites + (tls_hello.FALLBACK_SCSV,)
        hello = tls_hello.Hello(max_version=top,
                                min_version=versions["TLSv1.2"] if top >= versions["TLSv1.3"] else versions["SSLv3"],
                                ciphers=suites, compression=(1, 0) if compression == "deflate" else (0,),
                                server_name=self.rt.domain)
        if top < versions["TLSv1.2"] or ciphers == "weak" or fallback_scsv or compression == "deflate":
            negative_check(f"the IUT does not take a downgraded ClientHello ({hello})")

        async def run() -> TlsOutcome:
            client = await self.rt.connect("tls-probe")
            try:
                if self.rt.profile.target.tls != "direct":
                    await client.open_stream()
                    await client.request_tls()
                answer = await tls_hello.probe(client.conn, hello, timeout=self.rt.timeouts.handshake)
            except (StreamEnded, ProtocolViolation, ConnectionClosed, asyncio.TimeoutError) as exc:
                raise SetupFailed(f"could not get to the start of TLS: {exc or type(exc).__name__}") from None
            finally:
                client.conn.abort()  # the probe never finishes a handshake: nothing to close politely
            server_hello = answer if isinstance(answer, tls_hello.ServerHello) else None
            return TlsOutcome(
                offered=str(hello), answer=str(answer), completed=hello.accepted_by(answer),
                alert=answer.name if isinstance(answer, tls_hello.Alert) else None,
                version=server_hello.version_name if server_hello else None,
                cipher=tls_hello.suite_name(server_hello.cipher) if server_hello else None,
                compression=(tls_hello.COMPRESSION_NAMES.get(server_hello.compression, str(server_hello.compression))
                             if server_hello else None))
        return self.rt.call(run)

    def resumes_with_early_data(self) -> list[EarlyData]:
        """At each TLS door of the service (the client port, then each tcp:// listener of the profile), resume a
        session with TLS 1.3 early data holding a stream header and a SASL <auth/>, and send that first flight
        again later (early_data.py says how)."""
        from . import early_data

        target = self.rt.profile.target
        doors = [early_data.Door(self.rt, f"the client port ({'direct TLS' if target.tls == 'direct' else 'STARTTLS'})",
                                 self.rt.address, starttls=target.tls != "direct")]
        for listener in target.listeners:
            scheme, _, rest = listener.partition("://")
            host, _, port = rest.rstrip("/").rpartition(":")
            if scheme == "tcp" and host and port.isdigit():
                doors.append(early_data.Door(self.rt, listener, (host.strip("[]"), int(port)), starttls=False))
        username = next(iter(self.rt.profile.accounts.values())).username if self.rt.profile.accounts else "alice"

        async def run() -> list[EarlyData]:
            outcomes = []
            for door in doors:
                try:
                    outcomes.append(await early_data.attempt(self.rt, door, username))
                except early_data.NoTls as exc:
                    outcomes.append(EarlyData(door=door.name, no_tls=str(exc)))
            return outcomes
        return self.rt.call(run)

    @property
    def listeners(self) -> tuple[str, ...]:
        """The service's other client listeners, as the profile declares them."""
        return self.rt.profile.target.listeners

    def connect_at(self, listener: str) -> "UnauthenticatedStream | None":
        """A plaintext stream at another of the service's client listeners ("tcp://host:port"), or None when that
        listener serves no plaintext XMPP stream (refused, closed, or TLS only: all fine). Listener kinds the
        harness cannot speak yet (WebSocket, BOSH) are UNSUPPORTED."""
        scheme, _, rest = listener.partition("://")
        if scheme != "tcp":
            raise Unsupported(f"{listener}: the harness does not speak {scheme} transports yet (only tcp:// listeners)")
        host, _, port = rest.rstrip("/").rpartition(":")
        if not host or not port.isdigit():
            raise SetupFailed(f"{listener}: not a tcp://host:port address")
        self._count += 1
        label = f"unauthenticated#{self._count}-plaintext"

        async def run():
            try:
                client = await self.rt.connect("side-door", address=(host.strip("[]"), int(port)))
            except Exception as exc:  # TargetUnreachable: nothing listens there
                self.rt.recorder.event("side-door", f"{listener}: no connection ({exc})")
                return None
            try:
                await asyncio.wait_for(client.open_stream(), self.rt.timeouts.handshake)
            except (StreamEnded, ProtocolViolation, ConnectionClosed, asyncio.TimeoutError) as exc:
                client.conn.recorder.event(client.label, f"{listener} serves no plaintext XMPP stream: "
                                                         f"{exc or type(exc).__name__}")
                await client.close()
                return None
            return client
        client = self.rt.call(run)
        if client is None:
            note(f"{listener} served no plaintext XMPP stream (see the transcript: refused, closed, or TLS only)")
            return None
        stream = UnauthenticatedStream(self.rt, client, label, self.cast)
        self.cast.extra_streams.append(stream)
        return stream

    def connect_as_after_sasl(self, party: "XmppParty") -> UnauthenticatedStream:
        """A stream where `party` completed SASL but never bound a resource (RFC 6120 §7: nothing is routed yet)."""
        self._count += 1

        client = self.rt.call(party._authenticated_stream)
        stream = UnauthenticatedStream(self.rt, client, f"{party.name}-unbound", self.cast)
        self.cast.extra_streams.append(stream)
        return stream
