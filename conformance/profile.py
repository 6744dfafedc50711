"""Profiles: one TOML file per target, naming the IUT, how to reach it, its accounts and the timers.

Loading is strict: an unknown key, a missing account or a wrong type is a `ProfileError` whose one-line message
names the file and the field, so a typo never silently changes what is tested.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from pathlib import Path
from typing import Any

from conformance import tomlfile

REQUIRED_ACCOUNTS = ("alice", "bob", "mallory")
PROTOCOLS = ("xmpp",)
KINDS = ("service", "client")  # what the IUT is: a service the harness logs in to, or a client it serves


class ProfileError(Exception):
    """A profile that cannot be used; the message is one line naming file and field."""


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    domain: str
    protocol: str = "xmpp"
    host: str | None = None
    port: int | None = None
    ca_file: Path | None = None
    tls: str = "starttls"
    baseline: Path | None = None  # the target's known deviations (see conformance/baseline.py)
    anonymous_domain: str | None = None  # where the service offers SASL ANONYMOUS (XEP-0175), if not on `domain`
    # every other way in for clients: "tcp://host:port" (direct TLS or legacy c2s ports), "ws://…", "http://…"
    # (WebSocket, BOSH); IMPP-5.7-1 tries each without TLS
    listeners: tuple[str, ...] = ()
    kind: str = "service"  # "client": the IUT is a client library driven through a shim ([client])


@dataclasses.dataclass(frozen=True)
class Client:
    """A client IUT: the shim command the harness runs once per action (docs/shim.md)."""

    command: tuple[str, ...]
    timeout: float = 30.0  # the most one shim run may take, from start to exit


@dataclasses.dataclass(frozen=True)
class Account:
    key: str
    username: str
    password: str = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True)
class Timeouts:
    positive: float = 5.0  # T_POS: an expected delivery must arrive within this
    close: float = 10.0  # T_CLOSE: the IUT closes a violating stream within this
    handshake: float = 10.0  # T_HS: TCP connect plus TLS handshake
    step: float = 10.0  # any single request/answer exchange
    negative: float = 5.0  # T_NEG: how long to watch for what must not arrive where no ordering fence exists
    fallback: float = 60.0  # T_FALLBACK: how long a client IUT is watched retrying after its TLS failed
    case: float = 120.0  # hard bound on one test


@dataclasses.dataclass(frozen=True)
class Control:
    restart: str | None = None  # shell command restarting the IUT gracefully
    kill_restart: str | None = None  # shell command killing (SIGKILL) and restarting the IUT
    start: str | None = None  # shell command (run in the profile's directory) starting the IUT; prints a profile path
    stop: str | None = None  # shell command stopping what `start` started


@dataclasses.dataclass(frozen=True)
class Federation:
    """How the harness meets the IUT as another domain's server (server-to-server, RFC 6120 §2.5, XEP-0178)."""

    port: int  # the IUT's server-to-server port, on the target's host
    remote_domain: str  # the domain the harness plays as an honest peer
    # PEM files the harness presents, issued by a CA the IUT trusts for peers: <remote_domain>.crt/.key (valid),
    # evil.test.crt/.key (valid, for another domain), <remote_domain>-expired.crt/.key; the self-signed and rogue-CA
    # certificates the harness makes itself
    certificates: Path
    # where the harness accepts the IUT's own server-to-server connections to remote_domain (on the target's host);
    # the IUT must be configured to reach remote_domain's server there. Absent: the outbound cases are UNSUPPORTED
    listen_port: int | None = None
    # where the harness answers DNS for its own domains while it listens (SRV to listen_port), for an IUT whose
    # resolver is pointed there (ejabberd's inetrc); absent: the IUT finds remote_domain some other way
    dns_port: int | None = None


