"""The harness against an IUT that turns hostile in the middle of a case (ARCHITECTURE rule 8): whatever the IUT
does, the harness gives each test a verdict with evidence within the case timeout, its memory stays bounded, and
the report is complete.

The IUT (`hostile_iut.py`) is the reference service until a test's payload reaches it, so the preflight and the
cases' set-up succeed and the hostility lands inside a case. Two tests run against each behaviour: in the first,
bob's message to alice is what turns the service hostile on alice's stream (her positive control); the second
sends its payload before alice comes online on a new stream to fetch it (where a TLS stall, or a DTD before a
stream header, bites).

The bound: the harness process's peak resident set stays under PEAK_RSS_BOUND (240 MB). What makes it hold: the
recorder's per-case byte limit (64 MB, `transport/wire.py`, released once the case's evidence is written), the
parser's unit size limit (256 KB), what one stream keeps (20 000 units or 8 MB, `client.py`), a transcript written
line by line (`evidence.py`), and no failed test's frames kept for post-mortem debugging (`plugin.py`). The clean
run of these two tests peaks at about 95 MB; the floods, which fill the recorder, at about 200 MB.
"""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from hostile_iut import BEHAVIOURS

HERE = Path(__file__).resolve().parent
CASE_TIMEOUT = 10  # seconds: the profile's timeouts.case (the bound on each step of a test) and on a whole test here
FAST = {"handshake": 2, "step": 2, "close": 2, "positive": 2, "case": CASE_TIMEOUT}
SELECTION = ["--case", "IMPP-5.1-5", "--case", "IMPP-5.14-1", "-k",
             "authenticates_as_another_inbox or stored_messages_wait"]
HIT, LATER = "test_no_one_authenticates_as_another_inbox", "test_stored_messages_wait_for_the_authenticated_inbox"
MARGIN = 20  # seconds: start-up of the harness (pytest, collection), preflight, report writing
PEAK_RSS_BOUND = 240 * 1024 * 1024  # bytes
START_TIMEOUT = 30  # seconds for the hostile IUT to say READY (it makes its certificates first)

# behaviour -> (what the transcript of the first test shows, what the message of its verdict says)
EXPECTED = {
    "billion-laughs": ("<!ENTITY lol9", "the IUT sent XML we refuse"),
    "endless-stanza": ("lol lol lol", "policy-violation: a single XML element exceeds"),
    "trickle": ("<-  l\n", "within 2s"),
    "flood": ("flood 1</body>", "the IUT sent more than a stream keeps"),
    "flood-large": ("flood flood flood", "the IUT sent more than a stream keeps"),
    "iq-flood": ("the peer took nothing more within 1s: connection dropped", "within 2s"),
    "random-bytes": ("refused XML from the IUT: not-well-formed", "not-well-formed"),
    "reset": ("read failed: [Errno 104]", "the connection failed (read failed"),
}


def start_hostile(data: Path, behaviour: str) -> tuple[subprocess.Popen, Path]:
    errors = data.parent / "hostile-iut.err"
    with errors.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, str(HERE / "hostile_iut.py"), "--data", str(data),
                                 "--behaviour", behaviour], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=stderr, text=True)
    ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT)
    line = proc.stdout.readline() if ready else ""  # READY, or EOF if the process died
    if not line.startswith("READY "):
        stop(proc)
        pytest.fail(f"the hostile IUT did not start: {line!r}\n{errors.read_text()[-3000:]}")
    return proc, Path(line.split(" ", 1)[1].strip())


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    proc.stdin.close()
    proc.stdout.close()


def fast_profile(generated: Path, behaviour: str, path: Path) -> Path:
    """The fixture's profile with fast timeouts added to its own [timeouts] table."""
    text = generated.read_text().replace('name = "reference"', f'name = "hostile-{behaviour}"')
    fast = "".join(f"{key} = {value}\n" for key, value in FAST.items())
    assert text.count("[timeouts]\n") == 1
    path.write_text(text.replace("[timeouts]\n", "[timeouts]\n" + fast))
    return path


# The CLI's main() in a child process that writes its own peak resident set (VmHWM) when it ends. Not wait4's
# ru_maxrss: Linux starts a child's from its parent's resident set at fork, so it would measure pytest.
MEASURED = """
import sys
from conformance.cli import main
try:
    code = main(sys.argv[2:])
finally:
    with open("/proc/self/status") as status, open(sys.argv[1], "w") as peak:
        peak.write(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
sys.exit(code)
"""


def run_measured(args: list[str], cwd: Path, deadline: float) -> tuple[int, str, str, int, float]:
    """The CLI in a child process: exit code, stdout, stderr, peak resident set (bytes), wall time (s)."""
    out, err, peak = cwd / "cli.out", cwd / "cli.err", cwd / "cli.peak"
    started = time.monotonic()
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-c", MEASURED, str(peak), *args], stdout=stdout, stderr=stderr,
                                cwd=cwd)
    try:
        code = proc.wait(deadline)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        pytest.fail(f"the harness did not finish within {deadline:g}s:\n{out.read_text()[-3000:]}")
    wall = time.monotonic() - started
    assert peak.exists(), f"the harness died (exit {code}):\n{err.read_text()[-3000:]}"
    return code, out.read_text(), err.read_text(), int(peak.read_text()) * 1024, wall


