"""The cast of one test: logs every account in, brings each back to a clean state (empty roster and blocklist,
no pending requests, offline messages drained, the suite's PEP nodes deleted) so test order never changes a
verdict, and tears everything down (ending sessions left waiting for stream-management resumption).
"""

from __future__ import annotations

import asyncio
import time

from conformance.profile import REQUIRED_ACCOUNTS
from conformance.verdicts import SetupFailed

from .codec.stanza import BLOCKING, ROSTER, error_condition, iq, kind, presence, q
from .codec.xml import E
from .observe import bare_of
from .party import XmppParty
from .runtime import Runtime
from .load import Flood
from .remote_server import RemoteServer
from .unauthenticated import Unauthenticated


DISMISS_SECONDS = 20.0  # bounds the tidying up after a test: hang up, close every stream


class Cast:
    def __init__(self, rt: Runtime, accounts: tuple[str, ...] = REQUIRED_ACCOUNTS):
        self.rt = rt
        self.parties: dict[str, XmppParty] = {name: XmppParty(rt, name, rt.profile.account(name), self)
                                             for name in accounts}
        self.unauthenticated = Unauthenticated(rt, self)
        self.remote_server = RemoteServer(rt, self)
        self.flood = Flood(rt, self)
        self.extra_streams: list = []

    def marks(self) -> dict[str, dict[int, int]]:
        return {name: party.mark() for name, party in self.parties.items()}

    def assemble(self) -> None:
        self.rt.call(self._assemble)

    async def _assemble(self) -> None:
        parties = list(self.parties.values())
        clients = await asyncio.gather(*(p._login(available=False) for p in parties), return_exceptions=True)
        for party, client in zip(parties, clients):
            if isinstance(client, BaseException):
                raise client
            party.main = client
        await asyncio.gather(*(self._reset(p) for p in parties))
        for party in parties:  # everything the resets caused has now been delivered
            await party._ping()

    async def _reset(self, party: XmppParty) -> None:
        roster = await party._iq(iq("get", E("query", ns=ROSTER)))
        if roster.get("type") != "result":
            raise SetupFailed(f"{party.name} cannot read its roster: <{error_condition(roster)}/>")
        for item in roster.iter(q(ROSTER, "item")):
            removal = E("query", None, E("item", {"jid": item.get("jid"), "subscription": "remove"}, ns=ROSTER),
                        ns=ROSTER)
            await party._iq(iq("set", removal))
        blocklist = await party._iq(iq("get", E("blocklist", ns=BLOCKING)))
        if blocklist.get("type") == "result" and blocklist.find(f".//{q(BLOCKING, 'item')}") is not None:
            await party._iq(iq("set", E("unblock", ns=BLOCKING)))
        await party._delete_suite_nodes()
        mark = len(party.main.received)
        await party.main.send(presence())  # initial presence: pending requests and offline messages arrive now
        await party._ping()
        for unit in party.main.received[mark:]:
            if kind(unit) == "presence" and unit.get("type") == "subscribe":
                await party.main.send(presence(to=bare_of(unit.get("from")), type_="unsubscribed"))
        await party._ping()

    def dismiss(self) -> None:
        # Tidying up gets time of its own, even when the test spent all of timeouts.case (its steps are bounded).
        self.rt.deadline = time.monotonic() + DISMISS_SECONDS
        try:
            self.remote_server.hangs_up()
        except Exception:
            pass

        async def run():
            await asyncio.gather(*(p._tidy_stream_management() for p in self.parties.values()),
                                 return_exceptions=True)
            streams = [s for p in self.parties.values() for s in p.streams]
            streams += [s.client for s in self.extra_streams]
            await asyncio.gather(*(s.close() for s in streams), return_exceptions=True)
        try:
            self.rt.call(run, timeout=10)
        except Exception:
            pass
