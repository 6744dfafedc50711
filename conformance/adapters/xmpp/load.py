"""The `flood` fixture for XMPP: bounded load on the IUT while the legitimate parties go on (IMPP-5.3).

The pacing and counting are protocol-free (conformance/attacker/flood.py); here is what is XMPP about it: a fetch
is a last-activity query (XEP-0012) from an authorized watcher's extra session, a pre-authentication connection
writes a stream header, subscription spam comes from many addresses of the harness's remote domain over one
authenticated server-to-server stream, and a legitimate round trip is a fresh login plus a message that arrives.
Each flood runs on the harness loop in the background while the test's own steps go on, and stops by itself at
the profile's `load` bounds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import time
from typing import TYPE_CHECKING, Iterator

from conformance.attacker.flood import ConnectionFlood, ConnectionTally, Pacing, paced
from conformance.transport.connection import ConnectionClosed
from conformance.verdicts import SetupFailed

from .client import ProtocolViolation, StreamEnded
from .codec.stanza import LAST, SERVER, error_condition, iq, message, presence, stream_header
from .codec.xml import E
from .observe import delivers
from .runtime import Runtime, TargetUnreachable

if TYPE_CHECKING:
    from .party import XmppParty
    from .remote_server import PeerStream

ROUNDS = 20  # the test's own steps per flood duration
MAX_ROUNDS = 1000  # and never more than this many, whatever the flood does
THROTTLE_CONDITIONS = ("policy-violation", "resource-constraint")


@dataclasses.dataclass
class Trip:
    """A legitimate party's fresh login and message round trip."""

    ok: bool
    seconds: float
    detail: str

    def __str__(self) -> str:
        return f"{self.detail} ({self.seconds:.2f}s)"


class _Background:
    """A flood running on the harness loop while the test thread goes on."""

    def __init__(self, rt: Runtime, coro_fn):
        self.rt = rt
        self.future = rt.portal.start_task_soon(coro_fn)

    @property
    def running(self) -> bool:
        return not self.future.done()

    def meanwhile(self) -> Iterator[int]:
        """Rounds of the test's own steps while the flood runs: one every ROUNDS-th of the flood's duration (a
        presentity changing status now and then, not a second flood), until the flood ends."""
        interval = self.rt.profile.load.duration / ROUNDS
        for i in range(MAX_ROUNDS):
            if not self.running:
                return
            started = time.monotonic()
            yield i
            try:  # the rest of the round's interval, or less if the flood ends first
                self.future.result(timeout=max(0.0, interval - (time.monotonic() - started)))
            except concurrent.futures.TimeoutError:
                pass
            except Exception:  # noqa: BLE001 - finish() deals with a failed flood
                return

    def finish(self) -> None:
        """Wait for the flood to end by itself (its bounds), or stop it past the case's bound."""
        try:
            self.future.result(timeout=self.rt.profile.load.duration + self.rt.timeouts.step + 5)
        except Exception:  # noqa: BLE001 - a flood's failure is reported by its counts, not raised
            self.future.cancel()


