"""Where the harness connects: the profile's host and port, else the domain's SRV record (RFC 6120 §3.2).
No real DNS is asked: the resolver is replaced, as the project's own tests use loopback only."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import dns.exception
import dns.resolver

from conformance.adapters.xmpp.runtime import resolve
from conformance.profile import Account, Control, Profile, Target, Timeouts


def profile(**target) -> Profile:
    accounts = {a: Account(a, a, "x") for a in ("alice", "bob", "mallory")}
    return Profile(Path("p.toml"), Target(name="t", domain="example.test", **target), accounts, Timeouts(), Control())


@dataclasses.dataclass
class Srv:
    priority: int
    weight: int
    port: int
    target: str


def test_host_and_port_from_the_profile_win(monkeypatch):
    monkeypatch.setattr(dns.resolver, "resolve", lambda *a, **k: (_ for _ in ()).throw(AssertionError("no DNS")))
    assert resolve(profile(host="127.0.0.1", port=15222), 1) == ("127.0.0.1", 15222)


def test_without_a_host_the_srv_record_with_the_best_priority_is_used(monkeypatch):
    asked = []

    def fake(name, rdtype, lifetime):
        asked.append((name, rdtype))
        return [Srv(20, 0, 5999, "backup.example.test."), Srv(10, 5, 15222, "xmpp.example.test.")]
    monkeypatch.setattr(dns.resolver, "resolve", fake)
    assert resolve(profile(), 1) == ("xmpp.example.test", 15222)
    assert asked == [("_xmpp-client._tcp.example.test", "SRV")]


def test_without_srv_the_domain_itself_on_the_default_port(monkeypatch):
    def fake(name, rdtype, lifetime):
        raise dns.resolver.NXDOMAIN()
    monkeypatch.setattr(dns.resolver, "resolve", fake)
    assert resolve(profile(), 1) == ("example.test", 5222)
    monkeypatch.setattr(dns.resolver, "resolve", lambda *a, **k: (_ for _ in ()).throw(dns.exception.Timeout()))
    assert resolve(profile(port=5223), 1) == ("example.test", 5223)
