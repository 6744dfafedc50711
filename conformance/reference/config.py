"""Settings of one reference service instance."""

from __future__ import annotations

import dataclasses
from pathlib import Path


@dataclasses.dataclass
class ServiceConfig:
    data_dir: Path
    domain: str = "iut.test"
    host: str = "127.0.0.1"
    port: int = 0
    side_door_port: int = 0  # the second client listener (0: any free port; kept across restarts)
    s2s_port: int = 0  # the inbound server-to-server listener (0: any free port; kept across restarts)
    # outbound server-to-server (s2s_out.py): where each other domain's server listens (domain -> (host, port)); a
    # domain not listed is unreachable (no DNS lookups), and what would go there is dropped
    peers: dict[str, tuple[str, int]] = dataclasses.field(default_factory=dict)
    # server dialback (XEP-0220): a peer may prove its domain with a dialback key that the domain's authoritative
    # server (found in `peers`) confirms, over TLS; False: certificates only (as Prosody's s2s_secure_auth)
    s2s_dialback: bool = True
    accounts: tuple[str, ...] = ("alice", "bob", "mallory")
    flaws: frozenset[str] = frozenset()
    # The harness's stand-in for a client IUT: PLAIN offered next to SCRAM after TLS, as IMPP-5.2-3 requires of the
    # service it tests a client with (so that the client's choice shows); never set for the reference as an IUT.
    offer_plain: bool = False
    max_auth_failures: int = 3  # RFC 6120 §6.4.5: allow at least 2 and no more than 5 retries
    preauth_idle_timeout: float = 30.0
    idle_timeout: float = 600.0
    max_unit_bytes: int = 256 * 1024
    max_depth: int = 64  # XML nesting below the stream root
    max_write_buffer: int = 4 * 1024 * 1024
    max_connections: int = 256  # client connections in all (a process has only so many descriptors)
    max_preauth_per_address: int = 16  # unauthenticated client connections from one address
    fetch_rate: float = 20.0  # presence fetches (probes, last-activity queries) per second and session...
    fetch_burst: float = 20.0  # ...with this many at once
    max_pending_in: int = 50  # subscription requests waiting for one user's answer
    max_offline_per_user: int = 1000
    max_archive_per_user: int = 10_000
    sm_resume_timeout: float = 60.0  # XEP-0198: how long a session whose connection dropped waits for resumption
    max_sm_queue: int = 1000  # unacknowledged stanzas kept per session
    max_hibernating_per_user: int = 4
    max_hibernating: int = 256
    s2s_out_connect_timeout: float = 10.0  # TCP connect to a peer server
    s2s_out_step_timeout: float = 10.0  # each answer during negotiation (stream header, features, TLS handshake)
    s2s_out_auth_timeout: float = 30.0  # the peer's SASL <success/> or <failure/>
    s2s_out_idle_timeout: float = 60.0  # an established outbound stream with nothing to send is closed
    s2s_out_max_queue: int = 200  # stanzas waiting per remote domain; beyond that they are dropped
