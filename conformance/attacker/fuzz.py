"""Bounded, reproducible fuzzing with hypothesis: draw samples from a strategy, send each with a probe, shrink a
failing one to the smallest that still fails.

Protocol-neutral: the strategy and the probe come from an adapter. Bounds: at most `examples` samples are drawn,
and the probe (the only thing that talks to the IUT) is not called any more once `seconds` have passed; samples
drawn after that count as passing, so shrinking ends with the smallest failure found so far. A run is reproducible:
a fixed seed and no example database.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import errors as hypothesis_errors
from hypothesis import seed as hypothesis_seed
from hypothesis.strategies import SearchStrategy


@dataclasses.dataclass
class Failure:
    sample: Any
    detail: str  # what the IUT did with it


@dataclasses.dataclass
class FuzzRun:
    probed: int = 0  # samples actually sent
    failures: list[Failure] = dataclasses.field(default_factory=list)  # every failing sample, in the order sent
    shrunk: Failure | None = None  # the smallest failing sample (hypothesis' shrinking), if any failed
    out_of_time: bool = False  # the time budget ended the probing
    seconds: float = 0.0

    @property
    def first(self) -> Failure | None:
        return self.failures[0] if self.failures else None


class _SampleFailed(Exception):
    def __init__(self, failure: Failure):
        super().__init__(failure.detail)
        self.failure = failure


def run(strategy: SearchStrategy, probe: Callable[[Any], str | None], *, examples: int, seconds: float,
        seed: int, key: Callable[[Any], Any] = repr) -> FuzzRun:
    """Probe samples drawn from `strategy`; `probe` returns None when the IUT handled a sample as it must, else
    what it did. `key` identifies equal samples, so that a sample hypothesis replays is judged again without
    sending it again."""
    result = FuzzRun()
    judged: dict[Any, str | None] = {}
    started = time.monotonic()

    @hypothesis_seed(seed)
    @settings(max_examples=examples, database=None, deadline=None, derandomize=False,
              phases=(Phase.generate, Phase.shrink), suppress_health_check=list(HealthCheck),
              verbosity=Verbosity.quiet, print_blob=False, report_multiple_bugs=False)
    @given(strategy)
    def body(sample: Any) -> None:
        identity = key(sample)
        if identity in judged:
            detail = judged[identity]
        elif time.monotonic() - started > seconds:
            result.out_of_time = True
            return
        else:
            detail = judged[identity] = probe(sample)
            result.probed += 1
            if detail is not None:
                result.failures.append(Failure(sample, detail))
        if detail is not None:
            raise _SampleFailed(Failure(sample, detail))

    try:
        body()
    except _SampleFailed as exc:  # hypothesis re-raises the failure of the smallest sample it found
        result.shrunk = exc.failure
    except (hypothesis_errors.Flaky, hypothesis_errors.FailedHealthCheck, hypothesis_errors.Unsatisfiable):
        pass
    except BaseException as exc:  # e.g. an ExceptionGroup around the sample's failure, depending on the version
        inner = _find_failure(exc)
        if inner is None:
            raise
        result.shrunk = inner
    if result.shrunk is None and result.failures:
        result.shrunk = result.failures[-1]  # shrinking only ever tries smaller samples than the last failure
    result.seconds = time.monotonic() - started
    return result


def _find_failure(exc: BaseException) -> Failure | None:
    if isinstance(exc, _SampleFailed):
        return exc.failure
    for inner in getattr(exc, "exceptions", ()) or ():
        found = _find_failure(inner)
        if found is not None:
            return found
    cause = exc.__cause__ or exc.__context__
    return _find_failure(cause) if cause is not None and cause is not exc else None
