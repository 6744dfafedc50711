"""Verdicts, what raises them, and the exit-code table.

A test never decides its verdict itself. It raises (or lets the role API raise) one of the exceptions below, and
the plugin turns that into a verdict using the catalogue level of the case (ARCHITECTURE rule 2):

| raised                        | MUST / MUST* | SHOULD / OPEN | MAY  |
|-------------------------------|--------------|---------------|------|
| nothing                       | pass         | pass          | pass |
| Violation (or AssertionError) | fail         | warn          | info |
| ControlFailed, SetupFailed    | error        | error         | error|
| Unsupported                   | unsupported  | unsupported   | unsupported |
| NotApplicable                 | na           | na            | na   |
| anything else                 | error        | error         | error|
"""

from __future__ import annotations

import contextlib
import enum


class Verdict(str, enum.Enum):
    PASS = "pass"
    FAIL = "fail"
    WARN = "warn"
    INFO = "info"
    UNSUPPORTED = "unsupported"
    NA = "na"
    ERROR = "error"
    XFAIL = "xfail"
    XPASS = "xpass"

    @property
    def label(self) -> str:
        return "N/A" if self is Verdict.NA else self.value.upper()


VIOLATION_VERDICT = {"MUST": Verdict.FAIL, "MUST*": Verdict.FAIL, "SHOULD": Verdict.WARN, "OPEN": Verdict.WARN,
                     "MAY": Verdict.INFO}

EXIT_CONFORMANT = 0  # no MUST failed (and no SHOULD under --strict, no stale baseline)
EXIT_NONCONFORMANT = 1  # a MUST failed, or a SHOULD under --strict, or an XPASS
EXIT_USAGE = 2  # bad command line or profile
EXIT_UNREACHABLE = 3  # the IUT could not be reached, or the harness could not tell (ERROR verdicts)

EXIT_CODES = {
    EXIT_CONFORMANT: "conformant: no MUST-level case failed",
    EXIT_NONCONFORMANT: "non-conformant: a MUST-level case failed (or a SHOULD with --strict, or a baseline XPASS)",
    EXIT_USAGE: "usage or profile error: nothing was tested",
    EXIT_UNREACHABLE: "the IUT was unreachable or a case ended in ERROR: the harness could not tell",
}


def check(condition: object, message: str) -> None:
    """The sentence a test states must hold; otherwise the IUT violated it."""
    if not condition:
        raise Violation(message)


class Violation(AssertionError):
    """The IUT did something the responsibility forbids (or failed to do what it requires)."""


class ControlFailed(Exception):
    """A positive control did not hold: the authorized party did not get it, so a negative check proves nothing."""


class SetupFailed(Exception):
    """The harness could not bring the IUT into the state a case needs (e.g. a subscription never completed)."""


class Unsupported(Exception):
    """The IUT (or the adapter) does not offer what the case exercises; the verdict says so, never PASS."""


class NotApplicable(Exception):
    """The case cannot be expressed in this protocol family or deployment profile."""


def verdict_for(exc: BaseException | None, level: str, strict: bool = False) -> Verdict:
    if exc is None:
        return Verdict.PASS
    if isinstance(exc, (ControlFailed, SetupFailed)):
        return Verdict.ERROR
    if isinstance(exc, Unsupported):
        return Verdict.UNSUPPORTED
    if isinstance(exc, NotApplicable):
        return Verdict.NA
    if isinstance(exc, AssertionError):
        return VIOLATION_VERDICT[level]
    return Verdict.ERROR


def is_failure(verdict: Verdict, strict: bool) -> bool:
    """Does this verdict make the run non-conformant (exit 1)?"""
    return verdict in (Verdict.FAIL, Verdict.XPASS) or (strict and verdict is Verdict.WARN)


def exit_code(verdicts: list[Verdict], strict: bool) -> int:
    if any(is_failure(v, strict) for v in verdicts):
        return EXIT_NONCONFORMANT
    if any(v is Verdict.ERROR for v in verdicts):
        return EXIT_UNREACHABLE
    return EXIT_CONFORMANT


# -- the per-test bookkeeping that enforces rule 3 (no negative check without a positive control) --------------------

class CheckLedger:
    def __init__(self) -> None:
        self.controls = 0
        self.negatives: list[str] = []
        self.notes: list[str] = []


# One test runs at a time, but role steps record into the ledger from the harness event-loop thread as well as
# from the test's own thread, so this is a plain module-level object rather than thread-local state.
_current = CheckLedger()


def ledger() -> CheckLedger:
    return _current


def reset_ledger() -> CheckLedger:
    global _current
    _current = CheckLedger()
    return _current


def note(text: str) -> None:
    """Record an observation that goes into the verdict message (e.g. which refusal form the IUT used)."""
    ledger().notes.append(text)


def negative_check(what: str) -> None:
    ledger().negatives.append(what)


@contextlib.contextmanager
def positive_control():
    """Mark a step as the positive control: if it does not hold, the verdict is ERROR, never PASS or FAIL."""
    try:
        yield
    except AssertionError as exc:
        raise ControlFailed(f"positive control failed: {exc}") from None
    ledger().controls += 1
