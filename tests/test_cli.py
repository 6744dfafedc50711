"""The command line end to end, as a vendor or a CI job uses it, including every kind of bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conformance import catalogue
from conformance.reference.flaws import FLAWS
from conformance.reference_client.flaws import FLAWS as CLIENT_FLAWS

from hostile import CutAfter, HostileTarget
from suite_runs import run_cli

FAST = """
[timeouts]
handshake = 2
step = 2
close = 2
positive = 2
"""


def profile_for(tmp_path: Path, port: int, extra: str = FAST, name: str = "hostile") -> Path:
    path = tmp_path / f"{name}.toml"
    accounts = "".join(f'[accounts.{a}]\npassword = "x"\n' for a in ("alice", "bob", "mallory"))
    path.write_text(f'[target]\nname = "{name}"\ndomain = "iut.test"\nhost = "127.0.0.1"\nport = {port}\n'
                    f'{accounts}{extra}')
    return path


def results(out: Path) -> dict:
    return json.loads((out / "latest" / "results.json").read_text())


def assert_clean_output(done: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in done.stdout + done.stderr


def test_flaws_are_listed_with_the_cases_they_break(tmp_path):
    done = run_cli("flaws", "--json", cwd=tmp_path)
    assert done.returncode == 0
    listed = json.loads(done.stdout)
    assert [f["name"] for f in listed if f["iut"] == "service"] == list(FLAWS)
    assert [f["name"] for f in listed if f["iut"] == "client"] == list(CLIENT_FLAWS)
    for flaw in listed:
        assert flaw["breaks"] and set(flaw["breaks"]) <= catalogue.cases().keys()


@pytest.mark.parametrize("args, message", [
    (["run", "--flaw", "no-such-flaw"], "unknown flaw no-such-flaw"),
    (["run", "--case", "IMPP-9.9-9"], "IMPP-9.9-9: not a case of the catalogue"),
    (["run", "--profile", "absent.toml"], "absent.toml: no such profile file"),
])
def test_usage_errors_are_one_line_and_exit_2(tmp_path, args, message):
    done = run_cli(*args, "--out", str(tmp_path / "reports"), cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert_clean_output(done)


def test_a_profile_with_a_typo_is_rejected_before_anything_runs(tmp_path):
    path = profile_for(tmp_path, 5222, extra="[timeouts]\npositiv = 3\n")
    done = run_cli("run", "--profile", str(path), "--out", str(tmp_path / "reports"), cwd=tmp_path)
    assert done.returncode == 2 and "unknown key 'timeouts.positiv'" in done.stderr and str(path) in done.stderr
    assert_clean_output(done)


@pytest.mark.parametrize("mode", ["refused", "garbage", "close", "silent", "not-xml"])
def test_an_unusable_target_gives_exit_3_and_a_complete_report(tmp_path, mode):
    out = tmp_path / "reports"
    started = time.monotonic()
    if mode == "refused":
        with HostileTarget("close") as closed:
            port = closed.port  # then nothing listens on it any more
        done = run_cli("run", "--profile", str(profile_for(tmp_path, port)), "--out", str(out), cwd=tmp_path)
    else:
        with HostileTarget(mode) as target:
            done = run_cli("run", "--profile", str(profile_for(tmp_path, target.port)), "--out", str(out),
                           cwd=tmp_path)
    assert done.returncode == 3, done.stdout[-3000:]
    assert time.monotonic() - started < 60
    assert_clean_output(done)
    report = results(out)
    assert report["error"].startswith("target unreachable") and report["exit_code"] == 3
    assert report["tests"] and all(t["verdict"] == "error" for t in report["tests"])
    assert (out / "latest" / "junit.xml").exists() and (out / "latest" / "preflight" / "transcript.txt").exists()


def test_a_target_that_goes_away_mid_run_gives_errors_not_a_hang(tmp_path):
    serve = subprocess.Popen([sys.executable, "-m", "conformance.cli", "serve", "--data", str(tmp_path / "ref")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        text = ""
        while "[accounts.mallory]" not in text or "password" not in text.split("[accounts.mallory]")[1]:
            line = serve.stdout.readline()
            assert line, serve.stderr.read()
            text += line
        profile = tmp_path / "ref" / "profile.toml"
        port = int(next(l.split("=")[1] for l in profile.read_text().splitlines() if l.startswith("port")))
        with CutAfter(("127.0.0.1", port), keep=3 + 3 * 4) as proxy:  # preflight, then four tests' worth
            edited = profile.read_text().replace(f"port = {port}", f"port = {proxy.port}")
            cut_profile = tmp_path / "cut.toml"
            edited = edited.replace('name = "reference"', 'name = "cut"')
            # the reference's profile may have a [timeouts] table of its own: add the fast timeouts to it
            fast = FAST.replace("[timeouts]\n", "") if "[timeouts]" in edited else FAST
            cut_profile.write_text(edited.replace("[timeouts]\n", "[timeouts]\n" + fast, 1) if fast != FAST
                                   else edited + FAST)
            out = tmp_path / "reports"
            done = run_cli("run", "--profile", str(cut_profile), "--out", str(out), "--case", "IMPP-5.1-2",
                           "--case", "IMPP-5.10-2", "--case", "IMPP-5.11-1", cwd=tmp_path, timeout=300)
    finally:
        serve.send_signal(signal.SIGINT)
        serve.wait(30)
    assert_clean_output(done)
    report = results(out)
    verdicts = [t["verdict"] for t in report["tests"]]
    assert "pass" in verdicts and "error" in verdicts, verdicts
    assert done.returncode == 3 and report["exit_code"] == 3
    cut = [t for t in report["tests"] if t["verdict"] == "error"]
    assert all(t["message"] for t in cut)


def test_one_case_can_be_run_alone_and_every_report_is_written(tmp_path):
    out = tmp_path / "reports"
    done = run_cli("run", "--case", "IMPP-5.2-2", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "§5.2 Authenticity" in done.stdout and "exit code 0" in done.stdout
    report = results(out)
    assert {t["case_id"] for t in report["tests"]} == {"IMPP-5.2-2"}
    assert report["summary"]["pass"] == len(report["tests"]) == 3
    assert report["cases"]["IMPP-5.2-2"]["verdict"] == "pass"
    for field in ("tool", "version", "target", "started", "duration", "exit_code"):
        assert field in report
    for test in report["tests"]:
        assert {"nodeid", "case_id", "level", "verdict", "duration", "message", "evidence"} <= test.keys()
        transcript = out / "latest" / test["evidence"]["transcript"]
        assert "<stream:stream" in transcript.read_text() and "[redacted]" in transcript.read_text()
    junit = ET.parse(out / "latest" / "junit.xml")
    cases = junit.getroot().iter("testcase")
    properties = [{p.get("name"): p.get("value") for p in c.iter("property")} for c in cases]
    assert properties and all(p.get("case") == "IMPP-5.2-2" and p.get("verdict") == "pass" for p in properties)
    html = (out / "latest" / "report.html").read_text()
    assert "IMPP-5.2-2" in html and catalogue.get("IMPP-5.2-2").quote[:40] in html
    assert os.path.islink(out / "latest")


def test_a_must_flaw_makes_the_run_exit_1_with_its_case_failing(tmp_path):
    out = tmp_path / "reports"
    done = run_cli("run", "--flaw", "trusts-client-from", "--case", "IMPP-5.2-2", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 1
    assert "FAIL" in done.stdout and "quote:" in done.stdout and "remediation:" in done.stdout
    assert {t["verdict"] for t in results(out)["tests"]} == {"fail"}


def test_a_should_flaw_fails_the_run_only_with_strict(tmp_path):
    args = ["run", "--flaw", "unlimited-auth-retries", "--case", "IMPP-5.2-1", "-k", "repeated"]
    assert run_cli(*args, "--out", str(tmp_path / "a"), cwd=tmp_path).returncode == 0
    assert run_cli(*args, "--strict", "--out", str(tmp_path / "b"), cwd=tmp_path).returncode == 1


def test_the_pytest_entry_point_runs_the_suite_too(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pytest", "--pyargs", "conformance.suite", "--case", "IMPP-5.1-4",
                           "--out", str(tmp_path / "reports"), "-p", "no:cacheprovider"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:]
    assert results(tmp_path / "reports")["cases"]["IMPP-5.1-4"]["verdict"] == "pass"


def test_runs_of_several_targets_become_one_matrix(tmp_path):
    out = tmp_path / "reports"
    for flaw in (None, "roster-readable-by-others"):
        run_cli("run", "--case", "IMPP-5.1-4", "--case", "IMPP-5.2-2", "--out", str(out),
                "--run-id", flaw or "clean", *(["--flaw", flaw] if flaw else []), cwd=tmp_path)
    done = run_cli("report", str(out / "clean"), str(out / "roster-readable-by-others"), "--out",
                   str(out / "matrix"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    data = json.loads((out / "matrix" / "matrix.json").read_text())
    assert [t["name"] for t in data["targets"]] == ["reference", "reference+roster-readable-by-others"]
    assert data["cases"]["IMPP-5.1-4"]["reference"]["verdict"] == "pass"
    assert data["cases"]["IMPP-5.1-4"]["reference+roster-readable-by-others"]["verdict"] == "fail"
    assert data["cases"]["IMPP-5.2-2"]["reference+roster-readable-by-others"]["verdict"] == "pass"
    page = (out / "matrix" / "index.html").read_text()
    link = data["cases"]["IMPP-5.1-4"]["reference"]["tests"][0]["transcript"]
    assert link in page and (out / "matrix" / link).resolve().exists()
    bad = run_cli("report", str(tmp_path), "--out", str(out / "m2"), cwd=tmp_path)
    assert bad.returncode == 2 and "no results.json" in bad.stderr and "Traceback" not in bad.stderr


def test_start_runs_the_profiles_start_and_stop_commands_around_the_run(tmp_path):
    """A stand-in fixture: its start runs the reference service and prints the profile path; stop ends it."""
    start = tmp_path / "start"
    start.write_text(f"""#!/bin/sh
