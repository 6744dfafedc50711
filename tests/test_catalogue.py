"""The catalogue as data: complete, consistent, and the only source of case IDs the suite may use."""

from __future__ import annotations

import json

from conformance import catalogue

from suite_runs import run_cli


def test_the_catalogue_has_all_62_cases_with_their_levels():
    cases = catalogue.cases()
    assert len(cases) == 62
    levels = [c.level for c in cases.values()]
    assert levels.count("MUST") + levels.count("MUST*") == 38
    assert (levels.count("SHOULD"), levels.count("MAY"), levels.count("OPEN")) == (13, 3, 8)
    for case in cases.values():
        assert case.quote and case.title and case.remediation and case.iut in ("service", "client", "both", "mixed")


def test_statements_and_cases_refer_to_each_other():
    cases, statements = catalogue.cases(), catalogue.statements()
    for case in cases.values():
        assert set(case.statements) <= statements.keys(), case.id
    for statement in statements.values():
        assert set(statement.cases) <= cases.keys(), statement.id


def test_list_marks_exactly_the_cases_the_suite_tests(tmp_path):
    listed = run_cli("list", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["id"] for r in rows] and len(rows) == 62
    implemented = {r["id"] for r in rows if r["implemented"]}
    assert {r["id"] for r in rows if r["tests"] > 0} == implemented
    assert implemented == {r["id"] for r in rows}  # every case of the catalogue has its tests


def test_a_test_naming_an_unknown_case_cannot_be_collected(tmp_path):
    module = tmp_path / "test_bogus.py"
    module.write_text("from conformance.marks import case\n\n@case('IMPP-5.99-1')\ndef test_x():\n    pass\n")
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", str(module),
                           "-p", "no:cacheprovider"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode != 0
    assert "IMPP-5.99-1 is not a case of the catalogue" in done.stdout + done.stderr
