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
from typing import Any, Callable

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


class ShimProcess:
    """A shim while it runs: its events arrive as it prints them, so a test can wait for one (the client bound, a
    message shown) before it acts, and then end the action by closing the shim's standard input."""

    def __init__(self, action: str, process: asyncio.subprocess.Process | None, started: float, failure: str = ""):
        self.action = action
        self.process = process
        self.started = started
        self.events: list[dict[str, Any]] = []
        self._cut: list[str] = []
        self._stderr = bytearray(failure.encode())
        self._changed = asyncio.Event()
        self._readers: asyncio.Future | None = None
        self.result: ShimRun | None = None

    def _begin(self, request: dict[str, Any]) -> None:
        # written now, so that a finish() right after start() closes standard input behind the request
        try:
            self.process.stdin.write(json.dumps(request).encode() + b"\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        self._readers = asyncio.gather(self._read_events(), self._read_stderr(), self._feed(request))

    async def _read_events(self) -> None:
        while True:
            line = await _next_line(self.process.stdout)
            if line is None:  # longer than MAX_LINE_BYTES: dropped whole, however it arrived
                self._cut.append(f"; a line over {MAX_LINE_BYTES} bytes dropped")
                continue
            if not line:
                self._changed.set()
                return
            if len(self.events) >= MAX_LINES:
                if not self._cut:
                    self._cut.append(f"; events beyond {MAX_LINES} dropped")
                continue
            self.events.append(_event(line))
            self._changed.set()

    async def _read_stderr(self) -> None:
        while chunk := await self.process.stderr.read(4096):
            self._stderr.extend(chunk)
            del self._stderr[:-MAX_STDERR_BYTES]

    async def _feed(self, request: dict[str, Any]) -> None:
        try:
            await self.process.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # a shim that does not read its request: its exit status tells the rest

    @property
    def exited(self) -> bool:
        return self.process is None or self.process.returncode is not None

    async def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any] | None:
        """The first event (already printed or yet to come) that satisfies `predicate`; None if none came within
        `timeout` seconds or before the shim's output ended."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        seen = 0
        while True:
            for event in self.events[seen:]:
                if predicate(event):
                    return event
            seen = len(self.events)
            if self.process is None or self.process.stdout.at_eof():
                return None
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                return None

    async def exit(self, timeout: float) -> int | None:
        """Wait up to `timeout` s for the shim to end by itself (the client gave up, or closed); its exit code."""
        if self.process is None:
            return 127
        try:
            return await asyncio.wait_for(asyncio.shield(self.process.wait()), timeout)
        except asyncio.TimeoutError:
            return None

    async def finish(self, timeout: float) -> ShimRun:
        """Close standard input (the harness has seen enough), wait up to `timeout` s for the shim to disconnect and
        exit, kill it (and its process group) if it does not, and return everything it did."""
        if self.result is not None:
            return self.result
        loop = asyncio.get_running_loop()
        if self.process is None:
            self.result = ShimRun(self.action, 127, [], self._stderr.decode(errors="replace"), 0.0)
            return self.result
        try:
            self.process.stdin.close()
        except (BrokenPipeError, ConnectionResetError, RuntimeError):
            pass
        exit_code: int | None
        try:
            await asyncio.wait_for(asyncio.shield(self._readers), timeout)
            exit_code = await asyncio.wait_for(self.process.wait(), timeout)
        except asyncio.TimeoutError:
            exit_code = None
            _kill(self.process)
            await self.process.wait()
            try:
                await asyncio.wait_for(self._readers, 2.0)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                self._readers.cancel()
        self.result = ShimRun(self.action, exit_code, self.events, self._stderr.decode("utf-8", errors="replace"),
                              loop.time() - self.started, "".join(dict.fromkeys(self._cut)))
        return self.result

    def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            _kill(self.process)


async def start(command: list[str], action: str, request: dict[str, Any], *, cwd: str | None = None) -> ShimProcess:
    """Start `command action` with `request` as the first line of its standard input, which stays open."""
    if action not in ACTIONS:
        raise ValueError(f"unknown shim action {action!r}")
    loop = asyncio.get_running_loop()
    try:
        process = await asyncio.create_subprocess_exec(
            *command, action, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, cwd=cwd, start_new_session=True, limit=MAX_LINE_BYTES)
    except OSError as exc:
        return ShimProcess(action, None, loop.time(), f"cannot start the shim {command[0]!r}: {exc.strerror or exc}")
    shim = ShimProcess(action, process, loop.time())
    shim._begin(request)
    return shim


async def run(command: list[str], action: str, request: dict[str, Any], *, timeout: float,
              cwd: str | None = None) -> ShimRun:
    """Run `command action` to its end: the request, then end of file (nothing more to watch); at most `timeout`
    seconds."""
    shim = await start(command, action, request, cwd=cwd)
    return await shim.finish(timeout)


async def _next_line(reader: asyncio.StreamReader) -> bytes | None:
    """The next line (b"" at the end); None for a line over the reader's limit, which is read to its end and
    dropped (readline() would drop only what was buffered and return the rest of it as a line of its own)."""
    try:
        return await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        return exc.partial  # the end: a last line without newline, or b""
    except asyncio.LimitOverrunError as exc:
        consumed = exc.consumed
    while True:
        try:
            await reader.readexactly(consumed)
            await reader.readuntil(b"\n")
            return None
        except asyncio.IncompleteReadError:
            return None
        except asyncio.LimitOverrunError as exc:
            consumed = exc.consumed


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
