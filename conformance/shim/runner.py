"""Running a shim (contract.py) with bounds: the time it may take, the lines and bytes it may print, the stderr the
evidence keeps. A shim that hangs is killed (with its process group), one that floods its output is cut off, and a
line that is not a JSON object is kept as an event of its own rather than trusted; nothing a shim does raises here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
from typing import Any

from .contract import ACTIONS, EXIT_CODES, EXIT_DONE, EXIT_REFUSED, EXIT_UNSUPPORTED

MAX_LINES = 10_000  # events kept per run
MAX_LINE_BYTES = 64 * 1024  # one event
MAX_STDERR_BYTES = 64 * 1024  # kept for the evidence (the tail)


@dataclasses.dataclass
class ShimRun:
    action: str
    exit_code: int | None  # None: killed at the deadline
    events: list[dict[str, Any]]
    stderr: str
    seconds: float
    cut: str = ""  # why output was not all kept (too many lines, a line too long), if so

    @property
    def timed_out(self) -> bool:
        return self.exit_code is None

    @property
    def done(self) -> bool:
        return self.exit_code == EXIT_DONE

    @property
    def refused(self) -> bool:
        return self.exit_code == EXIT_REFUSED

    @property
    def unsupported(self) -> bool:
        return self.exit_code == EXIT_UNSUPPORTED

    @property
    def broken(self) -> bool:
        """The shim failed as a program (not the client as a client): the verdict can only be ERROR."""
        return self.exit_code is None or self.exit_code not in EXIT_CODES or self.exit_code == 2

    def of(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == event]

    def __str__(self) -> str:
        status = "killed at its deadline" if self.timed_out else \
            EXIT_CODES.get(self.exit_code, f"exit {self.exit_code}: not a code of the shim contract")
        return f"shim {self.action}: {status} after {self.seconds:.1f}s, {len(self.events)} event(s){self.cut}"


async def run(command: list[str], action: str, request: dict[str, Any], *, timeout: float,
              cwd: str | None = None) -> ShimRun:
    """Run `command action` with `request` as JSON on stdin, until it exits or `timeout` seconds have passed."""
    if action not in ACTIONS:
        raise ValueError(f"unknown shim action {action!r}")
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        process = await asyncio.create_subprocess_exec(
            *command, action, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, cwd=cwd, start_new_session=True, limit=MAX_LINE_BYTES)
    except OSError as exc:
        return ShimRun(action, 127, [], f"cannot start the shim {command[0]!r}: {exc.strerror or exc}", 0.0)
    events: list[dict[str, Any]] = []
    cut = []
    stderr = bytearray()

    async def read_events() -> None:
        while True:
            try:
                line = await process.stdout.readline()
            except ValueError:  # longer than MAX_LINE_BYTES: asyncio has dropped what it buffered of it
                cut.append(f"; a line over {MAX_LINE_BYTES} bytes dropped")
                continue
            if not line:
                return
            if len(events) >= MAX_LINES:
                if not cut:
                    cut.append(f"; events beyond {MAX_LINES} dropped")
                continue
            events.append(_event(line))

    async def read_stderr() -> None:
        while chunk := await process.stderr.read(4096):
            stderr.extend(chunk)
            del stderr[:-MAX_STDERR_BYTES]

    async def feed() -> None:
        try:
            process.stdin.write(json.dumps(request).encode() + b"\n")
            await process.stdin.drain()
            process.stdin.close()
        except (BrokenPipeError, ConnectionResetError):
            pass  # a shim that does not read its request: its exit status tells the rest

    readers = asyncio.gather(read_events(), read_stderr(), feed())
    exit_code: int | None
    try:
        await asyncio.wait_for(asyncio.shield(readers), timeout)
        exit_code = await asyncio.wait_for(process.wait(), max(0.1, timeout - (loop.time() - started)))
    except asyncio.TimeoutError:
        exit_code = None
        _kill(process)
        await process.wait()
        try:
            await asyncio.wait_for(readers, 2.0)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            readers.cancel()
    return ShimRun(action, exit_code, events, stderr.decode("utf-8", errors="replace"), loop.time() - started,
                   "".join(dict.fromkeys(cut)))


def _event(line: bytes) -> dict[str, Any]:
    try:
        event = json.loads(line)
    except ValueError:
        event = None
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        return {"event": "unparsed", "line": line[:200].decode("utf-8", errors="replace").rstrip("\n")}
    return event


def _kill(process: asyncio.subprocess.Process) -> None:
    """The shim and whatever it started (a Node.js client may fork): its whole process group."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            process.kill()
        except ProcessLookupError:
            pass