@dataclasses.dataclass(frozen=True)
class Load:
    """Bounds of the denial-of-service cases (5.3). Every flood stops by itself at the first of `duration` and its
    count, is aimed at the target only, and comes from `source` (when set) so that the legitimate parties, who
    connect from the harness's usual address, are not the flooder."""

    rate: float = 200.0  # fetches per second the fetch flood aims at (IMPP-5.3-1)
    duration: float = 3.0  # seconds each flood lasts
    connections: int = 300  # pre-authentication connections the connection flood holds at most (IMPP-5.3-2)
    subscriptions: int = 200  # subscription requests from distinct addresses of another domain (IMPP-5.3-4)
    latency: float = 2.0  # what a legitimate party may wait during a flood (delivery, login, round trip)
    source: str | None = None  # local address the floods come from, e.g. "127.0.0.2" for a loopback target


@dataclasses.dataclass(frozen=True)
class Abuse:
    """Bounds of the parser-abuse case (IMPP-5.3-3): how much malformed input is drawn, how fast, and how big."""

    examples: int = 20  # malformed samples hypothesis draws per stream stage, each sent on a fresh stream
    seconds: float = 8.0  # time budget per stage for sending them and shrinking a failing one
    seed: int = 0  # the samples are a function of this seed (and the suite's version): same seed, same samples
    oversized_bytes: int = 1024 * 1024  # the oversized stanza, where the IUT advertises no limit (XEP-0478)


ABUSE_BOUNDS = {"examples": (1, 10_000), "seconds": (0.1, 3600), "seed": (0, 2**32 - 1),
                "oversized_bytes": (10_000, 64 * 1024 * 1024)}

LOAD_LIMITS = {"rate": 5000, "duration": 60, "connections": 5000, "subscriptions": 5000, "latency": 60}


@dataclasses.dataclass(frozen=True)
class Profile:
    path: Path
    target: Target
    accounts: dict[str, Account]
    timeouts: Timeouts
    control: Control
    federation: Federation | None = None  # absent: the server-to-server cases are UNSUPPORTED
    load: Load = Load()
    abuse: Abuse = Abuse()
    embedded: bool = False  # the harness started this target itself (the reference service)
    client: Client | None = None  # set for a client IUT (target.kind = "client")

    def account(self, key: str) -> Account:
        return self.accounts[key]


_FIELDS: dict[str, dict[str, tuple[type, ...]]] = {
    "target": {"name": (str,), "domain": (str,), "protocol": (str,), "host": (str,), "port": (int,),
               "ca_file": (str,), "tls": (str,), "baseline": (str,), "anonymous_domain": (str,),
               "listeners": (list,), "kind": (str,)},
    "client": {"command": (list, str), "timeout": (int, float)},
    "timeouts": {f.name: (int, float) for f in dataclasses.fields(Timeouts)},
    "control": {"restart": (str,), "kill_restart": (str,), "start": (str,), "stop": (str,)},
    "federation": {"port": (int,), "remote_domain": (str,), "certificates": (str,), "listen_port": (int,),
                   "dns_port": (int,)},
    "load": {"rate": (int, float), "duration": (int, float), "connections": (int,), "subscriptions": (int,),
             "latency": (int, float), "source": (str,)},
    "abuse": {"examples": (int,), "seconds": (int, float), "seed": (int,), "oversized_bytes": (int,)},
}
_ACCOUNT_FIELDS = {"username": (str,), "password": (str,), "password_env": (str,)}
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", list: "a list"}
LISTENER_SCHEMES = ("tcp", "ws", "wss", "http", "https")
SECTIONS = ("target", "accounts", "timeouts", "control", "federation", "load", "abuse", "client")
CLIENT_SECTIONS = ("target", "timeouts", "client")  # a client IUT is served by the harness: no accounts or servers


def _check_table(path: Path, section: str, table: Any, fields: dict[str, tuple[type, ...]]) -> dict:
    if not isinstance(table, dict):
        raise ProfileError(f"{path}: [{section}] must be a table")
    for key, value in table.items():
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ProfileError(f"{path}: unknown key '{section}.{key}' (known: {known})")
        types = fields[key]
        if isinstance(value, bool) or not isinstance(value, types):
            raise ProfileError(f"{path}: '{section}.{key}' must be {_TYPE_NAMES[types[0]]}, "
                               f"not {type(value).__name__}")
    return table


