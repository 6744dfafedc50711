"""The shim runner (conformance/shim/) against a scripted shim: every exit code of the contract, and a shim that
hangs, floods its output or prints what is not an event gives a bounded run and a plain result, never a raise."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

from conformance.shim.runner import MAX_LINES, run

SHIM = [sys.executable, str(Path(__file__).resolve().parent / "fake_shim.py")]
REQUEST = {"host": "127.0.0.1", "port": 1, "to": "bob@iut.test", "body": ""}


def shim(action: str, mode: str = "", timeout: float = 10.0):
    return asyncio.run(run(SHIM, action, {**REQUEST, "body": mode}, timeout=timeout))


def test_capabilities_are_the_preflight():
    result = shim("capabilities")
    assert result.done and result.of("capabilities")[0]["actions"] == ["login", "send-message"]


@pytest.mark.parametrize("mode, done, refused, unsupported, broken", [
    ("done", True, False, False, False),
    ("refuse", False, True, False, False),
    ("unsupported", False, False, True, False),
    ("crash", False, False, False, True),
])
def test_exit_codes_say_what_became_of_the_action(mode, done, refused, unsupported, broken):
    result = shim("send-message", mode)
    assert (result.done, result.refused, result.unsupported, result.broken) == (done, refused, unsupported, broken)
    if refused:
        assert result.of("failed")[0]["reason"] == "certificate verify failed"


def test_a_hanging_shim_is_killed_at_its_deadline():
    started = time.monotonic()
    result = shim("send-message", "hang", timeout=1.0)
    assert result.timed_out and result.broken and result.of("connected")
    assert time.monotonic() - started < 5 and "killed at its deadline" in str(result)


def test_a_flood_of_events_is_cut_and_counted():
    result = shim("send-message", "flood", timeout=30)
    assert result.done and len(result.events) == MAX_LINES and "dropped" in result.cut


def test_lines_that_are_not_events_are_kept_apart_and_a_long_one_is_dropped():
    result = shim("send-message", "garbage")
    assert [e["event"] for e in result.events] == ["unparsed", "unparsed", "closed"]
    assert result.events[0]["line"] == "not json at all" and "over" in result.cut
    assert "error details" in result.stderr


def test_a_shim_that_cannot_start_is_a_result_not_a_raise():
    result = asyncio.run(run(["/nonexistent/shim"], "login", REQUEST, timeout=5))
    assert result.broken and result.exit_code == 127 and "cannot start" in result.stderr


def test_the_documented_contract_is_the_coded_one():
    from conformance.shim.contract import ACTIONS, EXIT_CODES, EVENTS, REQUEST_FIELDS
    doc = (Path(__file__).resolve().parent.parent / "docs" / "shim.md").read_text()
    assert all(f"`{action}`" in doc for action in ACTIONS)
    assert all(f"`{field}`" in doc for field in REQUEST_FIELDS)
    assert all(f"`{event}`" in doc for event in EVENTS if event != "capabilities")
    assert all(f"| {code} |" in doc for code in EXIT_CODES)
