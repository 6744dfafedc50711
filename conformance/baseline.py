"""Baselines: a target's known deviations, each pinned to a verdict and a substring of its message, with a reason.

A deviation that shows up as pinned becomes XFAIL. If its message changes, it is a FAIL again (the deviation is not
the one that was reviewed). If the test passes, it is XPASS and the run fails: the baseline is stale.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from conformance import catalogue, tomlfile
from conformance.verdicts import Verdict

PINNABLE = {Verdict.FAIL, Verdict.WARN, Verdict.INFO, Verdict.ERROR, Verdict.UNSUPPORTED}
_KEYS = {"case", "test", "verdict", "match", "reason", "reference"}


class BaselineError(Exception):
    """A baseline file that cannot be used; one line naming the file and the entry."""


@dataclasses.dataclass(frozen=True)
class Deviation:
    case: str
    test: str  # test name, with or without its [parameters]
    verdict: Verdict
    match: str
    reason: str
    reference: str = ""

    def covers(self, case_id: str, nodeid: str) -> bool:
        name = nodeid.split("::")[-1]
        return self.case == case_id and self.test in (name, name.split("[")[0])


@dataclasses.dataclass
class Baseline:
    path: Path
    deviations: list[Deviation]
    used: set[int] = dataclasses.field(default_factory=set)

    def find(self, case_id: str, nodeid: str) -> Deviation | None:
        for index, deviation in enumerate(self.deviations):
            if deviation.covers(case_id, nodeid):
                self.used.add(index)
                return deviation
        return None

    def unused(self) -> list[Deviation]:
        return [d for i, d in enumerate(self.deviations) if i not in self.used]


def load(path: str | Path) -> Baseline:
    path = Path(path)
    data = tomlfile.read(path, "baseline", BaselineError)
    unknown = set(data) - {"deviation"}
    if unknown:
        raise BaselineError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; entries are [[deviation]] tables")
    deviations = []
    for number, raw in enumerate(data.get("deviation", []), start=1):
        where = f"{path}: [[deviation]] #{number}"
        extra = set(raw) - _KEYS
        if extra:
            raise BaselineError(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
        for key in ("case", "test", "verdict", "match", "reason"):
            if not isinstance(raw.get(key), str) or not raw[key].strip():
                raise BaselineError(f"{where}: '{key}' must be a non-empty string")
        if raw["case"] not in catalogue.cases():
            raise BaselineError(f"{where}: {raw['case']} is not a case of the catalogue")
        try:
            verdict = Verdict(raw["verdict"].lower())
        except ValueError:
            verdict = None
        if verdict not in PINNABLE:
            raise BaselineError(f"{where}: 'verdict' must be one of {', '.join(sorted(v.value for v in PINNABLE))}")
        if not raw["test"].startswith("test_"):
            raise BaselineError(f"{where}: 'test' is a test function name such as test_x or test_x[param]")
        deviations.append(Deviation(raw["case"], raw["test"], verdict, raw["match"], raw["reason"].strip(),
                                    raw.get("reference", "")))
    return Baseline(path, deviations)


def apply(deviation: Deviation, verdict: Verdict, message: str) -> tuple[Verdict, str]:
    """The verdict and message once a baseline entry for this test is taken into account."""
    if verdict is deviation.verdict and deviation.match in message:
        return Verdict.XFAIL, f"known deviation ({verdict.label}): {message} | reason: {deviation.reason}"
    if verdict is Verdict.PASS:
        return Verdict.XPASS, (f"the baseline expects {deviation.verdict.label} ('{deviation.match}') but the test "
                               f"passed: the baseline is stale")
    if verdict is deviation.verdict:
        return Verdict.FAIL, (f"{message} | the baseline pins this deviation to '{deviation.match}', which the "
                              f"message no longer contains: review it again")
    return verdict, f"{message} | the baseline expected {deviation.verdict.label} ('{deviation.match}')"