def load(path: str | Path, *, secrets: bool = True) -> Profile:
    """`secrets=False` checks a profile whose passwords and files (certificates) only exist once its target has
    been started."""
    path = Path(path)
    data = tomlfile.read(path, "profile", ProfileError)
    return parse(data, path, secrets=secrets)


def parse(data: dict, path: Path, *, embedded: bool = False, secrets: bool = True) -> Profile:
    for key in data:
        if key not in SECTIONS:
            raise ProfileError(f"{path}: unknown section [{key}] (known: {', '.join(sorted(SECTIONS))})")
    if "target" not in data:
        raise ProfileError(f"{path}: missing section [target]")
    target_raw = _check_table(path, "target", data["target"], _FIELDS["target"])
    kind = target_raw.get("kind", "service")
    if kind not in KINDS:
        raise ProfileError(f"{path}: 'target.kind' must be one of {', '.join(KINDS)}, not {kind!r}")
    if kind == "client":
        return _client_profile(data, path, target_raw)
    if "client" in data:
        raise ProfileError(f"{path}: [client] describes a client IUT; set target.kind = \"client\" or drop it")
    for required in ("name", "domain"):
        if required not in target_raw:
            raise ProfileError(f"{path}: missing key 'target.{required}'")
    protocol = target_raw.get("protocol", "xmpp")
    if protocol not in PROTOCOLS:
        raise ProfileError(f"{path}: 'target.protocol' must be one of {', '.join(PROTOCOLS)}, not {protocol!r}")
    tls = target_raw.get("tls", "starttls")
    if tls not in ("starttls", "direct"):
        raise ProfileError(f"{path}: 'target.tls' must be 'starttls' or 'direct', not {tls!r}")
    port = target_raw.get("port")
    if port is not None and not 0 < port < 65536:
        raise ProfileError(f"{path}: 'target.port' must be between 1 and 65535")
    ca_file = None
    if "ca_file" in target_raw:
        ca_file = (path.parent / target_raw["ca_file"]).resolve()
        if secrets and not ca_file.is_file():
            raise ProfileError(f"{path}: 'target.ca_file' {ca_file} does not exist")
    baseline = None
    if "baseline" in target_raw:
        baseline = (path.parent / target_raw["baseline"]).resolve()
        if not baseline.is_file():
            raise ProfileError(f"{path}: 'target.baseline' {baseline} does not exist")
    listeners = target_raw.get("listeners", [])
    for listener in listeners:
        if not isinstance(listener, str) or listener.split("://", 1)[0] not in LISTENER_SCHEMES or "://" not in listener:
            raise ProfileError(f"{path}: 'target.listeners' entries must be strings like 'tcp://host:port', "
                               f"'ws://host:port/path' or 'http://host:port/path', not {listener!r}")
    target = Target(name=target_raw["name"], domain=target_raw["domain"].lower().rstrip("."), protocol=protocol,
                    host=target_raw.get("host"), port=port, ca_file=ca_file, tls=tls, baseline=baseline,
                    anonymous_domain=(target_raw.get("anonymous_domain") or "").lower().rstrip(".") or None,
                    listeners=tuple(listeners))

    accounts_raw = data.get("accounts", {})
    if not isinstance(accounts_raw, dict):
        raise ProfileError(f"{path}: [accounts] must be a table of [accounts.<name>] tables")
    accounts: dict[str, Account] = {}
    for key, raw in accounts_raw.items():
        raw = _check_table(path, f"accounts.{key}", raw, _ACCOUNT_FIELDS)
        if "password" in raw and "password_env" in raw:
            raise ProfileError(f"{path}: 'accounts.{key}' has both password and password_env; keep one")
        if "password_env" in raw:
            password = os.environ.get(raw["password_env"], None if secrets else "")
            if password is None:
                raise ProfileError(f"{path}: 'accounts.{key}.password_env' names {raw['password_env']}, "
                                   f"which is not set in the environment")
        elif "password" in raw:
            password = raw["password"]
        else:
            raise ProfileError(f"{path}: missing key 'accounts.{key}.password' (or password_env)")
        accounts[key] = Account(key=key, username=raw.get("username", key), password=password)
    missing = [a for a in REQUIRED_ACCOUNTS if a not in accounts]
    if missing:
        raise ProfileError(f"{path}: missing account(s) {', '.join(f'[accounts.{m}]' for m in missing)}; "
                           f"the suite needs {', '.join(REQUIRED_ACCOUNTS)}")
    usernames = [a.username.lower() for a in accounts.values()]
    if len(set(usernames)) != len(usernames):
        raise ProfileError(f"{path}: two accounts share a username; each role needs its own account")

    timeouts_raw = _check_table(path, "timeouts", data.get("timeouts", {}), _FIELDS["timeouts"])
    for key, value in timeouts_raw.items():
        if not 0 < value <= 3600:
            raise ProfileError(f"{path}: 'timeouts.{key}' must be between 0 and 3600 seconds")
    control_raw = _check_table(path, "control", data.get("control", {}), _FIELDS["control"])
    return Profile(path=path, target=target, accounts=accounts,
                   timeouts=Timeouts(**{k: float(v) for k, v in timeouts_raw.items()}),
                   control=Control(**control_raw), embedded=embedded,
                   federation=_federation(path, data.get("federation"), secrets),
                   load=_load(path, data.get("load", {})), abuse=_abuse(path, data.get("abuse", {})))


