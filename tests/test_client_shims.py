"""The shims of the real client libraries keep the contract: capabilities, and a login to a genuine service that
ends cleanly when standard input does. Skipped where a library is not installed (fixtures/<library>/install)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from conformance import pki
from conformance.shim import runner
from conformance.shim.contract import ACTIONS, FEATURES

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
TARGETS = Path(os.environ.get("IMPP_TARGETS", "/tmp/impp-targets"))
SHIMS = {"slixmpp": TARGETS / "slixmpp" / "venv" / "bin" / "python",
         "xmpp-js": TARGETS / "xmpp-js" / "node_modules" / "@xmpp" / "client"}


def shim(library: str) -> list[str]:
    if not SHIMS[library].exists():
        pytest.skip(f"{library} is not installed (fixtures/{library}/install)")
    return [str(FIXTURES / library / "shim")]




@pytest.mark.parametrize("library", list(SHIMS))
def test_capabilities_name_only_contract_actions_and_features(library):
    result = asyncio.run(runner.run(shim(library), "capabilities", {}, timeout=30))
    offered = result.of("capabilities")[0]
    assert result.done and set(offered["actions"]) <= ACTIONS.keys() and "login" in offered["actions"]
    assert set(offered.get("features") or []) <= FEATURES.keys()


@pytest.mark.parametrize("library", list(SHIMS))
def test_a_login_binds_and_ends_when_standard_input_does(library, reference_service):
    target, account = reference_service.target, reference_service.account("bob")
    request = {"host": "127.0.0.1", "port": target.port, "tls": "starttls", "domain": target.domain,
               "ca_file": str(target.ca_file), "jid": f"bob@{target.domain}",
               "password": account.password, "resource": f"shim-{library}", "to": "", "body": "", "status": "",
               "linger": 20, "receipt": False}

    async def login():
        running = await runner.start(shim(library), "login", request)
        bound = await running.wait_for(lambda e: e.get("event") in ("bound", "failed"), 20)
        return bound, await running.finish(20)
    bound, result = asyncio.run(login())
    assert bound is not None and bound["event"] == "bound", result.events
    assert bound["jid"].startswith(f"bob@{target.domain}/")
    assert result.done, f"{result}: {result.stderr[-500:]}"


@pytest.mark.parametrize("library", list(SHIMS))
def test_the_request_ca_file_is_the_only_trust_anchor(library, reference_service, tmp_path):
    """A service whose certificate the request's CA did not issue: the library refuses it (the system store, and
    whatever NODE_EXTRA_CA_CERTS or SSL_CERT_FILE name, play no part), before authenticating."""
    command = shim(library)
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(pki.make_ca().cert_pem.bytes())
    target, account = reference_service.target, reference_service.account("bob")
    request = {"host": "127.0.0.1", "port": target.port, "tls": "starttls", "domain": target.domain,
               "ca_file": str(other_ca), "jid": f"bob@{target.domain}", "password": account.password,
               "resource": f"untrusted-{library}", "to": "", "body": "", "status": "", "linger": 20,
               "receipt": False}

    async def login():
        running = await runner.start(command, "login", request)
        first = await running.wait_for(lambda e: e.get("event") in ("bound", "failed"), 20)
        return first, await running.finish(20)
    first, result = asyncio.run(login())
    assert first is not None and first["event"] == "failed", result.events
    assert "certificate" in first["reason"].lower(), first
    assert result.refused and not result.of("authenticated") and not result.of("bound"), f"{result}: {result.events}"
