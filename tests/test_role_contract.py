"""The suite speaks only the verbs of the role contract, and the XMPP adapter implements every one of them."""

from __future__ import annotations

import ast
from pathlib import Path

from conformance.adapters.xmpp.party import XmppParty
from conformance.adapters.xmpp.unauthenticated import Unauthenticated, UnauthenticatedStream
from conformance.attacker.on_path import OnPathAttacker
from conformance.adapters.xmpp.anonymous import AnonymousSession
from conformance.adapters.xmpp.receiving_server import ReceivingServerRole
from conformance.adapters.xmpp.remote_server import PeerStream, RemoteServer
from conformance.adapters.xmpp.load import ConnectionLoad, FetchLoad, Flood, SubscriptionSpam
from conformance.roles.contract import (ANONYMOUS, ATTACKER, FLOOD, LOAD, PARTY, PEER_STREAM, RECEIVING_SERVER,
                                        REMOTE_SERVER, STREAM, UNAUTHENTICATED)

SUITE = Path(__file__).resolve().parent.parent / "conformance" / "suite"
PARTIES = {"alice", "bob", "mallory", "party", "reader"}


def _verbs_used() -> tuple[set[str], set[str], set[str]]:
    """Attributes the suite takes from parties, from `unauthenticated`, and from the streams it hands out."""
    on_parties, on_factory, on_streams = set(), set(), set()
    for module in SUITE.glob("test_*.py"):
        tree = ast.parse(module.read_text())
        streams = {t.id for node in ast.walk(tree) if isinstance(node, ast.Assign)
                   and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Attribute)
                   and isinstance(node.value.func.value, ast.Name) and node.value.func.value.id == "unauthenticated"
                   and node.value.func.attr.startswith("connect")  # the verbs that hand out streams
                   for t in node.targets if isinstance(t, ast.Name)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                owner = node.value.id
                if owner in PARTIES:
                    on_parties.add(node.attr)
                elif owner == "unauthenticated":
                    on_factory.add(node.attr)
                elif owner in streams:
                    on_streams.add(node.attr)
    return on_parties, on_factory, on_streams


def test_the_suite_speaks_only_contract_verbs():
    on_parties, on_factory, on_streams = _verbs_used()
    assert on_parties - PARTY.keys() - {"name"} == set()
    assert on_factory <= UNAUTHENTICATED.keys()
    assert on_streams <= STREAM.keys()
    assert len(on_parties) > 30 and on_streams


def test_the_xmpp_adapter_implements_the_whole_contract():
    assert [v for v in PARTY if not hasattr(XmppParty, v)] == []
    assert [v for v in UNAUTHENTICATED if not hasattr(Unauthenticated, v)] == []
    assert [v for v in STREAM if not hasattr(UnauthenticatedStream, v)] == []


def test_the_suite_speaks_to_the_attacker_in_contract_verbs_it_implements():
    used = {node.attr for module in SUITE.glob("test_*.py") for node in ast.walk(ast.parse(module.read_text()))
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "mitm"}
    assert used and used <= ATTACKER.keys()
    assert [v for v in ATTACKER if not hasattr(OnPathAttacker, v)] == []


def test_anonymous_sessions_speak_contract_verbs_they_implement():
    used = set()
    for module in SUITE.glob("test_*.py"):
        tree = ast.parse(module.read_text())
        names = {t.id for node in ast.walk(tree) if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                 and isinstance(node.value.func, ast.Attribute) and node.value.func.attr == "logs_in_anonymously"
                 for t in node.targets if isinstance(t, ast.Name)}
        used |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                 and isinstance(node.value, ast.Name) and node.value.id in names}
    assert used and used <= ANONYMOUS.keys()
    assert [v for v in ANONYMOUS if not hasattr(AnonymousSession, v)] == []


