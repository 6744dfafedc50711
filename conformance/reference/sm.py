"""Stream management (XEP-0198): acknowledgements, and resumption of a session whose connection was lost.

The rules that matter for security, each enforced here:
- stream management is enabled only on a bound stream (§3), and a session is resumed only on a stream that has
  authenticated and has not bound a resource (§5, §10);
- a session is resumed only by the user who owns it: another user's SM-ID gets the same <failed/> as an unknown one;
- an acknowledgement of more stanzas than were sent closes the stream (§6, <handled-count-too-high/>) and is not
  believed: the stanzas it claims were handled are treated as undelivered;
- stanzas never acknowledged are not lost when a session ends: messages go to the user's other resources or to
  offline storage (§4);
- a session whose connection dropped waits for resumption for a bounded time, with a bounded queue, and only a
  bounded number of such sessions are kept.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import dataclasses
import secrets
import time
from typing import TYPE_CHECKING

from conformance.adapters.xmpp.codec.stanza import SM, STANZAS_ERR, kind
from conformance.adapters.xmpp.codec.xml import E, Element, split

if TYPE_CHECKING:
    from .c2s import Session
    from .service import Service

MAX_COUNTER = 2 ** 32  # 'h' is an unsigned 32-bit integer (XEP-0198 §4)


@dataclasses.dataclass
class SmState:
    id: str | None  # the SM-ID, when the session may be resumed
    handled_in: int = 0  # stanzas received from the client and handled: the 'h' we report
    sent: int = 0  # stanzas sent to the client since stream management was enabled
    acked: int = 0  # the last 'h' the client acknowledged
    unacked: collections.deque = dataclasses.field(default_factory=collections.deque)  # (number, stanza)
    expiry: asyncio.TimerHandle | None = None
    detached_at: float | None = None


def failed(condition: str) -> Element:
    return E("failed", None, E(condition, ns=STANZAS_ERR), ns=SM)


class StreamManagement:
    def __init__(self, service: "Service"):
        self.service = service
        self.config = service.config
        self.resumable: dict[str, "Session"] = {}  # SM-ID -> the session it names (attached or hibernating)
        self.hibernating: collections.OrderedDict["Session", None] = collections.OrderedDict()

    @staticmethod
    def feature() -> Element:
        return E("sm", ns=SM)

    # -- nonzas from the client ------------------------------------------------------------------------------------

    def nonza(self, session: "Session", unit: Element) -> None:
        """An element of the SM namespace, in whatever state the stream is."""
        local = split(unit.tag)[1]
        if local == "enable":
            self._enable(session, unit)
        elif local == "resume":
            self._resume(session, unit)
        elif local == "r":
            if session.sm is not None:
                session.emit(E("a", {"h": str(session.sm.handled_in % MAX_COUNTER)}, ns=SM))
        elif local == "a":
            if session.sm is not None:
                self._ack(session, unit)
        else:
            session.close("unsupported-stanza-type", f"unknown stream management element <{local}/>")

    def _enable(self, session: "Session", unit: Element) -> None:
        bound = session.user is not None and session.jid is not None
        if not bound and not self.service.flawed("sm-enable-before-bind"):
            # XEP-0198 §3: only after authentication and resource binding; the server enforces the order.
            session.emit(failed("unexpected-request"))
            return
        if session.sm is not None:
            session.close("policy-violation", "stream management is already enabled on this stream")
            return
        resume = unit.get("resume") in ("true", "1") and bound
        state = SmState(id=secrets.token_urlsafe(24) if resume else None)
        session.sm = state
        if state.id is not None:
            self.resumable[state.id] = session
        session.log(f"stream management enabled{' (resumable)' if resume else ''}")
        session.emit(E("enabled", {"id": state.id, "resume": "true" if resume else None,
                                   "max": str(int(self.config.sm_resume_timeout)) if resume else None}, ns=SM))

    def _ack(self, session: "Session", unit: Element) -> None:
        state = session.sm
        h = _counter(unit.get("h"))
        if h is None:
            session.close("bad-format", "the 'h' of an acknowledgement must be an unsigned 32-bit integer")
            return
        if h > state.sent:
            if self.service.flawed("sm-trusts-acknowledgements"):
                state.unacked.clear()  # flaw: believe the client, whatever it claims to have handled
                state.acked = h
                return
            # XEP-0198 §6: the count is impossible; close, and treat every unacknowledged stanza as undelivered.
            session.log(f"acknowledgement of {h} stanzas, but only {state.sent} were sent")
            session.close("undefined-condition", "acknowledged more stanzas than were sent",
                          extra=E("handled-count-too-high", {"h": str(h), "send-count": str(state.sent)}, ns=SM))
            return
        self._acknowledge(state, h)

    @staticmethod
    def _acknowledge(state: SmState, h: int) -> None:
        if h < state.acked:
            return  # an older count arriving late changes nothing
        while state.unacked and state.unacked[0][0] <= h:
            state.unacked.popleft()
        state.acked = h

    def _resume(self, session: "Session", unit: Element) -> None:
        if session.user is None:
            session.log("resumption refused: the stream has not authenticated")
            session.emit(failed("unexpected-request"))  # XEP-0198 §10: never before authentication
            return
        if session.jid is not None and not self.service.flawed("sm-resume-after-bind"):
            session.log("resumption refused: the stream has bound a resource already")
            session.emit(failed("unexpected-request"))  # XEP-0198 §5: resumption replaces resource binding
            return
        h = _counter(unit.get("h"))
        if h is None:
            session.emit(failed("bad-request"))
            return
        old = self.resumable.get(unit.get("previd") or "")
        same_user = old is not None and old.user == session.user
        if old is None or old is session or not (same_user or self.service.flawed("sm-resume-any-session")):
            # Unknown, expired, or someone else's session: the same answer, so nothing is revealed about it.
            session.log("resumption refused: no such session of this user")
            session.emit(failed("item-not-found"))
            return
        state = old.sm
        if h > state.sent:
            session.close("undefined-condition", "acknowledged more stanzas than were sent",
                          extra=E("handled-count-too-high", {"h": str(h), "send-count": str(state.sent)}, ns=SM))
            return
        self._transplant(old, session)
        self._acknowledge(state, h)
        session.log(f"resumed session {old.id} ({session.jid}); {len(state.unacked)} stanza(s) to retransmit")
        session.emit(E("resumed", {"previd": state.id, "h": str(state.handled_in % MAX_COUNTER)}, ns=SM))
        for _, stanza in list(state.unacked):
            session.emit(copy.deepcopy(stanza))  # retransmitted with their original numbers

    def _transplant(self, old: "Session", new: "Session") -> None:
        """Move the session `old` names onto the stream of `new`: same JID, presence, counters and queue."""
        service = self.service
        state = old.sm
        if state.expiry is not None:
            state.expiry.cancel()
            state.expiry = None
        self.hibernating.pop(old, None)
        if new.jid is not None and service.sessions.get(new.jid) is new:
            del service.sessions[new.jid]  # only on the flawed after-bind path: the stream drops its own binding
        if new.sm is not None and new.sm.id is not None:
            self.resumable.pop(new.sm.id, None)
        old.superseded = True
        if not old.detached:
            old.close("conflict", "this session was resumed on another stream")  # XEP-0198 §5: end the old stream
        old.detached = False
        old.closed = True
        old.sm = None
        new.user = old.user
        new.jid = old.jid
        new.available, new.presence, new.directed, new.carbons = old.available, old.presence, old.directed, old.carbons
        new.sm = state
        state.detached_at = None
        self.resumable[state.id] = new
        service.sessions[new.jid] = new

    # -- the outbound queue -------------------------------------------------------------------------------------------

    def track(self, session: "Session", stanza: Element) -> None:
        """Count a stanza sent to the client and keep it until acknowledged (bounded)."""
        state = session.sm
        state.sent += 1
        state.unacked.append((state.sent, copy.deepcopy(stanza)))
        if len(state.unacked) > self.config.max_sm_queue:
            # A client that never acknowledges cannot make us hold stanzas without limit.
            asyncio.get_running_loop().call_soon(self._overflow, session)

    def _overflow(self, session: "Session") -> None:
        if session.sm is None or len(session.sm.unacked) <= self.config.max_sm_queue:
            return
        if session.detached:
            self.end_hibernation(session, "too many stanzas queued")
        else:
            session.close("resource-constraint", "too many unacknowledged stanzas")

    # -- connection lost: hibernation ---------------------------------------------------------------------------------

    def hibernate(self, session: "Session") -> bool:
        """The connection dropped without the stream being closed: keep a resumable session for a while."""
        state = session.sm
        if state is None or state.id is None or session.jid is None or session.superseded:
            return False
        session.detached = True
        state.detached_at = time.monotonic()
        state.expiry = asyncio.get_running_loop().call_later(self.config.sm_resume_timeout, self.end_hibernation,
                                                             session, "resumption window elapsed")
        self.hibernating[session] = None
        session.log(f"connection lost; the session waits {self.config.sm_resume_timeout:g}s for resumption")
        same_user = [s for s in self.hibernating if s.user == session.user]
        for oldest in same_user[:max(0, len(same_user) - self.config.max_hibernating_per_user)]:
            self.end_hibernation(oldest, "too many hibernating sessions for this user")
        while len(self.hibernating) > self.config.max_hibernating:
            self.end_hibernation(next(iter(self.hibernating)), "too many hibernating sessions")
        return True

    def end_hibernation(self, session: "Session", why: str) -> None:
        if not session.detached:
            return
        session.log(f"hibernation ends: {why}")
        session.detached = False
        session.closed = True
        self.hibernating.pop(session, None)
        if session.sm is not None and session.sm.expiry is not None:
            session.sm.expiry.cancel()
        self.service.session_ended(session)
        self.session_over(session)

    # -- session end ----------------------------------------------------------------------------------------------------

    def session_over(self, session: "Session") -> None:
        """The session is gone for good: forget its SM-ID and deal with what the client never acknowledged."""
        state = session.sm
        if state is None:
            return
        session.sm = None
        if state.id is not None and self.resumable.get(state.id) is session:
            del self.resumable[state.id]
        unacked = [stanza for _, stanza in state.unacked]
        state.unacked.clear()
        messages = [s for s in unacked if kind(s) == "message"]
        if not messages or session.jid is None:
            return
        if self.service.flawed("sm-unacked-discarded"):
            session.log(f"dropping {len(messages)} unacknowledged message(s)")  # flaw: as if they were delivered
            return
        # XEP-0198 §4: as if they had been sent to an unavailable resource (other resources, or offline storage).
        self.service.redeliver(session, messages)

    def shutdown(self) -> None:
        """Service stop: nothing unacknowledged may be lost to a graceful restart."""
        for session in list(self.hibernating):
            self.end_hibernation(session, "service stopping")
        for session in list(self.service.sessions.values()):
            if session.sm is not None:
                self.session_over(session)


def _counter(text: str | None) -> int | None:
    if text is None or not text.isdigit() or len(text) > 10:
        return None
    value = int(text)
    return value if value < MAX_COUNTER else None
