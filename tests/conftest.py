"""Fixtures of the project's own tests. Everything here runs on loopback only."""

from __future__ import annotations

import pytest

from conformance.reference.flaws import FLAWS
from conformance.reference_client.flaws import FLAWS as CLIENT_FLAWS

from conformance.reference.launcher import ReferenceProcess
from suite_runs import run_all

_MATRIX: list[str] = []


@pytest.fixture(scope="session")
def reference_runs(tmp_path_factory) -> dict:
    """The suite against the clean reference service and client (key None) and against each flaw of either (key:
    flaw name)."""
    return run_all(tmp_path_factory.mktemp("runs"), [None, *FLAWS, *CLIENT_FLAWS])


def remember_matrix(lines: list[str]) -> None:
    _MATRIX[:] = lines


def pytest_terminal_summary(terminalreporter) -> None:
    if _MATRIX:
        terminalreporter.section("kill matrix (flaw x case: F fail, W warn, . unchanged)")
        for line in _MATRIX:
            terminalreporter.write_line(line)


@pytest.fixture(scope="module")
def reference_service(tmp_path_factory):
    """A clean reference service in a child process, for tests that need a genuine XMPP service to talk to (the
    reference client's, the client libraries' shims); its profile names the accounts and the CA."""
    process = ReferenceProcess(tmp_path_factory.mktemp("reference-service"))
    profile = process.start()
    yield profile
    process.stop()