@pytest.mark.parametrize("behaviour", BEHAVIOURS)
def test_a_hostile_iut_mid_case_gives_verdicts_evidence_and_a_complete_report(tmp_path, behaviour):
    proc, generated = start_hostile(tmp_path / "iut", behaviour)
    try:
        profile = fast_profile(generated, behaviour, tmp_path / "hostile.toml")
        out = tmp_path / "reports"
        code, stdout, stderr, peak, wall = run_measured(
            ["run", "--profile", str(profile), "--out", str(out), "--run-id", behaviour, *SELECTION],
            tmp_path, deadline=2 * CASE_TIMEOUT + MARGIN)
    finally:
        stop(proc)
    print(f"{behaviour}: exit {code}, {wall:.1f}s, peak RSS {peak / 2**20:.0f} MB")
    assert "hostile:" in (tmp_path / "iut" / "service.log").read_text(), \
        f"the behaviour never fired, which proves nothing:\n{(tmp_path / 'hostile-iut.err').read_text()[-3000:]}"
    assert "Traceback" not in stdout + stderr, stdout[-3000:] + stderr[-3000:]
    assert peak < PEAK_RSS_BOUND, f"peak RSS {peak / 2**20:.0f} MB"

    # The report is complete: every selected test has a verdict (PASS where the hostility did not reach it, else
    # ERROR, never a FAIL drawn from a hostile answer), a message, evidence, and the run's files are all there.
    run = out / behaviour
    report = json.loads((run / "results.json").read_text())
    assert code == report["exit_code"] == 3, stdout[-3000:]
    tests = {t["nodeid"].split("::")[1]: t for t in report["tests"]}
    assert tests.keys() == {HIT, LATER}
    for test in tests.values():
        assert test["verdict"] in ("pass", "error"), test
        assert test["verdict"] == "pass" or test["message"], test
        assert test["duration"] < CASE_TIMEOUT, test
        assert (run / test["evidence"]["transcript"]).read_text(errors="replace").endswith("\n")
    junit = ET.parse(run / "junit.xml").getroot()
    assert sorted(c.get("name") for c in junit.iter("testcase")) == sorted(tests)
    html = (run / "report.html").read_text()
    assert HIT in html and LATER in html

    hit, later = tests[HIT], tests[LATER]
    transcript = (run / hit["evidence"]["transcript"]).read_text(errors="replace")
    if behaviour == "tls-stall":  # armed by the first test's payload, it stalls the second test's new streams
        assert hit["verdict"] == "pass", hit
        assert later["verdict"] == "error" and "no TLS handshake within 2s" in later["message"], later
        assert "TLS handshake timed out" in (run / later["evidence"]["transcript"]).read_text()
        return
    # The first test's positive control (bob's message to alice) is where the IUT turned hostile: an ERROR that
    # says why, over a transcript that shows what came.
    evidence, why = EXPECTED[behaviour]
    assert hit["verdict"] == "error" and hit["message"].startswith("positive control failed"), hit
    assert why in hit["message"], hit["message"]
    assert evidence in transcript
    if behaviour == "billion-laughs":  # new streams after that get the DTD where XML allows one: refused unexpanded
        assert later["verdict"] == "error" and "restricted-xml: DTDs" in later["message"], later


def test_an_eavesdropper_vouches_for_nothing_when_a_flood_truncated_the_recording():
    """A hostile IUT that fills the case's recording before it leaks must not earn a PASS for what was not kept;
    a leak found in what was kept is still a FAIL."""
    from conformance.attacker.eavesdropper import Eavesdropper
    from conformance.roles import Update
    from conformance.transport.wire import Chunk, Recorder
    from conformance.verdicts import SetupFailed, Violation

    recorder = Recorder(max_bytes=1000)
    recorder.add("alice", "in", "tcp", b"\x17\x03\x03" + bytes(500))  # ciphertext: nothing readable
    recorder.add("alice", "in", "tcp", bytes(600))  # beyond the limit: not kept
    assert recorder.truncated and "recording stops here" in recorder.chunks[-1].note
    with pytest.raises(SetupFailed, match="cannot vouch"):
        Eavesdropper(recorder).finds_nothing_of(Update(kind="message", sender="bob", canary="CAN-x-1234567890"))
    recorder.chunks.insert(0, Chunk(0.0, "bob", "out", "tcp", b"<body>CAN-x-1234567890"))  # kept, in clear
    with pytest.raises(Violation, match="in clear"):
        Eavesdropper(recorder).finds_nothing_of(Update(kind="message", sender="bob", canary="CAN-x-1234567890"))