def test_the_remote_server_and_its_streams_speak_contract_verbs_they_implement():
    """Per function: names bound to `remote_server.connects(...)` are peer streams, to `awaits_the_iut(...)`
    receiving servers; each may be used only with the verbs of its own contract table."""
    kinds = {"connects": PEER_STREAM, "awaits_the_iut": RECEIVING_SERVER}
    on_server, used = set(), {"connects": set(), "awaits_the_iut": set()}
    for module in SUITE.glob("test_*.py"):
        for function in ast.walk(ast.parse(module.read_text())):
            if not isinstance(function, ast.FunctionDef):
                continue
            bound = {t.id: node.value.func.attr for node in ast.walk(function) if isinstance(node, ast.Assign)
                     and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Attribute)
                     and node.value.func.attr in kinds for t in node.targets if isinstance(t, ast.Name)}
            for node in ast.walk(function):
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                    if node.value.id == "remote_server":
                        on_server.add(node.attr)
                    elif node.value.id in bound:
                        used[bound[node.value.id]].add(node.attr)
    assert on_server and on_server <= REMOTE_SERVER.keys()
    for verb, table in kinds.items():
        assert used[verb] and used[verb] <= table.keys(), (verb, used[verb] - table.keys())
    assert [v for v in REMOTE_SERVER if not hasattr(RemoteServer, v)] == []
    assert [v for v in PEER_STREAM if not hasattr(PeerStream, v) and v not in ("domain", "login")] == []
    assert [v for v in RECEIVING_SERVER if not hasattr(ReceivingServerRole, v)] == []


def test_floods_speak_contract_verbs_they_implement():
    """`flood.<verb>` and, per function, the names a `with flood.<verb>(...) as name` binds."""
    on_flood, on_loads = set(), set()
    for module in SUITE.glob("test_*.py"):
        for function in ast.walk(ast.parse(module.read_text())):
            if not isinstance(function, ast.FunctionDef):
                continue
            loads = {item.optional_vars.id for node in ast.walk(function) if isinstance(node, ast.With)
                     for item in node.items if isinstance(item.optional_vars, ast.Name)
                     and isinstance(item.context_expr, ast.Call) and isinstance(item.context_expr.func, ast.Attribute)
                     and isinstance(item.context_expr.func.value, ast.Name)
                     and item.context_expr.func.value.id == "flood"}
            for node in ast.walk(function):
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                    if node.value.id == "flood":
                        on_flood.add(node.attr)
                    elif node.value.id in loads:
                        on_loads.add(node.attr)
    assert on_flood and on_flood <= FLOOD.keys(), on_flood - FLOOD.keys()
    assert on_loads and on_loads <= LOAD.keys(), on_loads - LOAD.keys()
    assert [v for v in FLOOD if not hasattr(Flood, v)] == []
    assert [v for v in LOAD if not any(hasattr(k, v) for k in (FetchLoad, ConnectionLoad, SubscriptionSpam))] == []


def test_the_client_cases_speak_contract_verbs_the_adapter_implements():
    """suite/clients/: `client`, `service`, `impostor`, the parties `contact` and `stranger`, and per function the
    names bound to `client.starts(...)` (running clients) and to `logs_in(...)`/`ends()` (finished runs)."""
    from conformance.adapters.xmpp.client_under_test import ClientRun, ClientUnderTest, RunningClient
    from conformance.adapters.xmpp.impostor import Impostor
    from conformance.adapters.xmpp.stand_in import StandIn
    from conformance.roles.contract import CLIENT, CLIENT_RUN, IMPOSTOR, RUNNING_CLIENT, SERVICE
    tables = {"client": CLIENT, "service": SERVICE, "impostor": IMPOSTOR, "contact": PARTY, "stranger": PARTY,
              "running": RUNNING_CLIENT, "run": CLIENT_RUN}
    used: dict[str, set[str]] = {name: set() for name in tables}
    for module in (SUITE / "clients").glob("test_*.py"):
        for function in ast.walk(ast.parse(module.read_text())):
            if not isinstance(function, ast.FunctionDef):
                continue
            bound = {}
            for node in ast.walk(function):
                if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and \
                        isinstance(node.value.func, ast.Attribute):
                    verb = node.value.func.attr
                    role = "running" if verb == "starts" else "run" if verb in ("logs_in", "ends") else None
                    for target in node.targets:
                        if role and isinstance(target, ast.Name):
                            bound[target.id] = role
            for node in ast.walk(function):
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                    role = bound.get(node.value.id) or (node.value.id if node.value.id in tables else None)
                    if role:
                        used[role].add(node.attr)
    for role, table in tables.items():
        assert used[role], f"no client case uses {role}"
        assert used[role] <= table.keys(), (role, used[role] - table.keys())
    implementations = {"client": ClientUnderTest, "service": StandIn, "impostor": Impostor, "contact": XmppParty,
                       "running": RunningClient, "run": ClientRun}
    for role, cls in implementations.items():
        assert [v for v in tables[role] if not hasattr(cls, v)] == [], role
