"""Start, stop and restart the reference service as a child process (so a restart really kills it), and read the
profile it generates for itself.
"""

from __future__ import annotations

import dataclasses
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from conformance import pki
from conformance import profile as profiles


class LaunchError(Exception):
    pass


def _free_port() -> int:
    """A loopback port nothing listens on right now (the harness listens there later, as remote.test's server)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ReferenceProcess:
    def __init__(self, data_dir: Path, flaws: tuple[str, ...] = (), port: int = 0):
        self.data_dir = data_dir
        self.flaws = tuple(flaws)
        self.port = port
        self.side_door_port = 0  # learnt at the first start, so a restart serves the same listeners
        self.s2s_port = 0  # likewise the server-to-server listener (the profile's [federation] port)
        # where the service finds remote.test's server (outbound s2s), i.e. where the harness listens as that
        # server (the profile's federation.listen_port): picked at the first start, kept across restarts
        self.remote_port = 0
        self.process: subprocess.Popen | None = None
        self.profile_path: Path | None = None

    def start(self, timeout: float = 30.0) -> profiles.Profile:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.remote_port:
            self.remote_port = _free_port()
        # --exit-with-parent: the service stops when our end of its stdin closes, even if we are killed.
        command = [sys.executable, "-m", "conformance.reference", "--data", str(self.data_dir),
                   "--port", str(self.port), "--side-door-port", str(self.side_door_port),
                   "--s2s-port", str(self.s2s_port), "--peer", f"{pki.REMOTE_DOMAIN}=127.0.0.1:{self.remote_port}",
                   # the harness is spoof.test's authoritative server too (dialback verification), on that port
                   "--peer", f"{pki.SPOOF_DOMAIN}=127.0.0.1:{self.remote_port}",
                   "--exit-with-parent"]
        for flaw in self.flaws:
            command += ["--flaw", flaw]
        stderr = open(self.data_dir / "stderr.log", "ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=env,
                                        start_new_session=True)
        stderr.close()
        line = self._read_line(timeout)
        if not line.startswith("READY "):
            self.stop(kill=True)
            detail = (self.data_dir / "stderr.log").read_text(errors="replace").strip().splitlines()
            raise LaunchError(f"the reference service did not start: {detail[-1] if detail else line or 'no output'}")
        self.profile_path = Path(line.split(" ", 1)[1])
        profile = profiles.load(self.profile_path)
        self.port = profile.target.port
        if profile.target.listeners:
            self.side_door_port = int(profile.target.listeners[0].rsplit(":", 1)[1])
        if profile.federation is not None:
            self.s2s_port = profile.federation.port
        return dataclasses.replace(profile, embedded=True)

    def _read_line(self, timeout: float) -> str:
        assert self.process is not None and self.process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        buffer = b""
        try:
            while b"\n" not in buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    return ""
                chunk = os.read(self.process.stdout.fileno(), 4096)
                if not chunk:
                    break
                buffer += chunk
        finally:
            selector.close()
        return buffer.decode(errors="replace").strip()

    def stop(self, kill: bool = False, timeout: float = 10.0) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            self.process = None
            return
        try:
            process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
        finally:
            for pipe in (process.stdin, process.stdout):
                if pipe:
                    pipe.close()
            self.process = None

    def restart(self, kill: bool = False) -> profiles.Profile:
        self.stop(kill=kill)
        return self.start()

