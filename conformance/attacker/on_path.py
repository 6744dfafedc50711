"""The on-path attacker as the suite speaks to it: synchronous sentences over the relay (relay.py), for one test.

Its victim is a party whose connections the runtime routes through the relay; everything goes on to the profile's
IUT only. Verbs that arrange (`intercepts`, `flips_a_bit_in_next_record`, `terminates_tls`) raise SetupFailed when
the attack cannot be set up; verbs that observe return what the attacker saw, for the test to judge.

When the victim is a client under test (pointed at `listening_at`) and the "IUT" the harness's genuine service, the
verbs that act on what goes to the victim attack the client: `flips_a_bit_towards_victim`, the mark /
`records_to_victim_since` / `reinjects_to_victim` replay of a flight of TLS records, `makes_tls_fail`,
`rewrites_to_victim` / `tampers_with_server_signature`; `victim_sent` says what the client sent in clear, what the
attacker decrypted of it, and whose TLS failed how.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
from typing import Any, Callable

from conformance.verdicts import SetupFailed

from . import handshake_seen
from .certificates import forge
from .handshake_seen import HandshakeSeen
from .relay import FAIL_TLS_MODES, Flip, Relay, ReplayResult, StreamHooks

_ONE_TEST_AT_A_TIME = threading.Lock()


@dataclasses.dataclass(frozen=True)
class RecordMark:
    """A position in the TLS records one leg passed to its victim (see OnPathAttacker.mark_records_to_victim)."""

    leg: int  # index of the leg in the relay
    position: int  # records the leg had passed to the victim at the mark


@dataclasses.dataclass(frozen=True)
class VictimTraffic:
    """What the victim sent, as the attacker saw it, over all legs of the test (leg labels as in the recorder)."""

    cleartext: list[tuple[str, bytes]]  # every leg: what the victim sent before any TLS (all of it, if none came up)
    decrypted: list[tuple[str, bytes]]  # legs where the attacker terminated TLS: the victim's plaintext inside it
    tls_failures: list[tuple[str, str]]  # legs whose TLS failed: why (the victim refusing the attacker's TLS, ...)
    handshakes: list[tuple[str, HandshakeSeen]]  # legs where the attacker terminated TLS: how its handshake went
    early_data: list[tuple[str, bytes]]  # legs where the victim sent TLS 1.3 early data: that data, decrypted

    def cleartext_contains(self, needle: bytes) -> list[str]:
        """Labels of the legs on which the victim sent `needle` in clear."""
        return [label for label, data in self.cleartext if needle in data]


class OnPathAttacker:
    def __init__(self, rt: Any, hooks: StreamHooks):
        self.rt = rt
        self.hooks = hooks
        self.relay: Relay | None = None
        self.address: tuple[str, int] | None = None
        self._flip: Flip | None = None
        self._rewriting = False
        self._victims: list[Any] = []

    @contextlib.contextmanager
    def engaged(self):
        """Hold the attacker for the duration of one test, and take it down after."""
        if not _ONE_TEST_AT_A_TIME.acquire(timeout=self.rt.timeouts.case):
            raise SetupFailed("the on-path attacker is busy with another test")
        try:
            yield self
        finally:
            try:
                self.close()
            finally:
                _ONE_TEST_AT_A_TIME.release()

    def _relay(self) -> Relay:
        if self.relay is None:
            async def start():
                relay = Relay(self.rt.address, self.rt.recorder, self.hooks, lifetime=self.rt.timeouts.case,
                              keylog=str(self.rt.keylog) if self.rt.keylog else None, server_hostname=self.rt.domain)
                return relay, await relay.start()
            self.relay, self.address = self.rt.call(start)
        return self.relay

    @property
    def listening_at(self) -> tuple[str, int]:
        """Where the attacker accepts connections (for a victim pointed at it explicitly)."""
        self._relay()
        return self.address

    def close(self) -> None:
        for victim in self._victims:
            self.rt.routes.pop(victim.name, None)
        if self.relay is not None:
            self.rt.call(self.relay.close, timeout=5)

    # -- arranging --------------------------------------------------------------------------------------------------

    def intercepts(self, victim: Any) -> None:
        """From now on `victim`'s connections go through the attacker; it logs in again, through it."""
        self._relay()
        self.rt.routes[victim.name] = self.address
        self._victims.append(victim)
        victim.comes_online()
        if not self.relay.legs:
            raise SetupFailed(f"{victim.name}'s new session did not go through the attacker")

    def strips_tls_offer(self) -> None:
        """Remove the service's offer of TLS from what reaches the victim (before it connects)."""
        relay = self._relay()

        async def set_knob():
            relay.strip_tls_offer = True
        self.rt.call(set_knob)

    def terminates_tls(self, certificate: str = "rogue-ca") -> Any:
        """Answer the victim's TLS with a forged certificate (signed by CA-R) and open its own TLS to the IUT.
        Returns the forged certificate (its `ca_file` is what a victim would have to trust)."""
        relay = self._relay()
        forged = forge(certificate, self.rt.domain)
        context = forged.server_context()

        async def set_knob():
            relay.terminate_tls(context)
        self.rt.call(set_knob)
        return forged

    def terminates_tls_with(self, context: Any) -> None:
        """Answer the victim's TLS with a server context the caller made (a certificate and TLS offer of its own
        choosing, e.g. an impostor of a client's service), relaying the plaintext on."""
        relay = self._relay()

        async def set_knob():
            relay.terminate_tls(context)
        self.rt.call(set_knob)

    def rewrites_client_hello(self, rewrite: Callable[[bytes], bytes] | None) -> None:
        """With TLS terminated: change the record carrying the victim's ClientHello before answering it (None: stop)."""
        self._set(rewrite_client_hello=rewrite)

    def flips_a_bit_in_next_record(self, where: str = "middle") -> None:
        """Flip one bit in the next TLS application-data record the victim sends to the IUT."""
        relay = self._relay()

        async def arm():
            self._flip = relay.flip(where)
        self.rt.call(arm)

    def flips_a_bit_towards_victim(self, where: str = "middle") -> None:
        """Flip one bit in the next TLS application-data record the IUT sends the victim (passed-through TLS)."""
        relay = self._relay()

        async def arm():
            self._flip = relay.flip(where, towards="victim")
        self.rt.call(arm)

    def makes_tls_fail(self, how: str | None) -> None:
        """From now on every TLS attempt through the attacker fails: `refused` (the request for TLS answered with
        the protocol's refusal; with direct TLS as `reset`), `reset` (TCP RST after the victim's ClientHello),
        `alert` (a fatal internal_error alert to it) or `silent` (no answer to it, ever); None stops failing TLS."""
        if how is not None and how not in FAIL_TLS_MODES:
            raise ValueError(f"unknown TLS failure {how!r}; one of {', '.join(FAIL_TLS_MODES)}")
        self._set(fail_tls=how)

    def rewrites_to_victim(self, rewrite: Callable[[bytes], bytes] | None) -> None:
        """From now on apply `rewrite` to the plaintext going to the victim (before TLS, and inside TLS the attacker
        terminates); None stops rewriting. The function runs on the event loop: keep it quick and pure."""
        self._set(rewrite_to_victim=rewrite)
        self._rewriting = rewrite is not None

    def tampers_with_server_signature(self) -> None:
        """Alter the SCRAM ServerSignature in what goes to the victim, and hide the -PLUS mechanisms (whose channel
        binding would show the genuine service the attacker's TLS instead of the victim's): for a client IUT
        behind an attacker terminating its TLS, with the adapter's rewrites."""
        strip = getattr(self.hooks, "strip_channel_binding", None)
        tamper = getattr(self.hooks, "tamper_server_signature", None)
        if strip is None or tamper is None:
            raise SetupFailed("the adapter's stream hooks cannot alter a SASL exchange")
        self.rewrites_to_victim(lambda data: strip(tamper(data)))

    def mark_records_to_victim(self) -> RecordMark:
        """Remember where the latest leg's TLS records to the victim stand (passed-through TLS), to take those
        that follow with `records_to_victim_since`."""
        relay = self._relay()

        async def mark():
            leg = relay.latest_leg()
            return None if leg is None else RecordMark(leg.index, leg.records_to_victim_seen)
        marked = self.rt.call(mark)
        if marked is None:
            raise SetupFailed("the attacker relayed no connection to mark")
        return marked

    def records_to_victim_since(self, mark: RecordMark) -> list[bytes]:
        """The complete TLS records the IUT sent the victim on the marked leg since `mark`, in order."""
        relay = self._relay()

        async def since():
            return relay.legs[mark.leg].records_to_victim_since(mark.position)
        kept = self.rt.call(since)
        if kept is None:
            raise SetupFailed("the attacker let go of records sent since the mark (it keeps the latest only)")
        return [record for _, record in kept]

    def reinjects_to_victim(self, records: list[bytes], *, leg: int | None = None) -> int:
        """Send `records` to the victim again, as if the IUT sent them once more, on leg `leg` (an index; the
        latest by default). Returns the bytes written."""
        relay = self._relay()
        if not records:
            raise SetupFailed("no TLS records to send the victim again")
        target = relay.legs[leg] if leg is not None else relay.latest_leg()
        if target is None:
            raise SetupFailed("the attacker relayed no connection")
        written = self.rt.call(relay.inject_to_victim, target, b"".join(records))
        if not written:
            raise SetupFailed("the victim's connection through the attacker is closed: nothing to inject into")
        return written

    def _set(self, **knobs: Any) -> None:
        relay = self._relay()

        async def set_knobs():
            for name, value in knobs.items():
                setattr(relay, name, value)
        self.rt.call(set_knobs)

    # -- observing --------------------------------------------------------------------------------------------------

    def tampered(self) -> str:
        """What the attacker altered (raises SetupFailed if the armed flip never found a record to alter, or, with
        no flip armed, no rewrite changed anything)."""
        if self._flip is None and self._rewriting and self.relay is not None:
            rewrites = sum(leg.rewrites for leg in self.relay.legs)
            if rewrites:
                return f"rewrote what went to the victim {rewrites} time{'s' if rewrites > 1 else ''}"
            raise SetupFailed("the attacker never saw anything to rewrite")
        if self._flip is None or not self._flip.done.is_set():
            raise SetupFailed("the attacker never saw an application-data record to tamper with")
        return self._flip.detail

    def victim_sent(self) -> VictimTraffic:
        """What the victim sent over all the test's legs: in clear, decrypted by the attacker, and whose TLS
        failed how."""
        relay = self._relay()

        async def collect():
            return VictimTraffic(
                cleartext=[(leg.label, bytes(leg.cleartext_from_victim)) for leg in relay.legs],
                decrypted=[(leg.label, bytes(leg.plaintext_from_victim)) for leg in relay.legs
                           if leg.phase == "terminated"],
                tls_failures=[(leg.label, leg.tls_failure) for leg in relay.legs if leg.tls_failure],
                handshakes=[(leg.label, handshake_seen.read(bytes(leg.tls_from_victim_head),
                                                           bytes(leg.tls_to_victim_head)))
                            for leg in relay.legs if leg.phase == "terminated"],
                early_data=[(leg.label, bytes(leg.early_data_from_victim)) for leg in relay.legs
                            if leg.early_data_from_victim])
        return self.rt.call(collect)

    def sees_the_iut_close(self, within: float | None = None) -> float | None:
        """Seconds from the tampering (or from now) until the IUT closed the victim's connection, or None if it
        kept it open for `within` (T_CLOSE) seconds."""
        return self._seconds_until("iut_closed", within)

    def sees_the_victim_close(self, within: float | None = None) -> float | None:
        """Seconds from now until the victim closed its latest connection through the attacker, or None if it kept
        it open for `within` (T_CLOSE) seconds (a client IUT that should drop a tampered connection)."""
        return self._seconds_until("victim_closed", within)

    def _seconds_until(self, closed: str, within: float | None) -> float | None:
        """Wait up to `within` (T_CLOSE) for the latest leg's `closed` event ("iut_closed" or "victim_closed")."""
        relay = self._relay()
        bound = within if within is not None else self.rt.timeouts.close
        leg = relay.latest_leg()
        if leg is None:
            raise SetupFailed("the attacker relayed no connection")

        async def wait():
            loop = asyncio.get_running_loop()
            started = loop.time()
            try:
                await asyncio.wait_for(getattr(leg, closed).wait(), bound)
            except asyncio.TimeoutError:
                return None
            return loop.time() - started
        return self.rt.call(wait, timeout=bound + 5)

    def replays_the_session(self) -> ReplayResult:
        """Send everything the victim sent on its last intercepted connection again, on a new connection to the
        IUT, as an attacker who recorded the session would."""
        relay = self._relay()
        leg = relay.latest_leg()
        if leg is None or not leg.received["out"]:
            raise SetupFailed("the attacker recorded no session to replay")
        timeouts = self.rt.timeouts
        return self.rt.call(lambda: relay.replay(leg, step=timeouts.step, close_within=timeouts.handshake),
                            timeout=timeouts.case)
