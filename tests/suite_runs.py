"""Running the conformance suite as a user would (the CLI, in a child process) against the embedded reference
service, clean or with one flaw switched on; shared by the kill matrix and the end-to-end tests."""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
from pathlib import Path

RUN_TIMEOUT = 600  # seconds; a whole suite run takes a few seconds, this only bounds a hang


def run_cli(*args: str, cwd: Path | None = None, timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "conformance.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def run_suite(out: Path, flaw: str | None) -> dict:
    name = flaw or "clean"
    done = run_cli("run", "--out", str(out), "--run-id", name, *(["--flaw", flaw] if flaw else []))
    results = out / name / "results.json"
    if not results.exists():
        raise AssertionError(f"{name}: no results.json (exit {done.returncode})\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    data = json.loads(results.read_text())
    data["_process_exit"] = done.returncode
    return data


def run_all(out: Path, flaws: list[str | None]) -> dict[str | None, dict]:
    workers = max(1, min(4, os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        futures = {flaw: pool.submit(run_suite, out, flaw) for flaw in flaws}
        return {flaw: future.result() for flaw, future in futures.items()}
