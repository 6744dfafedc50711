"""The short verdict table printed at the end of a run: one row per section, one column per verdict."""

from __future__ import annotations

from conformance import catalogue
from conformance.verdicts import Verdict

from .model import RunResult

COLUMNS = [Verdict.PASS, Verdict.FAIL, Verdict.WARN, Verdict.INFO, Verdict.ERROR, Verdict.UNSUPPORTED, Verdict.NA,
           Verdict.XFAIL, Verdict.XPASS]


def table(run: RunResult) -> list[str]:
    sections: dict[str, dict[Verdict, int]] = {}
    for test in run.tests:
        section = catalogue.get(test.case_id).section_title
        sections.setdefault(section, {v: 0 for v in COLUMNS})[test.verdict] += 1
    used = [v for v in COLUMNS if any(row[v] for row in sections.values())] or [Verdict.PASS]
    width = max([len(s) for s in sections] + [7])
    sizes = {v: max(5, len(v.label)) for v in used}
    header = f"{'section':<{width}}  " + "  ".join(f"{v.label:>{sizes[v]}}" for v in used)
    lines = [header, "-" * len(header)]
    order = sorted(sections, key=lambda s: catalogue.section_key(s.split(" ", 1)[0].lstrip("§")))
    for section in order:
        row = sections[section]
        lines.append(f"{section:<{width}}  " + "  ".join(f"{row[v] or '.':>{sizes[v]}}" for v in used))
    totals = run.summary()
    lines.append("-" * len(header))
    lines.append(f"{'total':<{width}}  " + "  ".join(f"{totals[v.value]:>{sizes[v]}}" for v in used))
    return lines
