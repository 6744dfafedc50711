"""Role verbs for parser and size abuse (IMPP-5.3-3): a party opens streams of its own and feeds the IUT's XML parser
what RFC 6120 §11 and §13.12 say it must refuse, then reports how the IUT reacted on that stream. Mixed into
XmppParty; the bytes come from `malformed.py`.

How a reaction is read: after the abusive input the party sends a request the IUT answers on a live stream (a ping,
or before authentication a SASL <auth/> for a mechanism nobody offers). That answer coming back means the stream
went on, so the input was taken; a stream error or a close means it was refused. Where the IUT does neither, the
wait ends after T_CLOSE. The harness's own parser limits stay on: an IUT that echoes a huge or deep stanza back
makes the harness refuse it, which is reported as the IUT having processed it.
"""

from __future__ import annotations

import asyncio
import time
import types
from typing import TYPE_CHECKING

from conformance.attacker import fuzz
from conformance.roles import Abuse, Outcome, Reaction, Update
from conformance.transport.connection import ConnectionClosed, HandshakeFailed
from conformance.verdicts import SetupFailed, note

from . import malformed
from .client import ProtocolViolation, StreamEnded, XmppClient
from .codec.stanza import PING, SASL, error_condition, iq, is_stream_error, kind, new_id, q
from .codec.xml import E, StreamOpened, StreamParser, UnitReceived, XmlError, to_bytes
from .observe import describe

if TYPE_CHECKING:
    from .party import XmppParty

STREAM_LIMITS = "urn:xmpp:stream-limits:0"  # XEP-0478
MIN_STANZA_LIMIT = 10_000  # RFC 6120 §13.12: a deployed stanza size limit must not be smaller
STAGE_NAMES = {"header": "in place of the stream header after TLS", "unauthenticated": "before authentication",
               "authenticated": "after authentication and resource binding"}


