"""What every XMPP party of one test shares: the event loop portal, the profile, the evidence recorder, TLS settings."""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import dns.exception
import dns.resolver

from conformance import canary
from conformance.profile import Profile
from conformance.transport.connection import Connection, ConnectionClosed, HandshakeFailed
from conformance.transport.wire import Recorder
from conformance.verdicts import SetupFailed

from .client import ProtocolViolation, StreamEnded, XmppClient
from .codec.stanza import TLS, q
from .codec.xml import Limits

DEFAULT_PORT = 5222


class TargetUnreachable(Exception):
    """The profile's target cannot be reached at all."""


class TlsRefused(SetupFailed):
    """The TLS handshake failed (e.g. the IUT refuses the TLS version this connection insists on)."""


def resolve(profile: Profile, timeout: float) -> tuple[str, int]:
    """Where to connect: the profile's host/port, else the domain's _xmpp-client._tcp SRV record (RFC 6120 §3.2)."""
    target = profile.target
    if target.host:
        return target.host, target.port or DEFAULT_PORT
    try:
        answers = dns.resolver.resolve(f"_xmpp-client._tcp.{target.domain}", "SRV", lifetime=timeout)
        best = sorted(answers, key=lambda r: (r.priority, -r.weight))[0]
        return str(best.target).rstrip("."), best.port
    except (dns.exception.DNSException, IndexError):
        return target.domain, target.port or DEFAULT_PORT


@dataclasses.dataclass
class Runtime:
    portal: Any  # anyio BlockingPortal running the asyncio loop
    profile: Profile
    address: tuple[str, int]
    recorder: Recorder
    case_id: str
    keylog: Path | None = None
    limits: Limits = Limits()
    # role -> address of an on-path attacker that role's new connections go through instead of the IUT
    routes: dict[str, tuple[str, int]] = dataclasses.field(default_factory=dict)
    # when the test's time (timeouts.case, counted from the runtime's creation) is spent: no step starts after it
    deadline: float = dataclasses.field(default=0.0)

    def __post_init__(self) -> None:
        if not self.deadline:
            self.deadline = time.monotonic() + self.profile.timeouts.case

    @property
    def timeouts(self):
        return self.profile.timeouts

    @property
    def domain(self) -> str:
        return self.profile.target.domain

    def call(self, fn: Callable[..., Awaitable[Any]], *args: Any, timeout: float | None = None) -> Any:
        """Run a coroutine function on the loop, bounded in time; translate transport trouble for the verdict."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"the case's time bound ({self.timeouts.case:g}s, timeouts.case) is spent")
        bound = min(timeout or self.timeouts.case, left)

        async def bounded() -> Any:
            try:
                return await asyncio.wait_for(fn(*args), bound)
            except asyncio.TimeoutError:
                raise TimeoutError(f"no progress within {bound:g}s") from None

        return self.portal.call(bounded)

    def canary(self, label: str) -> str:
        return canary.make(self.case_id, label)

    def tls_context(self, *, maximum_version: ssl.TLSVersion | None = None,
                    ca_file: Path | str | None = None) -> ssl.SSLContext:
        """The harness's client TLS settings; `maximum_version` caps the version (TLS 1.2 for `tls-unique` channel
        binding), `ca_file` trusts another anchor than the profile's (e.g. an on-path attacker's rogue CA)."""
        ca_file = ca_file or self.profile.target.ca_file
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if maximum_version is not None:
            context.maximum_version = maximum_version
        if self.keylog is not None:
            context.keylog_filename = str(self.keylog)
        return context

    async def connect(self, role: str, address: tuple[str, int] | None = None, domain: str | None = None) -> XmppClient:
        """A TCP connection to the IUT (or to `address` instead, for this one connection), for streams to `domain`
        (the target's domain unless another of its hosts is named)."""
        host, port = address or self.routes.get(role, self.address)
        try:
            conn = await Connection.open(host, port, role=role, recorder=self.recorder, timeout=self.timeouts.handshake)
        except ConnectionError as exc:
            raise TargetUnreachable(str(exc)) from None
        return XmppClient(conn, domain or self.domain, limits=self.limits, timeout=self.timeouts.step)

    async def secure_stream(self, role: str, *, insist: bool = True, address: tuple[str, int] | None = None,
                            context: ssl.SSLContext | None = None, announce: str | None = None,
                            domain: str | None = None) -> XmppClient:
        """A stream after STARTTLS (or direct TLS), ready for SASL. With `insist=False` the harness behaves like a
        client that leaves security to the service: it starts TLS only if the service declares it required.
        `address` and `context` replace the IUT's address and the default TLS settings for this one stream;
        `announce` is the identity the stream headers claim once TLS is up (never before, RFC 6120 §4.7.1)."""
        client = await self.connect(role, address, domain)
        context = context or self.tls_context()
        try:
            if self.profile.target.tls == "direct":
                await client.conn.start_tls(context, server_hostname=client.domain, timeout=self.timeouts.handshake)
                client.announce = announce
                await client.open_stream()
            else:
                await client.open_stream()
                client.announce = announce
                starttls = client.feature(TLS, "starttls")
                if insist or (starttls is not None and starttls.find(q(TLS, "required")) is not None):
                    await client.starttls(context)
        except HandshakeFailed as exc:
            await client.close()
            raise TlsRefused(f"TLS with the IUT failed: {exc}") from None
        except (StreamEnded, ProtocolViolation, ConnectionClosed, asyncio.TimeoutError) as exc:
            await client.close()
            raise SetupFailed(f"could not open a secure stream: {exc or type(exc).__name__}") from None
        return client
