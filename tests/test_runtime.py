"""The runtime bounds a whole test by timeouts.case, not only each of its steps."""

from __future__ import annotations

import time

import anyio.from_thread
import pytest

from conformance.adapters.xmpp.runtime import Runtime
from conformance.profile import parse
from conformance.transport.wire import Recorder

PROFILE = {"target": {"name": "t", "domain": "t.test"}, "timeouts": {"case": 0.5},
           **{"accounts": {a: {"password": "x"} for a in ("alice", "bob", "mallory")}}}


def test_no_step_starts_once_the_case_time_is_spent(tmp_path):
    profile = parse(PROFILE, tmp_path / "p.toml")
    with anyio.from_thread.start_blocking_portal() as portal:
        rt = Runtime(portal=portal, profile=profile, address=("127.0.0.1", 1), recorder=Recorder(), case_id="X")

        async def quick():
            return 42

        async def slow():
            await anyio.sleep(5)

        assert rt.call(quick) == 42
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="no progress within"):
            rt.call(slow, timeout=10)  # a step's own bound is cut to what is left of the case's
        assert time.monotonic() - started < 1.0
        with pytest.raises(TimeoutError, match="time bound .* is spent"):
            rt.call(quick)