class ParserAbuseVerbs:
    # -- the three abuses the catalogue spells out ------------------------------------------------------------------

    def sends_message_through_entities(self: "XmppParty", to: "XmppParty") -> Abuse:
        """Log in on a fresh stream whose header after authentication is preceded by an internal DTD subset declaring
        a small chain of entities (two levels, fan-out two: no billion laughs); where the IUT goes on, bind and send
        `to` a message whose body is only a reference to the top entity. The update's canary is the entity's text,
        which reaches `to` only through a parser that expanded it."""
        canary = self.rt.canary(f"{self.name}-entity")
        doctype, top = malformed.entity_chain(canary, levels=2, fanout=2)

        async def run() -> Abuse:
            client = await self.rt.secure_stream(f"{self.name}-dtd")
            self._abusive(client)
            update = Update(kind="message", sender=self, canary=canary, marks=self.cast.marks(),
                            fence=lambda: self._fence_on(client))
            client.prolog = doctype
            try:
                result = await client.authenticate(self.account.username, self.account.password)
            except (StreamEnded, ProtocolViolation, ConnectionClosed, asyncio.TimeoutError):
                result = None  # the restarted stream, with its DOCTYPE, was refused: the reaction says how
            if result is not None and not result.success:
                raise SetupFailed(f"{self.name} could not log in (<{result.condition}/>)")
            detail = "a stream header preceded by an internal DTD subset declaring entities"
            if result is None:
                return Abuse(self._ended(client, self.rt.timeouts.step), update, len(doctype), detail)
            await self._bind_quietly(client)
            stanza = malformed.message_referencing(to.bare, top, new_id("m"))
            reaction = await self._send_and_observe(client, stanza, None)
            return Abuse(reaction, update, len(doctype) + len(stanza), detail + ", then a message referencing one")
        return self._call(run)

    def sends_oversized_stanza(self: "XmppParty") -> Abuse:
        """On a fresh stream after authentication and binding, a request to the service one byte larger than the
        stanza size limit the IUT advertises (XEP-0478), or of the profile's `abuse.oversized_bytes` where it
        advertises none. Addressed to the service, so a careless IUT delivers it to no user."""
        async def run() -> Abuse:
            client = await self._abusive_session()
            limit = self._advertised_limit(client)
            if limit is None:
                size = self.rt.profile.abuse.oversized_bytes
                note(f"the IUT advertises no stanza size limit (XEP-0478): sent a stanza of {size} bytes")
            else:
                size = limit + 1
                note(f"the IUT advertises a stanza size limit of {limit} bytes (XEP-0478): sent {size} bytes")
                if limit < MIN_STANZA_LIMIT:
                    note(f"an advertised limit of {limit} bytes is below the {MIN_STANZA_LIMIT} RFC 6120 §13.12 "
                         f"allows")
            rid = new_id("big")
            stanza = malformed.oversized_ping(self.rt.domain, rid, size)
            reaction = await self._send_and_observe(client, stanza, rid)
            return Abuse(reaction, None, len(stanza), f"a stanza of {len(stanza)} bytes")
        return self._call(run)

    def sends_deeply_nested_stanza(self: "XmppParty", depth: int = 10_000) -> Abuse:
        """On a fresh stream after authentication and binding, a request to the service whose payload nests `depth`
        elements, each the only child of the one before."""
        async def run() -> Abuse:
            client = await self._abusive_session()
            rid = new_id("deep")
            stanza = malformed.deep_ping(self.rt.domain, rid, depth)
            reaction = await self._send_and_observe(client, stanza, rid)
            return Abuse(reaction, None, len(stanza), f"a stanza nested {depth} levels deep ({len(stanza)} bytes)")
        return self._call(run)

    # -- malformed input drawn by hypothesis ----------------------------------------------------------------------------

    def sends_malformed_input(self: "XmppParty", stage: str) -> Outcome:
        """Samples of malformed XMPP (`malformed.samples`), each on a fresh stream at `stage` ("header": in place of
        the stream header after TLS; "unauthenticated"; "authenticated": this party's own, bound). Bounded and
        reproducible by the profile's [abuse] table. `refused` is True when the IUT ended every stream; otherwise
        `data` holds the first and the smallest (shrunk) failing sample, also written next to the transcript."""
        if stage not in malformed.STAGES:
            raise ValueError(f"unknown stage {stage!r}; known: {', '.join(malformed.STAGES)}")
        bounds = self.rt.profile.abuse
        limit = self._call(self._learn_limit) if stage != "header" else None
        oversize = limit + 1 if limit is not None else bounds.oversized_bytes
        strategy = malformed.samples(self.rt.domain, stages=(stage,), oversize=oversize)

        def probe(sample: malformed.Sample) -> str | None:
            return self.rt.call(self._probe_sample, sample, timeout=self.rt.timeouts.close * 3 + 30)

        run = fuzz.run(strategy, probe, examples=bounds.examples, seconds=bounds.seconds, seed=bounds.seed,
                       key=lambda s: (s.stage, s.data))
        summary = (f"{run.probed} malformed sample(s) sent {STAGE_NAMES[stage]} in {run.seconds:.1f}s "
                   f"(seed {bounds.seed}, at most {bounds.examples} samples, {bounds.seconds:g}s"
                   f"{', budget used up' if run.out_of_time else ''})")
        self.rt.recorder.event(self.name, summary)
        if not run.failures:
            note(summary + ": the IUT ended every stream")
            return Outcome(refused=True, detail=summary)
        data = []
        for label, failure in (("first", run.first), ("shrunk", run.shrunk)):
            path = self._evidence_file(f"malformed-{stage}-{label}.bin", failure.sample.data)
            where = f" (written to {path.name})" if path is not None else ""
            self.rt.recorder.event(self.name, f"{label} failing sample{where}: {failure.sample.describe(400)} -> "
                                              f"{failure.detail}")
            data.append(f"{label}: {failure.sample.describe()} -> {failure.detail}")
        detail = (f"{len(run.failures)} of {summary} were taken without ending the stream; the smallest "
                  f"(shrunk): {run.shrunk.sample.describe()} -> {run.shrunk.detail}")
        return Outcome(refused=False, data=data, detail=detail)

    async def _probe_sample(self: "XmppParty", sample: malformed.Sample) -> str | None:
        """Send one sample on a fresh stream; None when the IUT ended the stream, else what it did instead."""
        role = f"{self.name}-malformed"
        started = time.monotonic()
        if sample.stage == "header":
            client = await self.rt.connect(role)
            try:
                if self.rt.profile.target.tls == "direct":
                    await client.conn.start_tls(self.rt.tls_context(), server_hostname=self.rt.domain,
                                                timeout=self.rt.timeouts.handshake)
                else:
                    await client.open_stream()
                    await client.request_tls()
                    await client.conn.start_tls(self.rt.tls_context(), server_hostname=self.rt.domain,
                                                timeout=self.rt.timeouts.handshake)
            except (StreamEnded, ProtocolViolation, ConnectionClosed, HandshakeFailed, asyncio.TimeoutError) as exc:
                client.conn.abort()
                raise SetupFailed(f"could not get a TLS connection to send a sample on: {exc}") from None
            try:
                return await self._header_reaction(client, sample.data)
            finally:
                await client.conn.close()
        if sample.stage == "unauthenticated":
            client = await self.rt.secure_stream(role)
        else:
            client = await self._authenticated_stream()
            await self._bind_quietly(client)
        fence = "sasl" if sample.stage == "unauthenticated" else "ping"
        try:
            reaction = await self._send_and_observe(client, sample.data, None, fence=fence)
        finally:
            await client.close()
        if reaction.stream_error is not None or (reaction.closed and not reaction.answered):
            self.rt.recorder.event(client.label, f"sample refused after {time.monotonic() - started:.2f}s: "
                                                 f"{reaction}")
            return None
        return str(reaction)

    async def _header_reaction(self, client: XmppClient, data: bytes) -> str | None:
        """Send a sample that stands in place of the stream header and read the IUT's answer with a parser of its
        own: its stream features mean the IUT took the header; a stream error or a close, that it refused it."""
        parser = StreamParser(self.rt.limits)
        try:
            await client.conn.send(data)
        except (ConnectionClosed, ConnectionError):
            pass

        async def read() -> str | None:
            while True:
                try:
                    chunk = await client.conn.recv()
                except ConnectionClosed:
                    return None
                try:
                    events = parser.feed(chunk)
                except XmlError as exc:
                    return f"the IUT answered with XML the harness refuses ({exc})"
                for event in events:
                    if isinstance(event, UnitReceived):
                        if is_stream_error(event.element):
                            client.conn.recorder.event(client.label, f"refused: stream error "
                                                                     f"<{error_condition(event.element)}/>")
                            return None
                        return f"the IUT went on with the stream: {describe(event.element, 120)}"
                    if isinstance(event, StreamOpened):
                        continue
                if client.conn.closed:
                    return None
        try:
            return await asyncio.wait_for(read(), self.rt.timeouts.close)
        except asyncio.TimeoutError:
            return f"neither a stream error nor a close within {self.rt.timeouts.close:g}s"

    # -- plumbing ------------------------------------------------------------------------------------------------------

    def _abusive(self: "XmppParty", client: XmppClient) -> None:
        """Keep an abusive stream for the teardown (it is no stream of the party's sessions)."""
        self.cast.extra_streams.append(types.SimpleNamespace(client=client))

    async def _abusive_session(self: "XmppParty") -> XmppClient:
        client = await self._authenticated_stream()
        self._abusive(client)
        await self._bind_quietly(client)
        return client

    async def _bind_quietly(self: "XmppParty", client: XmppClient) -> None:
        try:
            await client.bind()
        except (StreamEnded, ProtocolViolation, asyncio.TimeoutError) as exc:
            await client.close()
            raise SetupFailed(f"{self.name} could not bind a resource on a fresh stream: {exc}") from None

    @staticmethod
    def _advertised_limit(client: XmppClient) -> int | None:
        limits = client.feature(STREAM_LIMITS, "limits")
        text = limits.findtext(q(STREAM_LIMITS, "max-bytes")) if limits is not None else None
        try:
            return int(text) if text else None
        except ValueError:
            return None

    async def _learn_limit(self: "XmppParty") -> int | None:
        client = await self._authenticated_stream()
        try:
            return self._advertised_limit(client)
        finally:
            await client.close()

    async def _fence_on(self: "XmppParty", client: XmppClient) -> None:
        """Ordering point for what `client` sent: a round trip on it, unless the IUT ended it (then nothing more it
        sent will be processed)."""
        if not client.ended:
            try:
                await client.request(iq("get", E("ping", ns=PING), to=self.rt.domain))
            except (StreamEnded, ConnectionClosed, asyncio.TimeoutError):
                pass

    async def _send_and_observe(self: "XmppParty", client: XmppClient, data: bytes, request_id: str | None, *,
                                fence: str = "ping") -> Reaction:
        """Send `data`, then a request the IUT answers on a live stream (a ping; before authentication a SASL
        <auth/> nobody offers: `fence="sasl"`), and read the reaction (bounded by T_CLOSE). An error carrying
        `request_id` is the IUT's stanza error for the abusive stanza itself."""
        client.start_pump()
        mark = len(client.received)
        fence_id = new_id("fence")
        fence_bytes = malformed.sasl_probe() if fence == "sasl" else \
            to_bytes(iq("get", E("ping", ns=PING), to=self.rt.domain, id_=fence_id))
        timeout = self.rt.timeouts.close

        def answers(unit) -> bool:
            if kind(unit) == "iq" and unit.get("id") in (fence_id, request_id):
                return True
            return unit.tag in (q(SASL, "failure"), q(SASL, "challenge"), q(SASL, "success"))

        try:
            await asyncio.wait_for(client.send_raw(data), timeout)
            await client.send_raw(fence_bytes)
        except asyncio.TimeoutError:
            pass  # the IUT stopped reading: what follows says whether it also ended the stream
        except (ConnectionClosed, ConnectionError):
            pass  # the IUT closed while we were still sending
        got = await client.wait_for(answers, timeout, mark)
        if client.xml_error is not None:
            return Reaction(answered=True, detail=f"the IUT sent back XML the harness refuses ({client.xml_error})")
        if got is not None and request_id is not None and got.get("id") == request_id:
            if got.get("type") == "error":
                return Reaction(stanza_error=error_condition(got), detail=describe(got))
            return Reaction(answered=True, detail=f"the IUT answered it: {describe(got, 160)}")
        if got is not None:
            return Reaction(answered=True, detail=f"the stream went on: the IUT answered what followed "
                                                  f"({describe(got, 160)})")
        return self._ended(client, timeout)

    @staticmethod
    def _ended(client: XmppClient, timeout: float | None = None) -> Reaction:
        if client.stream_error is not None:
            return Reaction(stream_error=client.stream_error_condition, closed=True, detail=client.end_reason())
        if client.ended:
            return Reaction(closed=True, detail=client.end_reason())
        return Reaction(detail=f"neither an answer nor a stream error nor a close within {timeout or 0:g}s")

    def _evidence_file(self: "XmppParty", name: str, data: bytes):
        """Write `data` next to the case's transcript (the directory of its TLS key log); the path, or None."""
        if self.rt.keylog is None:
            return None
        path = self.rt.keylog.parent / name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        except OSError:
            return None
        return path