class FetchLoad(_Background):
    def __init__(self, rt: Runtime, by: "XmppParty", owner: "XmppParty"):
        self.by = by
        self.owner = owner
        load = rt.profile.load
        self.pacing = Pacing(target_rate=load.rate)
        self.sent_ids: list[str] = []
        self.client = None
        self.cut: str | None = None  # how the IUT ended the fetcher's stream, if it did
        self.counts: dict[str, int] = {}
        super().__init__(rt, self._run)

    async def _run(self) -> None:
        load = self.rt.profile.load
        self.client = client = await self.by._login(resource="fetcher", available=False)

        async def fetch(_i: int) -> None:
            request = iq("get", E("query", ns=LAST), to=self.owner.bare)
            self.sent_ids.append(request.get("id"))
            await client.send(request)

        try:
            await paced(fetch, rate=load.rate, duration=load.duration, count=int(load.rate * load.duration),
                        pacing=self.pacing)
            await self.by._ping(client)  # every fetch before it has been answered (or dropped) now
        except (StreamEnded, ConnectionClosed, ConnectionError, ProtocolViolation, asyncio.TimeoutError) as exc:
            self.cut = str(exc) or type(exc).__name__
        except SetupFailed as exc:
            self.cut = str(exc)
        if client.ended and self.cut is None:
            self.cut = client.end_reason()
        self._classify(client)
        await client.close()

    def _classify(self, client) -> None:
        sent = set(self.sent_ids)
        counts = {"answered": 0, "throttled": 0, "refused": 0}
        for unit in client.received:
            if unit.get("id") not in sent or unit.get("type") not in ("result", "error"):
                continue
            if unit.get("type") == "result":
                counts["answered"] += 1
            elif error_condition(unit) in THROTTLE_CONDITIONS:
                counts["throttled"] += 1
            else:
                counts["refused"] += 1
        counts["unanswered"] = len(sent) - sum(counts.values())
        self.counts = counts

    @property
    def throttled(self) -> bool:
        """Did the IUT restrict the fetcher: throttling errors, ending its stream, or reading it slower than it
        wrote (the achieved rate fell below half the aimed one)?"""
        return (self.counts.get("throttled", 0) > 0 or self.cut is not None
                or self.pacing.rate < self.pacing.target_rate / 2)

    def summary(self) -> str:
        c = self.counts
        cut = f"; the IUT ended the fetcher's stream: {self.cut}" if self.cut else ""
        return (f"{self.by.name} sent {self.pacing.sent} last-activity queries about {self.owner.name} in "
                f"{self.pacing.elapsed:.1f}s ({self.pacing.rate:.0f}/s, aiming at {self.pacing.target_rate:g}/s): "
                f"{c.get('answered', 0)} answered, {c.get('throttled', 0)} throttled "
                f"({'/'.join(THROTTLE_CONDITIONS)}), {c.get('refused', 0)} refused otherwise, "
                f"{c.get('unanswered', 0)} unanswered{cut}")


class ConnectionLoad(_Background):
    def __init__(self, rt: Runtime, flood: ConnectionFlood):
        self.flood = flood
        super().__init__(rt, flood.run)

    @property
    def tally(self) -> ConnectionTally:
        return self.flood.tally

    def summary(self) -> str:
        source = f" from {self.flood.source}" if self.flood.source else ""
        return f"{self.tally}{source}"


class SubscriptionSpam(_Background):
    def __init__(self, rt: Runtime, via: "PeerStream", to: "XmppParty"):
        self.via = via
        self.to = to
        self.prefix = rt.canary("spam").lower().replace("_", "-")
        self.pacing = Pacing(target_rate=rt.profile.load.rate)
        super().__init__(rt, self._run)

    @property
    def sent(self) -> int:
        return self.pacing.sent

    def address(self, i: int) -> str:
        return f"{self.prefix}-{i}@{self.via.domain}"

    async def _run(self) -> None:
        load = self.rt.profile.load

        async def spam(i: int) -> None:
            await self.via.client.send(presence(to=self.to.bare, type_="subscribe", from_=self.address(i), ns=SERVER))

        try:
            await paced(spam, rate=load.rate, duration=load.duration, count=load.subscriptions, pacing=self.pacing)
        except (ConnectionClosed, ConnectionError, StreamEnded):
            pass

    def requests_delivered(self) -> list[str]:
        """The spam's requests that reached the party, on any of its streams."""
        seen = []
        for _, unit in self.to._units_since(None):
            sender = unit.get("from") or ""
            if unit.get("type") == "subscribe" and sender.startswith(self.prefix + "-"):
                seen.append(sender)
        return sorted(set(seen))

    def summary(self) -> str:
        return (f"{self.via.domain}'s server sent {self.pacing.sent} subscription requests from distinct addresses "
                f"to {self.to.name} in {self.pacing.elapsed:.1f}s ({self.pacing.rate:.0f}/s)")


