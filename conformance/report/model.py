"""The result model every report is generated from (results.json, the console table, the matrix across runs)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from conformance import catalogue
from conformance.verdicts import Verdict

# Worst first: the roll-up of a case is the worst verdict of its tests.
SEVERITY = [Verdict.FAIL, Verdict.XPASS, Verdict.ERROR, Verdict.WARN, Verdict.INFO, Verdict.XFAIL, Verdict.PASS,
            Verdict.UNSUPPORTED, Verdict.NA]


def worst(verdicts: list[Verdict]) -> Verdict:
    return min(verdicts, key=SEVERITY.index)


@dataclasses.dataclass
class TestResult:
    nodeid: str
    case_id: str
    step: str | None
    level: str
    verdict: Verdict
    duration: float
    message: str
    notes: list[str] = dataclasses.field(default_factory=list)
    evidence: dict[str, str] = dataclasses.field(default_factory=dict)  # kind -> path relative to the run dir

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["verdict"] = self.verdict.value
        return data


@dataclasses.dataclass
class RunResult:
    tool: str
    version: str
    run_id: str
    target: dict[str, Any]
    started: str
    strict: bool
    duration: float = 0.0
    exit_code: int | None = None
    error: str | None = None  # a run-level problem (unreachable target, bad profile)
    tests: list[TestResult] = dataclasses.field(default_factory=list)

    def summary(self) -> dict[str, int]:
        counts = {v.value: 0 for v in Verdict}
        for test in self.tests:
            counts[test.verdict.value] += 1
        return counts

    def cases(self) -> dict[str, dict[str, Any]]:
        by_case: dict[str, list[TestResult]] = {}
        for test in self.tests:
            by_case.setdefault(test.case_id, []).append(test)
        rollup = {}
        for case_id in sorted(by_case, key=lambda c: (catalogue.section_key(catalogue.get(c).section), c)):
            case = catalogue.get(case_id)
            tests = by_case[case_id]
            rollup[case_id] = {"verdict": worst([t.verdict for t in tests]).value, "tests": len(tests),
                               "section": case.section, "level": case.level, "title": case.title}
        return rollup

    def to_json(self) -> dict[str, Any]:
        return {"tool": self.tool, "version": self.version, "run_id": self.run_id, "target": self.target,
                "started": self.started, "duration": round(self.duration, 3), "strict": self.strict,
                "exit_code": self.exit_code, "error": self.error, "summary": self.summary(), "cases": self.cases(),
                "tests": [t.to_json() for t in self.tests]}

    def write(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2), encoding="utf-8")
        tmp.replace(path)
