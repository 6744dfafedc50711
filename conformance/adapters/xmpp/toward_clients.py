"""Party verbs for the client cases: what a contact or a stranger on the same service sends a client IUT, genuine
or forged (delivery receipts, roster pushes, message carbons), and the receipts the client sends back.

The service (the harness's stand-in) stamps every stanza with its sender's full JID, as RFC 6120 §8.1.2.1 requires,
so a forgery here is what a real attacker with an account can do: put service-like content in its own stanza and
hope the client does not look at who sent it. Mixed into XmppParty.
"""

from __future__ import annotations

from conformance.roles import Update

from .codec.stanza import CARBONS, CLIENT, DELAY, FORWARD, MAM, ROSTER, STANZAS_ERR, iq, kind, message, new_id
from .codec.xml import E, Element

RECEIPTS = "urn:xmpp:receipts"  # XEP-0184


class TowardClientsVerbs:
    def sends_message_asking_receipt(self, to: str) -> Update:
        """A chat message with a canary body and a XEP-0184 receipt request, to a client's full JID; the update's
        payload is the message id."""
        canary = self.rt.canary(f"{self.name}-msg")
        ident = new_id("r")

        async def run():
            await self._ensure_online()
            update = self._update("message", canary, payload=ident)
            await self.main.send(message(to, canary, E("request", ns=RECEIPTS), id_=ident))
            await self._ping()
            return update
        return self._call(run)

    def acknowledges(self, message_id: str, to: str) -> None:
        """Send a XEP-0184 receipt for `message_id` to `to` (genuine from the addressee, forged from anyone else)."""
        async def run():
            await self._ensure_online()
            await self.main.send(message(to, None, E("received", {"id": message_id}, ns=RECEIPTS), type_=None,
                                         id_=new_id("ack")))
            await self._ping()
        self._call(run)

    def bounces(self, message_id: str, to: str) -> None:
        """Send an error stanza for `message_id` to `to`, as a server does for a message it could not deliver
        (RFC 6120 §8.3): <service-unavailable/>. From the addressee it is genuine; from anyone else, forged."""
        async def run():
            await self._ensure_online()
            error = E("error", {"type": "cancel"}, E("service-unavailable", ns=STANZAS_ERR), ns=CLIENT)
            await self.main.send(message(to, None, error, type_="error", id_=message_id))
            await self._ping()
        self._call(run)

    def sends_archive_result(self, queryid: str, to: str, *, claiming: str) -> str:
        """A forged XEP-0313 result for the client's open query `queryid`, from this party instead of the client's
        own archive: a message 'from' `claiming`, archived. Returns the canary in its body."""
        canary = self.rt.canary(f"{self.name}-archived")

        async def run():
            await self._ensure_online()
            archived = message(to.split("/", 1)[0], canary, type_="chat", from_=claiming)
            forwarded = E("forwarded", None, E("delay", {"stamp": "2020-01-01T00:00:00Z"}, ns=DELAY), archived,
                          ns=FORWARD)
            result = E("result", {"queryid": queryid, "id": new_id("archived")}, forwarded, ns=MAM)
            await self.main.send(message(to, None, result, type_=None))
            await self._ping()
        self._call(run)
        return canary

    def pushes_roster_item(self, to: str) -> str:
        """A roster push (RFC 6121 §2.1.6) to a client's full JID, from this party instead of the client's own
        account: an item e@evil.test named with a canary. Returns the canary."""
        canary = self.rt.canary(f"{self.name}-roster")

        async def run():
            await self._ensure_online()
            item = E("item", {"jid": "e@evil.test", "name": canary, "subscription": "both"}, ns=ROSTER)
            await self.main.send(iq("set", E("query", None, item, ns=ROSTER), to=to, id_=new_id("push")))
            await self._ping()
        self._call(run)
        return canary

    def sends_carbon_copy(self, to: str, *, claiming: str) -> str:
        """A forged XEP-0280 carbon to a client's full JID: a copy of a message 'from' `claiming` that this party
        (not the client's own account) wraps. Returns the canary in the copied body."""
        canary = self.rt.canary(f"{self.name}-carbon")

        async def run():
            await self._ensure_online()
            inner = message(str(to).split("/", 1)[0], canary, from_=claiming)
            wrapped = E("received", None, E("forwarded", None, inner, ns=FORWARD), ns=CARBONS)
            await self.main.send(message(to, None, wrapped, id_=new_id("cc")))
            await self._ping()
        self._call(run)
        return canary

    def receipts_from(self, sender: str, update: Update, *, within: float) -> list[Element]:
        """The XEP-0184 receipts for `update` (sent with sends_message_asking_receipt) that `sender` (a bare JID)
        returned within `within` seconds. Nothing orders a client's receipt against anything the harness can
        fence on, so this is a bounded wait."""
        def is_receipt(unit: Element) -> bool:
            return kind(unit) == "message" and str(unit.get("from", "")).split("/", 1)[0] == sender \
                and any(r.get("id") == update.payload for r in unit.iter(f"{{{RECEIPTS}}}received"))

        async def wait() -> list[Element]:
            await self.main.wait_for(is_receipt, within)
            return [u for u in self.main.received if is_receipt(u)]
        return self.rt.call(wait, timeout=within + 5)
