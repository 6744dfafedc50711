"""The on-path attacker as the suite speaks to it: synchronous sentences over the relay (relay.py), for one test.

Its victim is a party whose connections the runtime routes through the relay; everything goes on to the profile's
IUT only. Verbs that arrange (`intercepts`, `flips_a_bit_in_next_record`, `terminates_tls`) raise SetupFailed when
the attack cannot be set up; verbs that observe return what the attacker saw, for the test to judge.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

from conformance.verdicts import SetupFailed

from .certificates import forge
from .relay import Flip, Relay, ReplayResult, StreamHooks

_ONE_TEST_AT_A_TIME = threading.Lock()


class OnPathAttacker:
    def __init__(self, rt: Any, hooks: StreamHooks):
        self.rt = rt
        self.hooks = hooks
        self.relay: Relay | None = None
        self.address: tuple[str, int] | None = None
        self._flip: Flip | None = None
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

    def flips_a_bit_in_next_record(self, where: str = "middle") -> None:
        """Flip one bit in the next TLS application-data record the victim sends to the IUT."""
        relay = self._relay()

        async def arm():
            self._flip = relay.flip(where)
        self.rt.call(arm)

    # -- observing --------------------------------------------------------------------------------------------------

    def tampered(self) -> str:
        """What the attacker altered (raises SetupFailed if the armed flip never found a record to alter)."""
        if self._flip is None or not self._flip.done.is_set():
            raise SetupFailed("the attacker never saw an application-data record to tamper with")
        return self._flip.detail

    def sees_the_iut_close(self, within: float | None = None) -> float | None:
        """Seconds from the tampering (or from now) until the IUT closed the victim's connection, or None if it
        kept it open for `within` (T_CLOSE) seconds."""
        relay = self._relay()
        bound = within if within is not None else self.rt.timeouts.close
        leg = relay.latest_leg()
        if leg is None:
            raise SetupFailed("the attacker relayed no connection")

        async def wait():
            loop = asyncio.get_running_loop()
            started = loop.time()
            try:
                await asyncio.wait_for(leg.iut_closed.wait(), bound)
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
