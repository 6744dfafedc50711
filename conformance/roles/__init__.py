"""The role API the conformance suite is written in (ARCHITECTURE rule 1: the suite speaks roles, not bytes).

A test gets parties from fixtures: `alice` (presentity and inbox), `bob` (authorized watcher and sender),
`mallory` (an authenticated stranger acting maliciously) and `unauthenticated` (a factory of streams that never
prove an identity). Each adapter implements these classes for its protocol family; a step the adapter cannot
express raises `Unsupported`, so the verdict says so instead of passing.

Verbs that *observe* (`receives`, `does_not_receive`, `...is_refused`) raise `Violation` when the IUT misbehaves.
Verbs that *arrange* state (`approves`, `blocks`) raise `SetupFailed` when the IUT does not go along, which makes
the verdict ERROR: the harness could not get where the case needs to be.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any


@dataclasses.dataclass
class Update:
    """Something a party published or sent, carrying a canary, and where every party's view stood at that moment."""

    kind: str  # "presence" or "message"
    sender: Any  # the Party (or unauthenticated stream) that produced it
    canary: str
    marks: dict[str, int] = dataclasses.field(default_factory=dict)  # party name -> index of its received units
    fence: Any = None  # coroutine function: returns once the IUT has processed what the sender did so far
    reveal_availability: bool = True  # for presence: does seeing the sender online at all count as disclosure?
    payload: Any = None  # what exactly was sent, where the test compares it with what arrived
    # coroutine function, for what goes to another domain: if the IUT bounced it back to the sender (a server may
    # refuse a domain for a while after failing to reach it), send it once more and return True
    resend: Any = None
    sent_at: float = dataclasses.field(default_factory=time.monotonic)  # when the sender sent it


class Delays(list):
    """How long each of a series of updates took to reach a party (`delay_of`; None: not within T_POS)."""

    @property
    def served(self) -> list[float]:
        return [d for d in self if d is not None]

    @property
    def missed(self) -> int:
        return len(self) - len(self.served)

    @property
    def p95(self) -> float:
        """The 95th percentile of the delays of what arrived (0 when nothing did)."""
        served = self.served
        if len(served) < 2:
            return served[0] if served else 0.0
        return statistics.quantiles(served, n=20, method="inclusive")[-1]

    def __str__(self) -> str:
        return f"{len(self.served)} of {len(self)} arrived, p95 delay {self.p95:.2f}s"


@dataclasses.dataclass
class Outcome:
    """The IUT's answer to a request: granted (with data) or refused (with the error condition)."""

    refused: bool
    condition: str | None = None  # stanza/stream error condition when refused
    data: list[Any] = dataclasses.field(default_factory=list)  # items returned when granted
    detail: str = ""  # what was seen, for the verdict message

    def contains(self, update: Update) -> bool:
        """Did the IUT hand over `update` (its canary) in this answer?"""
        return any(update.canary in str(item) for item in self.data) or update.canary in self.detail

    def __str__(self) -> str:
        if self.refused:
            return f"refused ({self.condition or 'no condition'})"
        return f"granted ({len(self.data)} item(s)){': ' + self.detail if self.detail else ''}"


@dataclasses.dataclass
class Reaction:
    """How the IUT reacted to a step that must be refused: stream error, stanza error, silence."""

    stream_error: str | None = None
    stanza_error: str | None = None
    closed: bool = False  # connection or stream closed
    answered: bool = False  # a non-error answer came back (the step was processed)
    detail: str = ""

    @property
    def refused(self) -> bool:
        return (self.stream_error is not None or self.stanza_error is not None or self.closed) and not self.answered

    def __str__(self) -> str:
        if self.answered:
            return f"processed ({self.detail})"
        if self.stream_error:
            return f"stream error <{self.stream_error}/>"
        if self.stanza_error:
            return f"stanza error <{self.stanza_error}/>"
        if self.closed:
            return "connection closed"
        return "no answer"


@dataclasses.dataclass(frozen=True)
class TlsOutcome:
    """What the IUT answered to a TLS ClientHello the harness chose; the handshake goes no further than that answer."""

    offered: str  # what the hello offered (versions, suites, compression)
    answer: str  # what came back: a ServerHello, an alert, a close, silence
    completed: bool  # the IUT took the offer: it chose a version, a suite and a compression method offered
    alert: str | None = None  # the alert's description (RFC 8446 §6), e.g. "protocol_version"
    version: str | None = None  # the version a ServerHello chose, e.g. "TLSv1.2"
    cipher: str | None = None
    compression: str | None = None  # "null" or "deflate"

    def __str__(self) -> str:
        return f"{self.answer} to a ClientHello offering {self.offered}"


@dataclasses.dataclass(frozen=True)
class EarlyData:
    """What one of the IUT's TLS doors did with TLS 1.3 0-RTT early data (RFC 8446 §2.3)."""

    door: str  # which way in: the client port, or a listener of the profile
    tickets: tuple[int, ...] = ()  # max_early_data_size of each session ticket the IUT issued (0: no early data)
    resumed: bool = False  # the resumption with early data resumed the session
    accepted: bool = False  # the IUT accepted the early data (early_data in its EncryptedExtensions)
    answered_early: str | None = None  # what it answered to the <auth/> in the early data before the handshake ended
    answered: str | None = None  # what it answered by the end (the control: the resumed connection works)
    replays: int = 0  # times the recorded first flight was sent again on new connections
    resumed_again: int = 0  # of those, how many the IUT resumed again (pre_shared_key in its ServerHello)
    unsupported: str | None = None  # why the harness could not try (its OpenSSL bindings lack early data)
    no_tls: str | None = None  # why there is no TLS 1.3 session at this door (then there is no early data either)

    @property
    def offered(self) -> bool:
        return any(self.tickets)

    def replayed(self, times: int, resumed_again: int) -> "EarlyData":
        return dataclasses.replace(self, replays=times, resumed_again=resumed_again)

    def __str__(self) -> str:
        if self.unsupported or self.no_tls:
            return f"{self.door}: {self.unsupported or 'no TLS 1.3 session: ' + self.no_tls}"
        if not self.tickets:
            return f"{self.door}: no session ticket"
        if not self.offered:
            return f"{self.door}: {len(self.tickets)} session ticket(s), none allowing early data"
        when = f"before the handshake completed ({self.answered_early})" if self.answered_early else \
            "only once the handshake completed"
        return (f"{self.door}: tickets allow {max(self.tickets)} bytes of early data; resuming with early data, the "
                f"session was {'' if self.resumed else 'not '}resumed and the early data "
                f"{'accepted' if self.accepted else 'declined'}; the <auth/> it held was answered {when}, "
                f"{self.answered or 'no answer at all'} in the end; the recorded first flight, sent again "
                f"{self.replays} times, was resumed {self.resumed_again} times")


@dataclasses.dataclass
class Abuse:
    """What became of one abusive input a party sent: the IUT's reaction on the stream that carried it, and, where
    the input carried something meant for another party, the update that must not arrive."""

    reaction: Reaction
    update: Update | None = None
    size: int = 0  # bytes sent
    detail: str = ""  # what was sent, for messages

    def __str__(self) -> str:
        return f"{self.detail}: {self.reaction}" if self.detail else str(self.reaction)
