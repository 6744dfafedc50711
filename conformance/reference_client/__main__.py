"""`python -m conformance.reference_client [--flaw NAME]... ACTION`: the reference client as a shim (docs/shim.md).

The request is one JSON object on the first line of standard input. Standard input stays open while the harness
watches; at its end the client disconnects and exits (`linger` bounds the wait). Events are JSON lines on standard
output. Exit status: 0 done, 1 the client gave up (TLS, certificate, authentication, the service went away before
the action was done), 2 usage (an unknown flaw or action, a bad request); 70 a bug of this program.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import traceback

from conformance.shim.contract import ACTIONS, EXIT_DONE, EXIT_REFUSED, EXIT_USAGE

from .events import Reporter
from .flaws import UnknownFlaw, switched_on
from .request import UsageError, parse
from .run import run

FEATURES = ("receipts", "carbons", "roster", "errors", "mam")
EXTRA_SECONDS = 30.0  # the whole run: linger plus this (connecting, negotiating, closing)
REQUEST_WAIT = 30.0  # seconds for the request line
MAX_REQUEST_BYTES = 1024 * 1024
EXIT_BUG = 70  # EX_SOFTWARE: not a code of the contract, so the harness says ERROR


class _Stdin:
    """Standard input read in a thread with os.read (no buffered object whose lock a blocked daemon thread would
    hold at exit): the first line is the request, the end of the rest is the harness letting go."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.request: asyncio.Future[bytes | None] = loop.create_future()
        self.ended = asyncio.Event()

    def start(self) -> None:
        threading.Thread(target=self._read, name="stdin", daemon=True).start()

    def _read(self) -> None:
        buffer = bytearray()
        line: bytes | None = None
        while True:
            try:
                chunk = os.read(0, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            if line is None:
                buffer += chunk
                if b"\n" in buffer:
                    line = bytes(buffer.split(b"\n", 1)[0])
                    self._call(self._set_request, line)
                    buffer.clear()
                elif len(buffer) > MAX_REQUEST_BYTES:
                    break
        if line is None:
            self._call(self._set_request, bytes(buffer) if buffer.strip() else None)
        self._call(self.ended.set)

    def _call(self, fn, *args) -> None:
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: the run is over anyway
            pass

    def _set_request(self, line: bytes | None) -> None:
        if not self.request.done():
            self.request.set_result(line)


def _usage(message: str) -> int:
    print(f"error: {message}", file=sys.stderr, flush=True)
    return EXIT_USAGE


def _arguments(argv: list[str]) -> tuple[list[str], str]:
    flaws: list[str] = []
    actions: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg == "--flaw":
            name = next(args, None)
            if name is None:
                raise UsageError("--flaw needs a flaw name")
            flaws.append(name)
        elif arg.startswith("--flaw="):
            flaws.append(arg.split("=", 1)[1])
        elif arg.startswith("-"):
            raise UsageError(f"unknown option {arg}; usage: python -m conformance.reference_client "
                             f"[--flaw NAME]... ACTION")
        else:
            actions.append(arg)
    if len(actions) != 1:
        raise UsageError(f"expected one action ({', '.join(ACTIONS)}), got {len(actions)}")
    if actions[0] not in ACTIONS:
        raise UsageError(f"unknown action {actions[0]!r}; the actions are {', '.join(ACTIONS)}")
    return flaws, actions[0]


async def _serve(action: str, flawed, report: Reporter) -> int:
    stdin = _Stdin(asyncio.get_running_loop())
    stdin.start()
    try:
        line = await asyncio.wait_for(stdin.request, REQUEST_WAIT)
    except asyncio.TimeoutError:
        line = None
    if line is None:
        return _usage("no request on standard input (one JSON object on the first line)")
    try:
        request = parse(line, action)
    except UsageError as exc:
        return _usage(str(exc))
    bound = request.linger + EXTRA_SECONDS
    try:
        return await asyncio.wait_for(run(action, request, report, flawed, stdin.ended), bound)
    except asyncio.TimeoutError:
        report("failed", reason=f"the run took longer than {bound:g}s (linger {request.linger:g}s)")
        report("closed", by="client")
        return EXIT_REFUSED


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv in (["-h"], ["--help"]):
        print(__doc__.strip())
        return EXIT_DONE
    try:
        names, action = _arguments(argv)
        flawed = switched_on(names)
    except (UsageError, UnknownFlaw) as exc:
        return _usage(str(exc))
    report = Reporter()
    if action == "capabilities":
        report("capabilities", actions=list(ACTIONS), features=list(FEATURES))
        return EXIT_DONE
    try:
        return asyncio.run(_serve(action, flawed, report))
    except KeyboardInterrupt:
        return EXIT_REFUSED
    except Exception as exc:  # a bug here: one line to say so, the traceback for whoever reads standard error
        traceback.print_exc(file=sys.stderr)
        print(f"error: the reference client failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return EXIT_BUG


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # the stdin thread may still be blocked in read(): nothing of it to wait for
