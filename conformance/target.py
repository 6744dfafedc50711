"""The implementation under test as the harness holds it: its profile, and the one control the suite needs from it
(restarting, for the cases that check that permissions survive a restart)."""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import time

from conformance.profile import Profile
from conformance.reference.launcher import ReferenceProcess
from conformance.verdicts import SetupFailed, Unsupported


@dataclasses.dataclass
class Iut:
    profile: Profile
    address: tuple[str, int]
    reference: ReferenceProcess | None = None  # set when the harness started the embedded reference itself

    def restarts(self, *, kill: bool = False) -> None:
        """Restart the IUT, gracefully or by SIGKILL, and wait until it accepts connections again."""
        if self.reference is not None:
            self.reference.restart(kill=kill)
            self._wait_listening()
            return
        command = self.profile.control.kill_restart if kill else self.profile.control.restart
        if not command:
            key = "control.kill_restart" if kill else "control.restart"
            raise Unsupported(f"the profile gives no '{key}' command, so the harness cannot restart the IUT")
        try:
            done = subprocess.run(command, shell=True, capture_output=True, timeout=120)
        except subprocess.TimeoutExpired:
            raise SetupFailed(f"'{command}' did not finish within 120s") from None
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()
            raise SetupFailed(f"'{command}' exited {done.returncode}: {tail[-1] if tail else ''}")
        self._wait_listening()

    def _wait_listening(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(self.address, timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SetupFailed(f"the IUT did not listen on {self.address[0]}:{self.address[1]} within {timeout:g}s "
                          f"of the restart")
