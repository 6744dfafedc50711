"""Role verbs for the inbox's delivery bindings under stream management (XEP-0198): enabling it, losing the
connection while the session waits for resumption, resuming it (rightly or not), and acknowledging falsely.

Mixed into XmppParty. A server that does not advertise urn:xmpp:sm:3, or offers no resumption where a case needs
it, makes the case UNSUPPORTED, never PASS.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from conformance.roles import Outcome, Reaction, Update
from conformance.verdicts import SetupFailed, Unsupported, note

from .client import ProtocolViolation, StreamEnded, XmppClient
from .codec.stanza import PING, SM, error_condition, iq, kind, q
from .codec.xml import E, Element
from .observe import carries, describe

if TYPE_CHECKING:
    from .party import XmppParty

UNSUPPORTED_CONDITIONS = ("service-unavailable", "feature-not-implemented")


def _answer(answer: Element) -> Outcome:
    if answer.tag == q(SM, "resumed"):
        return Outcome(refused=False, detail=describe(answer))
    return Outcome(refused=True, condition=error_condition(answer) or "failed", detail=describe(answer))


class StreamManagementVerbs:
    """Verbs of XmppParty for XEP-0198; `self` is an XmppParty. `self.lost` is (SM-ID, handled count) of the
    own session whose connection was dropped and which has not been resumed since."""

    lost: tuple[str, int] | None = None

    def enables_stream_management(self: "XmppParty", *, resumable: bool = True) -> None:
        """Enable stream management on the own stream (with resumption, unless told otherwise)."""
        async def run():
            client = await self._ensure_online()
            if client.feature(SM, "sm") is None:
                raise Unsupported("the IUT does not offer stream management (no urn:xmpp:sm:3 stream feature)")
            try:
                answer = await client.enable_sm(resume=resumable)
            except (StreamEnded, asyncio.TimeoutError) as exc:
                raise SetupFailed(f"{self.name} could not enable stream management: {exc}") from None
            if answer.tag == q(SM, "failed"):
                condition = error_condition(answer)
                if condition in UNSUPPORTED_CONDITIONS:
                    raise Unsupported(f"the IUT refuses to enable stream management (<{condition}/>)")
                raise SetupFailed(f"the IUT refused {self.name}'s <enable/>: <{condition}/>")
            if resumable and client.sm_id is None:
                raise Unsupported("the IUT enables stream management but offers no session resumption")
            await self._ping()
        self._call(run)

    def loses_connection(self: "XmppParty") -> None:
        """The network drops the own stream: no </stream:stream>, so the IUT may keep the session for resumption."""
        async def run():
            client = self.main
            if client is None or client.ended or not client.sm_counting:
                raise SetupFailed(f"{self.name} has no stream-managed stream to lose")
            await self._ping()  # everything sent so far is in
            if client.sm_id is not None:
                self.lost = (client.sm_id, client.sm_handled)
            client.drop()
            self.main = None
        self._call(run)

    async def _resume(self: "XmppParty", client: XmppClient, previd: str, h: int) -> Outcome:
        try:
            outcome = _answer(await client.resume_sm(previd, h))
        except StreamEnded as exc:
            outcome = Outcome(refused=True, condition=exc.condition or "stream closed", detail=str(exc))
        except (ProtocolViolation, asyncio.TimeoutError) as exc:
            outcome = Outcome(refused=True, condition=None, detail=str(exc) or "no answer to <resume/>")
        client.start_pump()
        self.streams.append(client)  # the party's own stream: whatever reaches it reached this party
        return outcome

    def resumes_session(self: "XmppParty") -> Outcome:
        """Back on the network: authenticate on a fresh stream and resume the own lost session (XEP-0198 §5)."""
        if self.lost is None:
            raise SetupFailed(f"{self.name} has no lost session to resume")
        previd, h = self.lost

        async def run():
            client = await self._authenticated_stream()
            outcome = await self._resume(client, previd, h)
            if not outcome.refused:
                self.main, self.lost = client, None
                await self._ping()  # what the IUT retransmits on resumption is in
            return outcome
        return self._call(run)

    def resumes_session_after_binding(self: "XmppParty") -> Outcome:
        """Log in anew, bind a resource, and only then ask to resume the own lost session."""
        if self.lost is None:
            raise SetupFailed(f"{self.name} has no lost session to resume")
        previd, h = self.lost

        async def run():
            client = await self._login(available=False)
            try:
                outcome = _answer(await client.resume_sm(previd, h))
            except StreamEnded as exc:
                outcome = Outcome(refused=True, condition=exc.condition or "stream closed", detail=str(exc))
            except asyncio.TimeoutError:
                outcome = Outcome(refused=True, condition=None, detail="no answer to <resume/>")
            if not outcome.refused:
                self.lost = None  # moved onto this stream: nothing left to tidy up
            return outcome
        return self._call(run)

    def resumes_session_of(self: "XmppParty", other: "XmppParty") -> Outcome:
        """On an own, authenticated stream, ask to resume `other`'s session by its SM-ID (learned from `other`)."""
        previd = other.lost[0] if other.lost else (other.main.sm_id if other.main is not None else None)
        if previd is None:
            raise SetupFailed(f"{other.name} has no stream-management session to take over")

        async def run():
            client = await self._authenticated_stream()
            outcome = await self._resume(client, previd, 0)
            if not outcome.refused:
                note(f"{self.name}, authenticated as herself, resumed {other.name}'s session: {outcome.detail}")
            return outcome
        return self._call(run)

    def acknowledges_more_than_received(self: "XmppParty", extra: int = 5) -> Reaction:
        """Send <a h/> claiming `extra` stanzas more than the IUT sent on the own stream; how the IUT reacts."""
        async def run():
            client = self.main
            if client is None or client.ended or not client.sm_counting:
                raise SetupFailed(f"{self.name} has no stream-managed stream")
            handled = client.sm_handled
            claimed = handled + extra
            await client.acknowledge(claimed)
            try:  # the answer to a ping comes after the IUT dealt with the acknowledgement (RFC 6120 §10.1)
                await client.request(iq("get", E("ping", ns=PING), to=self.rt.domain))
            except StreamEnded:
                pass
            except asyncio.TimeoutError:
                raise SetupFailed(f"the IUT neither answered {self.name}'s ping nor closed her stream") from None
            if client.stream_error is not None:
                specific = [e.tag.split("}")[-1] for e in client.stream_error if e.tag.startswith(f"{{{SM}}}")]
                return Reaction(stream_error=client.stream_error_condition, closed=True,
                                detail=" ".join(f"<{c}/>" for c in [client.stream_error_condition, *specific]))
            if client.ended:
                return Reaction(closed=True, detail=client.end_reason())
            client.drop()  # a client that lies about its count is gone; the IUT's session ends without resumption
            self.main = None
            return Reaction(answered=True, detail=f"the IUT took <a h='{claimed}'/> after sending {handled} "
                                                  f"stanza(s) and went on")
        return self._call(run)

    def messages_not_recovered(self: "XmppParty", messages: list[Update]) -> list[Update]:
        """Of `messages`, those that came back neither on the current stream (offline delivery or resumption)
        nor from the own archive (XEP-0313, where offered)."""
        async def run():
            client = await self._ensure_online()
            await self._ping()
            missing = [m for m in messages
                       if not any(kind(u) == "message" and carries(u, m.canary) for u in client.received)]
            if missing:
                try:
                    archive = await self._mam_query(None)
                except Unsupported:
                    return missing
                missing = [m for m in missing if not archive.contains(m)]
                if len(missing) < len(messages):
                    note("some messages came back only from the archive (XEP-0313)")
            return missing
        return self._call(run)

    async def _tidy_stream_management(self: "XmppParty") -> None:
        """End a session left waiting for resumption, so it cannot swallow later tests' messages."""
        if self.lost is None:
            return
        previd, h = self.lost
        self.lost = None
        try:
            client = await self._authenticated_stream()
            await self._resume(client, previd, h)
        except Exception:  # the IUT may have ended it already; this is cleanup only
            pass