def _client_profile(data: dict, path: Path, target_raw: dict) -> Profile:
    """A client IUT: its name, protocol and shim. The harness plays the service (domain iut.test, its own accounts
    and certificates), so a client profile names none of those."""
    for key in data:
        if key not in CLIENT_SECTIONS:
            raise ProfileError(f"{path}: [{key}] does not apply to a client IUT (target.kind = \"client\"); "
                               f"a client profile has {', '.join(f'[{s}]' for s in CLIENT_SECTIONS)}")
    for key in target_raw:
        if key not in ("name", "kind", "protocol", "baseline"):
            raise ProfileError(f"{path}: 'target.{key}' does not apply to a client IUT (the harness is its service)")
    if "name" not in target_raw:
        raise ProfileError(f"{path}: missing key 'target.name'")
    protocol = target_raw.get("protocol", "xmpp")
    if protocol not in PROTOCOLS:
        raise ProfileError(f"{path}: 'target.protocol' must be one of {', '.join(PROTOCOLS)}, not {protocol!r}")
    baseline = None
    if "baseline" in target_raw:
        baseline = (path.parent / target_raw["baseline"]).resolve()
        if not baseline.is_file():
            raise ProfileError(f"{path}: 'target.baseline' {baseline} does not exist")
    if "client" not in data:
        raise ProfileError(f"{path}: missing section [client] (the shim command that drives the client)")
    raw = _check_table(path, "client", data["client"], _FIELDS["client"])
    command = raw.get("command")
    if isinstance(command, str):
        command = [command]
    if not command or not all(isinstance(part, str) and part for part in command):
        raise ProfileError(f"{path}: 'client.command' must be a non-empty list of strings (the shim and its "
                           f"arguments)")
    program = command[0]
    if "/" in program and not Path(program).is_absolute():  # a path next to the profile, not a name on PATH
        command = [str((path.parent / program).resolve()), *command[1:]]
    timeout = float(raw.get("timeout", Client.timeout))
    if not 0 < timeout <= 600:
        raise ProfileError(f"{path}: 'client.timeout' must be between 0 and 600 seconds")
    timeouts_raw = _check_table(path, "timeouts", data.get("timeouts", {}), _FIELDS["timeouts"])
    for key, value in timeouts_raw.items():
        if not 0 < value <= 3600:
            raise ProfileError(f"{path}: 'timeouts.{key}' must be between 0 and 3600 seconds")
    target = Target(name=target_raw["name"], domain="iut.test", protocol=protocol, baseline=baseline, kind="client")
    return Profile(path=path, target=target, accounts={},
                   timeouts=Timeouts(**{k: float(v) for k, v in timeouts_raw.items()}), control=Control(),
                   client=Client(command=tuple(command), timeout=timeout))


