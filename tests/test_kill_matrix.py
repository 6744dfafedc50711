"""Every conformance case can fail: each flaw of the reference service, and of the reference client, turns exactly
the cases it declares to FAIL or WARN (per the cases' levels; a MAY test to INFO) and changes no other verdict, and
every implemented case above MAY level is killed by a flaw (a FAIL or a WARN: an INFO alone kills nothing). A
flaw's run tests only its own kind of IUT (service or client cases), which is all it could change."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conformance.reference.flaws import FLAWS
from conformance.reference_client.flaws import FLAWS as CLIENT_FLAWS
from conformance.verdicts import EXIT_CONFORMANT, EXIT_NONCONFORMANT

from conftest import remember_matrix
from killmatrix import broken_cases, changed_cases, kind_of, killable_cases, markdown, render

ALL_FLAWS = {**FLAWS, **CLIENT_FLAWS}

DOC = Path(__file__).resolve().parent.parent / "docs" / "kill-matrix.md"


def _verdicts(run: dict) -> dict[str, str]:
    return {t["nodeid"]: t["verdict"] for t in run["tests"]}


def test_clean_reference_passes_every_implemented_case(reference_runs):
    clean = reference_runs[None]
    bad = {node: verdict for node, verdict in _verdicts(clean).items() if verdict not in ("pass", "na")}
    assert not bad, f"the clean reference does not pass: {bad}"
    assert clean["exit_code"] == clean["_process_exit"] == EXIT_CONFORMANT
    assert len(clean["tests"]) >= 40
    assert {kind_of(t) for t in clean["tests"]} == {"service", "client"}


@pytest.mark.parametrize("flaw", list(ALL_FLAWS))
def test_flaw_breaks_exactly_its_declared_cases(reference_runs, flaw):
    kind = "client" if flaw in CLIENT_FLAWS else "service"
    clean = {t["nodeid"]: t["verdict"] for t in reference_runs[None]["tests"] if kind_of(t) == kind}
    run = reference_runs[flaw]
    flawed = _verdicts(run)
    assert flawed.keys() == clean.keys(), f"the flawed run did not run the same {kind} tests"
    declared = set(ALL_FLAWS[flaw].breaks)
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
    missing = declared - set(changed_cases(run))
    assert not missing, f"{flaw} declares {sorted(missing)} but no test of them failed or warned"
    must = any(t["verdict"] == "fail" for t in run["tests"])
    assert run["_process_exit"] == (EXIT_NONCONFORMANT if must else EXIT_CONFORMANT), \
        f"exit {run['_process_exit']} for a flaw that {'breaks' if must else 'does not break'} a MUST (levels {levels})"


def test_every_implemented_case_is_killed_by_some_flaw(reference_runs):
    killed = set()
    for flaw in ALL_FLAWS:
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