class Flood:
    """The `flood` fixture's verbs."""

    def __init__(self, rt: Runtime, cast):
        self.rt = rt
        self.cast = cast

    @property
    def bound(self) -> float:
        """What a legitimate party may wait during a flood (profile `load.latency`)."""
        return self.rt.profile.load.latency

    @contextlib.contextmanager
    def fetches(self, owner: "XmppParty", *, by: "XmppParty") -> Iterator[FetchLoad]:
        """`by` asks for `owner`'s last activity (XEP-0012) at the profile's rate, from an extra session, for the
        profile's duration; the `with` block runs meanwhile and its end waits for the flood's."""
        load = FetchLoad(self.rt, by, owner)
        try:
            yield load
        finally:
            load.finish()
        if load.client is None:
            raise SetupFailed(f"{by.name} could not log in an extra session to fetch from")

    @contextlib.contextmanager
    def opens_connections(self, style: str) -> Iterator[ConnectionLoad]:
        """Pre-authentication connections (silent, trickling or churning) to the IUT's client port, from the
        profile's `load.source`, each writing a stream header to the IUT's domain."""
        load = self.rt.profile.load
        opener = stream_header(to=self.rt.domain)
        flood = ConnectionFlood(self.rt.address, opener, style=style, count=load.connections, duration=load.duration,
                                rate=max(load.connections / (load.duration / 2), 1.0) if style != "churning"
                                else min(load.rate, load.connections / load.duration),
                                source=load.source)
        running = ConnectionLoad(self.rt, flood)
        try:
            self.rt.call(flood.at_full_strength, timeout=load.duration + 5)
            yield running
        finally:
            flood.release()
            running.finish()

    @contextlib.contextmanager
    def spams_subscriptions(self, party: "XmppParty", *, via: "PeerStream") -> Iterator[SubscriptionSpam]:
        """Subscription requests to `party` from the profile's `load.subscriptions` distinct addresses of the
        peer's domain, over the peer's stream. Afterwards `party` declines every one that reached it, so that no
        pending request outlives the test."""
        spam = SubscriptionSpam(self.rt, via, party)
        try:
            yield spam
        finally:
            spam.finish()
        self._decline(party, spam)

    def _decline(self, party: "XmppParty", spam: SubscriptionSpam) -> None:
        async def run():
            client = await party._ensure_online()
            for address in spam.requests_delivered()[: self.rt.profile.load.subscriptions]:
                await client.send(presence(to=address, type_="unsubscribed"))
            await party._ping(client)
        try:
            self.rt.call(run, timeout=self.rt.timeouts.step * 2)
        except (SetupFailed, TimeoutError, StreamEnded, ConnectionError):
            pass  # best effort: the next test's reset cleans what is left

    def round_trip(self, sender: "XmppParty", to: "XmppParty") -> Trip:
        """A fresh login of `sender` (TCP, TLS, SASL, bind) and a message to `to` that arrives, timed; bounded by
        T_HS + T_STEP for the login and by `load.latency` for the delivery. Never raises for what the IUT does: a
        refused, slow or failed round trip is the result."""
        canary = self.rt.canary(f"{sender.name}-trip")

        async def run() -> Trip:
            loop = asyncio.get_running_loop()
            start = loop.time()
            try:
                client = await sender._login(resource=f"trip-{canary[-6:]}", available=False)
            except (SetupFailed, TargetUnreachable, StreamEnded, ConnectionError, ProtocolViolation,
                    asyncio.TimeoutError) as exc:
                return Trip(False, loop.time() - start, f"{sender.name} could not log in: {exc}")
            login = loop.time() - start
            update = sender._update("message", canary)
            try:
                await client.send(message(to.bare, canary))
                got = await to._wait(lambda u: delivers(u, update), self.bound, update.marks.get(to.name))
            except (StreamEnded, ConnectionError) as exc:
                return Trip(False, loop.time() - start, f"{sender.name}'s stream ended: {exc}")
            finally:
                await client.close()
            took = loop.time() - start
            if got is None:
                return Trip(False, took, f"{sender.name} logged in in {login:.2f}s, but {to.name} did not get the "
                                         f"message within {self.bound:g}s")
            return Trip(True, took, f"{sender.name} logged in in {login:.2f}s and {to.name} got the message")
        return self.rt.call(run, timeout=self.rt.timeouts.handshake + self.rt.timeouts.step * 3 + self.bound)