"{sys.executable}" -m conformance.reference --data "{tmp_path}/ref" > "{tmp_path}/ready" 2>/dev/null &
echo $! > "{tmp_path}/pid"
for i in $(seq 1 200); do grep -q READY "{tmp_path}/ready" 2>/dev/null && break; sleep 0.05; done
echo ref/profile.toml
""")
    stop = tmp_path / "stop"
    stop.write_text(f'#!/bin/sh\nkill $(cat "{tmp_path}/pid") && echo stopped > "{tmp_path}/stopped"\n')
    for script in (start, stop):
        script.chmod(0o755)
    profile = profile_for(tmp_path, 1, name="launcher")
    profile.write_text(profile.read_text() + '\n[control]\nstart = "./start"\nstop = "./stop"\n')
    out = tmp_path / "reports"
    done = run_cli("run", "--profile", str(profile), "--start", "--case", "IMPP-5.1-4", "--out", str(out),
                   cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert results(out)["cases"]["IMPP-5.1-4"]["verdict"] == "pass"
    assert (tmp_path / "stopped").exists()


def test_start_without_start_commands_is_a_usage_error(tmp_path):
    done = run_cli("run", "--start", "--out", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2 and "--start needs --profile" in done.stderr
    done = run_cli("run", "--start", "--profile", str(profile_for(tmp_path, 1)), "--out", str(tmp_path),
                   cwd=tmp_path)
    assert done.returncode == 3 and "control.start" in done.stderr and "Traceback" not in done.stderr


def test_a_killed_harness_leaves_no_reference_service_behind(tmp_path):
    """If the harness dies abruptly (SIGKILL, a CI timeout), the reference service it started stops by itself."""
    run = subprocess.Popen([sys.executable, "-m", "conformance.cli", "run", "--out", str(tmp_path / "reports"),
                            "--run-id", "killed"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           cwd=tmp_path)
    pid_line = None
    deadline = time.monotonic() + 60
    log = tmp_path / "reports" / "killed" / "reference" / "service.log"
    while time.monotonic() < deadline and pid_line is None:
        if log.exists() and "connection from" in log.read_text():
            pid_line = True
        time.sleep(0.05)
    assert pid_line, "the run never reached the reference service"
    children = subprocess.run(["pgrep", "-f", "--", f"--data {tmp_path}/reports/killed/reference"],
                              capture_output=True, text=True).stdout.split()
    assert children
    run.kill()
    run.wait(30)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in children):
        time.sleep(0.05)
    alive = [pid for pid in children if Path(f"/proc/{pid}").exists()
             and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()]
    assert not alive, f"reference service still running after its harness was killed: {alive}"
