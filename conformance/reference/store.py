"""Durable state of the reference service: accounts, rosters, pending requests, blocklists, offline messages,
archives, PEP nodes. One JSON file in the data directory, replaced atomically on every change so that a SIGKILL at any
moment leaves either the old or the new state, never a torn one (permissions are stored tamper-proof, §5.5/§5.10).
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import time
from pathlib import Path

from scramp import ScramMechanism

MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-1")
SUBSCRIPTIONS = ("none", "to", "from", "both")


@dataclasses.dataclass
class RosterItem:
    jid: str
    subscription: str = "none"
    ask: bool = False  # a subscription request from the owner is pending
    name: str | None = None
    groups: list[str] = dataclasses.field(default_factory=list)

    @property
    def has_from(self) -> bool:
        """The contact may see the owner's presence."""
        return self.subscription in ("from", "both")

    @property
    def has_to(self) -> bool:
        """The owner may see the contact's presence."""
        return self.subscription in ("to", "both")


class Store:
    def __init__(self, path: Path, *, persist_blocklists: bool = True):
        self.path = path
        self.persist_blocklists = persist_blocklists
        self.accounts: dict[str, dict] = {}
        self.rosters: dict[str, dict[str, RosterItem]] = {}
        self.pending_in: dict[str, dict[str, str]] = {}  # owner -> requester bare JID -> serialized request
        self.blocklists: dict[str, list[str]] = {}
        self.offline: dict[str, list[str]] = {}
        self.archives: dict[str, list[dict]] = {}
        self.last_seen: dict[str, float] = {}
        # owner -> node -> {"config": {var: [values]}, "affiliations": {bare JID: affiliation}, "items": [...]}
        self.pep: dict[str, dict[str, dict]] = {}
        if path.exists():
            self._load(json.loads(path.read_text(encoding="utf-8")))

    def _load(self, data: dict) -> None:
        self.accounts = data.get("accounts", {})
        self.rosters = {u: {j: RosterItem(**i) for j, i in items.items()} for u, items in data.get("rosters", {}).items()}
        self.pending_in = data.get("pending_in", {})
        self.blocklists = data.get("blocklists", {})
        self.offline = data.get("offline", {})
        self.archives = data.get("archives", {})
        self.last_seen = data.get("last_seen", {})
        self.pep = data.get("pep", {})

    def save(self) -> None:
        data = {
            "accounts": self.accounts,
            "rosters": {u: {j: dataclasses.asdict(i) for j, i in items.items()} for u, items in self.rosters.items()},
            "pending_in": self.pending_in,
            "blocklists": self.blocklists if self.persist_blocklists else self._saved_blocklists(),
            "offline": self.offline,
            "archives": self.archives,
            "last_seen": self.last_seen,
            "pep": self.pep,
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.path)

    def _saved_blocklists(self) -> dict:
        # Flaw 'blocklist-not-persisted': whatever was on disk stays, changes live in memory only.
        if not self.path.exists():
            return {}
        return json.loads(self.path.read_text(encoding="utf-8")).get("blocklists", {})

    # -- accounts ------------------------------------------------------------------------------------------------

    def add_account(self, username: str, password: str) -> None:
        record = {"password_set": time.time()}
        for mech in MECHANISMS:
            salt, stored_key, server_key, iterations = ScramMechanism(mech).make_auth_info(password)
            record[mech] = {"salt": salt.hex(), "stored_key": stored_key.hex(), "server_key": server_key.hex(),
                            "iterations": iterations}
        self.accounts[username] = record

    def scram_auth_info(self, username: str, mechanism: str) -> tuple[bytes, bytes, bytes, int] | None:
        record = self.accounts.get(username, {}).get(mechanism.removesuffix("-PLUS"))
        if record is None:
            return None
        return (bytes.fromhex(record["salt"]), bytes.fromhex(record["stored_key"]),
                bytes.fromhex(record["server_key"]), record["iterations"])

    def check_password(self, username: str, password: str) -> bool:
        info = self.scram_auth_info(username, "SCRAM-SHA-256")
        if info is None:
            return False
        salt, stored_key, _, iterations = info
        try:
            _, candidate, _, _ = ScramMechanism("SCRAM-SHA-256").make_auth_info(password, iterations, salt)
        except Exception:
            return False
        return secrets.compare_digest(candidate, stored_key)

    # -- rosters ---------------------------------------------------------------------------------------------------

    def roster(self, user: str) -> dict[str, RosterItem]:
        return self.rosters.setdefault(user, {})

    def item(self, user: str, contact: str) -> RosterItem | None:
        return self.rosters.get(user, {}).get(contact)
