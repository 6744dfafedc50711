"""The flood rates the harness sustains on loopback against the embedded reference service.

    python benchmarks/flood_rate.py [RATE ...]

For each aimed rate (default 200, 1000, 5000 fetches a second) it runs IMPP-5.3-1's throttling test against a fresh
reference service with the profile's `load.rate` set to it (2 s flood), and the connection flood of IMPP-5.3-2
(300 silent connections from 127.0.0.2), then prints what the harness achieved, from the verdict notes in
results.json. The reference throttles the fetches (20/s per session) but reads everything, so the achieved rate is
the harness's own. Loopback only; every run is bounded by the profile's [load].
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def serve(data: Path) -> tuple[subprocess.Popen, Path]:
    proc = subprocess.Popen([sys.executable, "-m", "conformance.cli", "serve", "--data", str(data)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    text = ""
    for _ in range(200):
        line = proc.stdout.readline()
        if not line:
            raise SystemExit("the reference service did not start")
        text += line
        if "[accounts.mallory]" in text and "password" in text.split("[accounts.mallory]")[1]:
            break
    return proc, data / "profile.toml"


def run(profile: Path, out: Path, rate: float, *selection: str) -> list[str]:
    text = re.sub(r"\[load\][^\[]*", "", profile.read_text())
    edited = profile.with_name(f"bench-{rate:g}.toml")
    edited.write_text(text + f'\n[load]\nsource = "127.0.0.2"\nduration = 2.0\nrate = {rate}\nconnections = 300\n')
    subprocess.run([sys.executable, "-m", "conformance.cli", "run", "--profile", str(edited), "--out", str(out),
                    "--run-id", f"r{rate:g}", *selection], cwd=ROOT, capture_output=True, timeout=300)
    results = json.loads((out / f"r{rate:g}" / "results.json").read_text())
    return [n for t in results["tests"] for n in t.get("notes", [])]


def main() -> None:
    rates = [float(r) for r in sys.argv[1:]] or [200.0, 1000.0, 5000.0]
    with tempfile.TemporaryDirectory() as tmp:
        proc, profile = serve(Path(tmp) / "ref")
        try:
            for rate in rates:
                notes = run(profile, Path(tmp) / "out", rate, "-k", "restricted_apart")
                print(f"aimed {rate:>6g}/s: " + "; ".join(n for n in notes if "last-activity" in n))
            notes = run(profile, Path(tmp) / "out", 200.0, "-k", "locks_nobody_out and silent")
            print("connections: " + "; ".join(notes))
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(30)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    main()
