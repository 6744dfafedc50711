"""A session the service grants without credentials (SASL ANONYMOUS, RFC 4505, XEP-0175): authenticated as no
one, with a temporary address. The framework's watchers must be authenticated (§5.9); such a session may see a
presentity's presence only if the presentity approved that exact temporary address."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from conformance.roles import Update
from conformance.verdicts import SetupFailed, Violation, negative_check

from .client import StreamEnded, XmppClient
from .codec.stanza import PING, iq, presence
from .codec.xml import E
from .observe import describe, error_of, reveals

if TYPE_CHECKING:
    from .party import XmppParty
    from .runtime import Runtime


class AnonymousSession:
    def __init__(self, rt: "Runtime", client: XmppClient):
        self.rt = rt
        self.client = client
        self.label = client.label

    def __repr__(self) -> str:
        return f"anonymous {self.bare}"

    @property
    def bare(self) -> str:
        return str(self.client.jid.bare)

    async def _fence(self) -> None:
        """Round trip to the service: everything sent before, and routed to this session, is in."""
        if self.client.ended:
            return
        try:
            await self.client.request(iq("get", E("ping", ns=PING), to=self.client.jid.domain))
        except StreamEnded:
            return
        except asyncio.TimeoutError:
            raise SetupFailed(f"{self.label}'s ping was not answered within {self.rt.timeouts.step:g}s") from None

    def _send(self, stanza) -> None:
        async def run():
            await self.client.send(stanza)
            await self._fence()
        self.rt.call(run)

    def requests_subscription_to(self, other: "XmppParty") -> None:
        """Ask to watch `other` (who takes no action on the request)."""
        self._send(presence(to=other.bare, type_="subscribe"))

    def probes(self, other: "XmppParty") -> None:
        """Ask the service for `other`'s current presence."""
        self._send(presence(to=other.bare, type_="probe"))

    def does_not_receive(self, update: Update) -> None:
        """Nothing disclosing `update` (its canary, or the sender's availability) reached this session since it
        logged in. Ends on a fence: the sender's round trip, then this session's."""
        negative_check(f"{self!r} does not receive {update.sender}'s {update.kind}")

        async def run():
            if update.fence is not None:
                await update.fence()
            await self._fence()
            for unit in self.client.received:
                if reveals(unit, update) and error_of(unit) is None:
                    raise Violation(f"an anonymous session ({self.bare}), which proved no identity and was approved "
                                    f"by no one, received {update.sender}'s {update.kind}: {describe(unit)}")
        self.rt.call(run)
