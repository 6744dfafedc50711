"""Baselines of known deviations: pinned deviations become XFAIL, changed ones FAIL again, stale ones XPASS."""

from __future__ import annotations

import json

import pytest

from conformance.baseline import BaselineError, Deviation, apply, load
from conformance.verdicts import Verdict

from suite_runs import run_cli

ENTRY = """
[[deviation]]
case = "IMPP-5.1-4"
test = "test_watcher_information_goes_only_to_the_presentity"
verdict = "fail"
match = "{match}"
reason = "The server answers roster queries for other users (a reviewed, known deviation)."
"""


def test_a_pinned_deviation_is_xfail_a_changed_one_fail_a_fixed_one_xpass():
    pinned = Deviation("IMPP-5.1-4", "test_x", Verdict.FAIL, "roster", "why")
    assert apply(pinned, Verdict.FAIL, "mallory read the roster")[0] is Verdict.XFAIL
    assert apply(pinned, Verdict.FAIL, "something else")[0] is Verdict.FAIL
    assert apply(pinned, Verdict.PASS, "")[0] is Verdict.XPASS
    assert apply(pinned, Verdict.ERROR, "could not tell")[0] is Verdict.ERROR
    assert pinned.covers("IMPP-5.1-4", "test_5_01_privacy.py::test_x[param]")
    assert not pinned.covers("IMPP-5.1-3", "test_5_01_privacy.py::test_x")


@pytest.mark.parametrize("text, message", [
    ("[[deviation]]\ncase = 'IMPP-5.1-4'\n", "'test' must be a non-empty string"),
    (ENTRY.format(match="x").replace('verdict = "fail"', 'verdict = "pass"'), "'verdict' must be one of"),
    (ENTRY.format(match="x").replace("IMPP-5.1-4", "IMPP-5.1-99"), "not a case of the catalogue"),
    (ENTRY.format(match="x") + "colour = 'red'\n", "unknown key(s) colour"),
    ("[deviations]\n", "unknown key(s) deviations"),
])
def test_a_bad_baseline_names_file_and_entry(tmp_path, text, message):
    path = tmp_path / "baseline.toml"
    path.write_text(text)
    with pytest.raises(BaselineError) as error:
        load(path)
    assert message in str(error.value) and str(path) in str(error.value)


@pytest.mark.parametrize("flaw, match, verdict, code", [
    ("roster-readable-by-others", "asked for alice's watchers", "xfail", 0),
    ("roster-readable-by-others", "a message that changed", "fail", 1),
    (None, "asked for alice's watchers", "xpass", 1),
])
def test_baselines_end_to_end(tmp_path, flaw, match, verdict, code):
    baseline = tmp_path / "baseline.toml"
    baseline.write_text(ENTRY.format(match=match))
    out = tmp_path / "reports"
    done = run_cli("run", "--case", "IMPP-5.1-4", "--baseline", str(baseline), "--out", str(out),
                   *(["--flaw", flaw] if flaw else []), cwd=tmp_path)
    assert done.returncode == code, done.stdout[-2000:]
    tests = json.loads((out / "latest" / "results.json").read_text())["tests"]
    assert [t["verdict"] for t in tests] == [verdict]
