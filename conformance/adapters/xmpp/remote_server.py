"""The harness as another domain's server (RFC 6120 §2.5, §4; XEP-0178): it opens server-to-server streams to the
IUT's federation port, as the honest `remote.test` with the certificate the IUT should accept, or as an attacker
with a certificate of its choice, authenticating or not, and sends stanzas from whatever address it likes.

Server-to-server streams are one-way (RFC 6120 §4.2): the IUT answers over a connection of its own, which the
harness does not accept yet. So the IUT's reaction on this stream (a stream error, a close) is the only thing seen
here; what reaches the local parties is observed on their own streams.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import ssl
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from conformance.pki import SPOOF_DOMAIN
from conformance.roles import Reaction, Update
from conformance.transport.connection import Connection, ConnectionClosed, HandshakeFailed
from conformance.verdicts import SetupFailed, Unsupported

from .client import ProtocolViolation, StreamEnded, XmppClient
from .codec.stanza import SERVER, TLS, message, presence, q
from .codec.xml import E
from .receiving_server import ReceivingServer, ReceivingServerRole
from .runtime import Runtime

if TYPE_CHECKING:
    from .party import XmppParty

DIALBACK = "jabber:server:dialback"
DIALBACK_FEATURE = "urn:xmpp:features:dialback"
CERTIFICATES = ("valid", "self-signed", "rogue-ca", "other-domain", "expired", "none")


@dataclasses.dataclass
class PeerLogin:
    tls: bool
    mechanisms: list[str]
    authenticated: bool
    detail: str


class PeerStream:
    """One server-to-server stream the harness opened, as `domain`."""

    def __init__(self, rt: Runtime, cast, client: XmppClient, domain: str, login: PeerLogin):
        self.rt = rt
        self.cast = cast
        self.client = client
        self.domain = domain
        self.login = login
        self.label = client.label
        self._seen_reaction: Reaction | None = None

    def __repr__(self) -> str:
        return f"{self.domain}'s server ({self.label})"

    @property
    def authenticated(self) -> bool:
        return self.login.authenticated

    def _update(self, kind_: str, canary: str) -> Update:
        return Update(kind=kind_, sender=self, canary=canary, marks=self.cast.marks(), fence=self._settle,
                      reveal_availability=False)

    def _sender(self, from_: str | None) -> str | None:
        return f"x@{self.domain}" if from_ is None else (from_ or None)

    def sends_message(self, to: "XmppParty", *, from_: str | None = None) -> Update:
        """A chat message with a canary body to a local party, from x@<domain> unless `from_` says otherwise
        (`from_=""` sends no 'from' at all)."""
        canary = self.rt.canary(f"{self.domain}-msg")
        update = self._update("message", canary)
        self._send(message(to.bare, canary, from_=self._sender(from_), ns=SERVER))
        return update

    def sends_presence(self, to: "XmppParty", *, from_: str | None = None) -> Update:
        """Directed presence with a canary status to a local party."""
        canary = self.rt.canary(f"{self.domain}-status")
        update = self._update("presence", canary)
        self._send(presence(to=to.bare, status=canary, from_=self._sender(from_), ns=SERVER))
        return update

    def claims_by_dialback(self) -> str:
        """Claim the stream's domain with a server-dialback key (XEP-0220 §2.1.1) that no authoritative server
        will ever confirm (the attacker's key is made up), and wait, as a patient attacker would, for the IUT's
        answer (its <db:result/>, the end of the stream, or T_STEP) if it offered dialback; returns what it was."""
        key = self.rt.canary(f"{self.domain}-dialback-key").encode().hex()
        self._send(E(q(DIALBACK, "result"), {"from": self.domain, "to": self.rt.domain}, text=key))
        if self.client.feature(DIALBACK_FEATURE, "dialback") is None:
            return "dialback not offered: no answer awaited"

        async def run():
            answer = await self.client.wait_for(lambda u: u.tag == q(DIALBACK, "result") and bool(u.get("type")),
                                                self.rt.timeouts.step)
            if answer is not None:
                return f"<db:result type='{answer.get('type')}'/>"
            return self.client.end_reason() if self.client.ended else "no answer"
        return self.rt.call(run)

    def requests_subscription_to(self, party: "XmppParty", *, from_: str | None = None) -> Update:
        """A subscription request (canary in its status) to a local party."""
        canary = self.rt.canary(f"{self.domain}-subscribe")
        update = self._update("presence", canary)
        self._send(presence(to=party.bare, type_="subscribe", status=canary, from_=self._sender(from_), ns=SERVER))
        return update

    def _send(self, stanza) -> None:
        async def run():
            if self.client.ended:
                return
            self.client.start_pump()
            try:
                await self.client.send(stanza)
            except ConnectionClosed:
                pass
        self.rt.call(run)

    async def _settle(self) -> None:
        """No ordering point exists on a one-way s2s stream: wait for the IUT's reaction (an error, a close) or
        T_CLOSE, whichever comes first."""
        if self._seen_reaction is None:
            self._seen_reaction = await self._observe(self.rt.timeouts.close)

    async def _observe(self, timeout: float) -> Reaction:
        client = self.client
        client.start_pump()
        await client.wait_ended(timeout)
        if client.stream_error is not None:
            return Reaction(stream_error=client.stream_error_condition, closed=True, detail=client.end_reason())
        if client.ended:
            return Reaction(closed=True, detail=client.end_reason())
        return Reaction(detail=f"the stream stayed open for {timeout:g}s")

    def reaction(self) -> Reaction:
        """How the IUT treated what this stream sent: a stream error, a close, or nothing within T_CLOSE."""
        async def run():
            await self._settle()
            return self._seen_reaction
        return self.rt.call(run)


class RemoteServer:
    """Fixture object: opens server-to-server streams to the IUT as another domain's server."""

    def __init__(self, rt: Runtime, cast):
        self.rt = rt
        self.cast = cast
        self.federation = rt.profile.federation
        self._scratch: Path | None = None
        self._listening: ReceivingServer | None = None
        self.issued_keys: set[str] = set()  # dialback keys the harness's streams sent (its authority confirms them)

    @property
    def domain(self) -> str:
        return self._federation().remote_domain

    def _federation(self):
        if self.federation is None:
            raise Unsupported("the profile has no [federation] section: the harness cannot meet the IUT as another "
                              "domain's server")
        return self.federation

    def _certificate(self, kind: str) -> tuple[Path, Path] | None:
        federation = self._federation()
        remote = federation.remote_domain
        folder = federation.certificates
        if kind == "none":
            return None
        if kind in ("valid", "other-domain", "expired"):
            stem = {"valid": remote, "other-domain": "evil.test", "expired": f"{remote}-expired"}[kind]
            cert, key = folder / f"{stem}.crt", folder / f"{stem}.key"
            if not (cert.is_file() and key.is_file()):
                raise SetupFailed(f"federation.certificates lacks {stem}.crt/.key ({folder})")
            return cert, key
        if kind == "rogue-ca":
            from conformance.attacker.certificates import forge
            forged = forge("rogue-ca", remote)
            return forged.cert_file, forged.key_file
        if kind == "self-signed":
            return self._self_signed(remote)
        raise ValueError(f"unknown certificate {kind!r}; one of {', '.join(CERTIFICATES)}")

    def _self_signed(self, name: str) -> tuple[Path, Path]:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="impp-peer-"))
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=30))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
                .sign(key, hashes.SHA256()))
        cert_file, key_file = self._scratch / "self-signed.crt", self._scratch / "self-signed.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return cert_file, key_file

    def awaits_the_iut(self, *, certificate: str = "valid", offers_tls: bool = True,
                       confirms: str = "at-once") -> ReceivingServerRole:
        """Be the remote domain's receiving server for the IUT's own server-to-server connections (on
        federation.listen_port): present `certificate`, offer STARTTLS or not, and answer the IUT's SASL EXTERNAL
        at once or only when `confirms_the_iut()` is called (`confirms="later"`). Replaces any earlier one."""
        federation = self._federation()
        if federation.listen_port is None:
            raise Unsupported("the profile's [federation] has no listen_port: the harness cannot receive the IUT's "
                              "own server-to-server connections")
        pair = self._certificate(certificate)
        if pair is None:
            raise ValueError("a receiving server needs a certificate")
        self.hangs_up()
        spoof = federation.certificates / f"{SPOOF_DOMAIN}.crt", federation.certificates / f"{SPOOF_DOMAIN}.key"
        also_for = {SPOOF_DOMAIN: spoof} if all(p.is_file() for p in spoof) else {}
        server = ReceivingServer(self.rt, federation.remote_domain, federation.listen_port, pair,
                                 offers_tls=offers_tls, confirms=confirms, dns_port=federation.dns_port,
                                 also_for=also_for, issued_keys=self.issued_keys)
        self.rt.call(server.start)
        self._listening = server
        return ReceivingServerRole(self.rt, server)

    def hangs_up(self) -> None:
        """Stop being the remote domain's receiving server (drops the IUT's connections)."""
        if self._listening is not None:
            server, self._listening = self._listening, None
            self.rt.call(server.stop, timeout=5)

    def connects(self, *, certificate: str = "valid", authenticates: bool | str = True,
                 claiming: str | None = None) -> PeerStream:
        """Open a server-to-server stream claiming `claiming` (default: the remote domain), present `certificate`
        in TLS, and authenticate if asked: with SASL EXTERNAL (True), or (`"dialback"`) with a dialback key that the
        harness, as the domain's authoritative server, confirms when the IUT asks (XEP-0220; the test holds
        `awaits_the_iut()` for that). A dialback the IUT does not offer is Unsupported."""
        federation = self._federation()
        domain = claiming or federation.remote_domain
        pair = self._certificate(certificate)
        host = self.rt.address[0]

        async def run():
            context = self.rt.tls_context()
            if pair is not None:
                context.load_cert_chain(*pair)
            try:
                conn = await Connection.open(host, federation.port, role=f"peer-{certificate}",
                                             recorder=self.rt.recorder, timeout=self.rt.timeouts.handshake)
            except ConnectionError as exc:
                raise SetupFailed(f"the IUT's server-to-server port {host}:{federation.port} is unreachable: "
                                  f"{exc}") from None
            client = XmppClient(conn, self.rt.domain, limits=self.rt.limits, timeout=self.rt.timeouts.step)
            client.content_ns, client.announce, client.auto_reply = SERVER, domain, False
            client.extra_ns = {"db": DIALBACK}  # a server that speaks dialback says so (XEP-0220 §2.1.1)
            login = await self._negotiate(client, context, authenticates)
            return client, login
        client, login = self.rt.call(run)
        stream = PeerStream(self.rt, self.cast, client, domain, login)
        self.cast.extra_streams.append(stream)
        return stream

    async def _negotiate(self, client: XmppClient, context: ssl.SSLContext, authenticates: bool) -> PeerLogin:
        try:
            await client.open_stream()
            if client.feature(TLS, "starttls") is None:
                return PeerLogin(False, [], False, "the IUT offered no STARTTLS on its server-to-server port")
            await client.starttls(context)
        except HandshakeFailed as exc:
            return PeerLogin(False, [], False, f"TLS refused: {exc}")
        except (StreamEnded, ProtocolViolation, ConnectionClosed, asyncio.TimeoutError) as exc:
            return PeerLogin(client.conn.tls_active, [], False,
                             f"the IUT ended the stream during TLS: {exc or type(exc).__name__}")
        mechanisms = client.mechanisms()
        if not authenticates:
            return PeerLogin(True, mechanisms, False, "no authentication attempted")
        if authenticates == "dialback":
            return await self._dialback(client, mechanisms)
        if "EXTERNAL" not in mechanisms:
            return PeerLogin(True, mechanisms, False,
                             f"SASL EXTERNAL not offered (offered: {', '.join(mechanisms) or 'nothing'})")
        result = await client.authenticate("", "", mechanism="EXTERNAL", authzid=client.announce)
        detail = "SASL EXTERNAL: <success/>" if result.success else f"SASL EXTERNAL: <{result.condition}/>"
        return PeerLogin(True, mechanisms, result.success, detail)

    async def _dialback(self, client: XmppClient, mechanisms: list[str]) -> PeerLogin:
        if client.feature(DIALBACK_FEATURE, "dialback") is None:
            raise Unsupported("the IUT does not offer server dialback (XEP-0220) on a TLS-protected stream")
        key = self.rt.canary(f"{client.announce}-dialback-key").encode().hex()
        self.issued_keys.add(key)  # ours: the harness's authoritative server will confirm it
        await client.send(E(q(DIALBACK, "result"), {"from": client.announce, "to": self.rt.domain}, text=key))
        client.start_pump()
        answer = await client.wait_for(lambda u: u.tag == q(DIALBACK, "result") and bool(u.get("type")),
                                       self.rt.timeouts.step)
        if answer is None:
            why = client.end_reason() if client.ended else "nothing within the step timeout"
            return PeerLogin(True, mechanisms, False, f"no dialback result: {why}")
        return PeerLogin(True, mechanisms, answer.get("type") == "valid", f"dialback: type='{answer.get('type')}'")
