"""Every conformance case can fail: each flaw of the reference service turns exactly the cases it declares to FAIL
or WARN (per the cases' levels; a MAY test to INFO) and changes no other verdict, and every implemented case is
killed by a flaw (a FAIL or a WARN: an INFO alone kills nothing)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conformance.reference.flaws import FLAWS
from conformance.verdicts import EXIT_CONFORMANT, EXIT_NONCONFORMANT

from conftest import remember_matrix
from killmatrix import broken_cases, killable_cases, markdown, render

DOC = Path(__file__).resolve().parent.parent / "docs" / "kill-matrix.md"


def _verdicts(run: dict) -> dict[str, str]:
    return {t["nodeid"]: t["verdict"] for t in run["tests"]}


def test_clean_reference_passes_every_implemented_case(reference_runs):
    clean = reference_runs[None]
    bad = {node: verdict for node, verdict in _verdicts(clean).items() if verdict not in ("pass", "na")}
    assert not bad, f"the clean reference does not pass: {bad}"
    assert clean["exit_code"] == clean["_process_exit"] == EXIT_CONFORMANT
    assert len(clean["tests"]) >= 40


@pytest.mark.parametrize("flaw", list(FLAWS))
def test_flaw_breaks_exactly_its_declared_cases(reference_runs, flaw):
    clean, run = _verdicts(reference_runs[None]), reference_runs[flaw]
    flawed = _verdicts(run)
    assert flawed.keys() == clean.keys(), "the flawed run did not run the same tests"
    declared = set(FLAWS[flaw].breaks)
    for node, verdict in flawed.items():
        test = next(t for t in run["tests"] if t["nodeid"] == node)
        if verdict == clean[node]:
            continue
        case_id = test["case_id"]
        assert case_id in declared, f"{flaw} changed {node} ({case_id}, not declared) from {clean[node]} to {verdict}"
        # a violated MAY is recorded as INFO; every other level turns to FAIL or WARN
        allowed = ("fail", "warn", "info") if test["level"] == "MAY" else ("fail", "warn")
        assert verdict in allowed, f"{flaw} turned {node} to {verdict}, not FAIL or WARN"
    levels = {t["case_id"]: t["level"] for t in run["tests"]}
    for test in run["tests"]:
        if test["verdict"] in ("fail", "warn"):
            expected = "fail" if test["level"] in ("MUST", "MUST*") else "warn"
            assert test["verdict"] == expected, f"{test['nodeid']} is {test['verdict']} at level {test['level']}"
    missing = declared - set(broken_cases(run))
    assert not missing, f"{flaw} declares {sorted(missing)} but no test of them failed or warned"
    must = any(t["verdict"] == "fail" for t in run["tests"])
    assert run["_process_exit"] == (EXIT_NONCONFORMANT if must else EXIT_CONFORMANT), \
        f"exit {run['_process_exit']} for a flaw that {'breaks' if must else 'does not break'} a MUST (levels {levels})"


def test_every_implemented_case_is_killed_by_some_flaw(reference_runs):
    killed = set()
    for flaw in FLAWS:
        killed |= set(broken_cases(reference_runs[flaw]))
    survivors = [c for c in killable_cases(reference_runs[None]) if c not in killed]
    assert not survivors, f"no flaw makes these cases fail, so they cannot be shown to work: {survivors}"
    remember_matrix(render(reference_runs))


def test_kill_matrix_document_is_current(reference_runs):
    text = markdown(reference_runs)
    if os.environ.get("IMPP_UPDATE_DOCS"):
        DOC.parent.mkdir(exist_ok=True)
        DOC.write_text(text, encoding="utf-8")
    assert DOC.exists() and DOC.read_text(encoding="utf-8") == text, \
        "docs/kill-matrix.md is stale: rerun with IMPP_UPDATE_DOCS=1"
