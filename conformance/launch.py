"""Starting and stopping a real target around a run (`impp-conformance run --start`), with the commands its
profile names in `[control] start` and `stop` (for Prosody and ejabberd: the scripts in fixtures/)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

from conformance.profile import Profile

START_TIMEOUT = 180.0
STOP_TIMEOUT = 90.0


class StartError(Exception):
    """The target could not be started; one line saying which command failed and why."""


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def _run(command: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    # The fixtures find the project's Python through IMPP_PYTHON: the one running this harness.
    env = dict(os.environ, IMPP_PYTHON=sys.executable)
    return subprocess.run(command, shell=True, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


@contextlib.contextmanager
def started(profile: Profile) -> Iterator[Path]:
    """Start the target, yield the profile the start command printed, and always stop the target afterwards."""
    control, where = profile.control, profile.path.parent
    if not control.start or not control.stop:
        raise StartError(f"{profile.path}: --start needs 'control.start' and 'control.stop' commands in the profile")
    try:
        try:
            done = _run(control.start, where, START_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise StartError(f"'{control.start}' did not finish within {START_TIMEOUT:g}s") from None
        if done.returncode != 0:
            raise StartError(f"'{control.start}' exited {done.returncode}: "
                             f"{_last_line(done.stderr) or _last_line(done.stdout) or 'no output'}")
        printed = _last_line(done.stdout)
        generated = (where / printed).resolve() if printed else None
        if generated is None or not generated.is_file():
            raise StartError(f"'{control.start}' printed no profile path (got {printed!r})")
        yield generated
    finally:
        try:
            stopped = _run(control.stop, where, STOP_TIMEOUT)
            if stopped.returncode != 0:
                print(f"warning: '{control.stop}' exited {stopped.returncode}: {_last_line(stopped.stderr)}",
                      file=sys.stderr)
        except subprocess.TimeoutExpired:
            print(f"warning: '{control.stop}' did not finish within {STOP_TIMEOUT:g}s", file=sys.stderr)