def _abuse(path: Path, raw: Any) -> Abuse:
    raw = _check_table(path, "abuse", raw, _FIELDS["abuse"])
    for key, (low, high) in ABUSE_BOUNDS.items():
        if key in raw and not low <= raw[key] <= high:
            raise ProfileError(f"{path}: 'abuse.{key}' must be between {low:g} and {high:g} (abuse stays bounded)")
    return Abuse(**{k: float(v) if k == "seconds" else v for k, v in raw.items()})


def _load(path: Path, raw: Any) -> Load:
    raw = _check_table(path, "load", raw, _FIELDS["load"])
    for key, limit in LOAD_LIMITS.items():
        if key in raw and not 0 < raw[key] <= limit:
            raise ProfileError(f"{path}: 'load.{key}' must be above 0 and at most {limit} (floods stay bounded)")
    if "source" in raw:
        try:
            ipaddress.ip_address(raw["source"])
        except ValueError:
            raise ProfileError(f"{path}: 'load.source' must be an IP address of this machine, "
                               f"not {raw['source']!r}") from None
    return Load(**{k: float(v) if isinstance(Load.__dataclass_fields__[k].default, float) else v
                   for k, v in raw.items()})


def _federation(path: Path, raw: Any, files_exist: bool) -> Federation | None:
    if raw is None:
        return None
    raw = _check_table(path, "federation", raw, _FIELDS["federation"])
    for required in ("port", "remote_domain", "certificates"):
        if required not in raw:
            raise ProfileError(f"{path}: missing key 'federation.{required}'")
    if not 0 < raw["port"] < 65536:
        raise ProfileError(f"{path}: 'federation.port' must be between 1 and 65535")
    certificates = (path.parent / raw["certificates"]).resolve()
    if files_exist and not certificates.is_dir():
        raise ProfileError(f"{path}: 'federation.certificates' {certificates} is not a directory")
    for key in ("listen_port", "dns_port"):
        if key in raw and not 0 < raw[key] < 65536:
            raise ProfileError(f"{path}: 'federation.{key}' must be between 1 and 65535")
    return Federation(port=raw["port"], remote_domain=raw["remote_domain"].lower().rstrip("."),
                      certificates=certificates, listen_port=raw.get("listen_port"), dns_port=raw.get("dns_port"))


def render(target: dict[str, Any], accounts: dict[str, tuple[str, str]], comment: str = "",
           federation: dict[str, Any] | None = None, timeouts: dict[str, float] | None = None,
           load: dict[str, Any] | None = None) -> str:
    """TOML text of a profile (used by the reference service to describe itself)."""
    def value(v: Any) -> str:
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(item) for item in v) + "]"
        return str(v)

    lines = [f"# {line}" for line in comment.splitlines()] + ["[target]"]
    lines += [f"{k} = {value(v)}" for k, v in target.items() if v is not None]
    for key, (username, password) in accounts.items():
        lines += ["", f"[accounts.{key}]", f"username = {value(username)}", f"password = {value(password)}"]
    if federation:
        lines += ["", "[federation]"] + [f"{k} = {value(v)}" for k, v in federation.items() if v is not None]
    if timeouts:
        lines += ["", "[timeouts]"] + [f"{k} = {value(v)}" for k, v in timeouts.items()]
    if load:
        lines += ["", "[load]"] + [f"{k} = {value(v)}" for k, v in load.items()]
    return "\n".join(lines) + "\n"
