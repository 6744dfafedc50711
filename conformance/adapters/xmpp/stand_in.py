"""The harness as the service of a client IUT: a clean instance of the reference service for iut.test, run inside
the harness's event loop so that the harness sees, unit by unit, what the client says inside TLS.

It is the genuine service of the client cases (CA-T certificate, known accounts); attacks stand in front of it
(the on-path relay). It differs from the reference as an IUT in one setting only: it offers PLAIN next to SCRAM
after TLS, so that which one the client picks shows (IMPP-5.2-3). As the service, the harness may arrange the
client's account directly in its store (contacts, a clean slate before each test) instead of logging in as it.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import datetime
import shutil
import time
from pathlib import Path
from typing import Any

from conformance import pki
from conformance import profile as profiles
from conformance.attacker.certificates import forge
from conformance.reference.__main__ import profile_text
from conformance.reference.config import ServiceConfig
from conformance.reference.service import Service
from conformance.reference.store import RosterItem
from conformance.transport.wire import Recorder

from conformance.verdicts import SetupFailed

from .codec.stanza import BIND, MAM, SASL, kind, message
from .codec.xml import Element, to_bytes

MAX_STREAMS = 500  # streams kept in the view (a test opens a handful)
MAX_UNITS = 5000  # units kept per stream


@dataclasses.dataclass
class Unit:
    t: float  # time.monotonic() when the service parsed (in) or wrote (out) it
    direction: str  # "in": from the client; "out": from the service
    tls: bool  # was the stream encrypted at that moment
    element: Element


@dataclasses.dataclass
class StreamView:
    """One connection to the stand-in, as the service saw it."""

    index: int
    stream: Any  # the reference's stream object (its jid, once bound, says whose it is)
    opened: float
    units: list[Unit] = dataclasses.field(default_factory=list)
    label: str = ""

    @property
    def account(self) -> str | None:
        return getattr(self.stream, "user", None)  # the authenticated localpart (set at SASL success)


class StandIn:
    def __init__(self, data_dir: Path, portal):
        self.data_dir = data_dir
        self.portal = portal
        self.service: Service | None = None
        self.profile: profiles.Profile | None = None
        self.streams: list[StreamView] = []
        self._by_stream: dict[int, StreamView] = {}
        self.recorder: Recorder | None = None  # the current test's, for the evidence
        self._archive_query: asyncio.Event | None = None  # set when a client's archive query arrives (while held)
        self._archive_queryid = ""

    # -- life cycle --------------------------------------------------------------------------------------------------

    def start(self) -> profiles.Profile:
        self.portal.call(self._start)
        return self.profile

    async def _start(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)  # a fresh service per run: its CA is made anew below
        config = ServiceConfig(data_dir=self.data_dir, offer_plain=True)
        # CA-T is the harness's own here, so that it can also issue what an impostor presents (certificate())
        self._ca = pki.make_ca("impp-conformance stand-in CA (CA-T)")
        pki.write_server_certs(self.data_dir / "certs", config.domain, self._ca)
        self.service = Service(config)
        port = await self.service.start()
        self.service.tap = self._tap
        path = self.data_dir / "profile.toml"
        path.write_text(profile_text(self.service, port).replace('name = "reference"', 'name = "stand-in"'),
                        encoding="utf-8")
        self.profile = dataclasses.replace(profiles.load(path), embedded=True)

    def stop(self) -> None:
        if self.service is not None:
            try:
                self.portal.call(self.service.stop)
            except Exception:
                pass
            self.service = None

    # -- what an impostor of this service may present ------------------------------------------------------------------

    def certificate(self, kind: str) -> tuple[Path, Path]:
        """(certificate, key) files an impostor of iut.test presents (catalogue IMPP-5.2-4): `self-signed`, `rogue-ca`
        (iut.test by CA-R), `wrong-name` (CA-T, for other.test), `expired` (CA-T, iut.test), `other-domain` (CA-T,
        valid for remote.test, a real other domain) or `genuine` (CA-T, iut.test: stolen or mis-issued)."""
        domain = self.profile.target.domain
        directory = self.data_dir / "impostor"
        directory.mkdir(exist_ok=True)
        cert, key = directory / f"{kind}.crt", directory / f"{kind}.key"
        if cert.exists():
            return cert, key
        now = datetime.datetime.now(datetime.timezone.utc)
        if kind == "self-signed":
            pems = pki.self_signed(domain)
        elif kind == "rogue-ca":
            forged = forge("rogue-ca", domain)
            pems = forged.cert_file.read_bytes(), forged.key_file.read_bytes()
        elif kind == "wrong-name":
            pems = pki.issue(self._ca, "other.test")
        elif kind == "expired":
            pems = pki.issue(self._ca, domain, not_before=now - datetime.timedelta(days=30),
                             not_after=now - datetime.timedelta(days=1))
        elif kind == "other-domain":
            pems = pki.issue(self._ca, pki.REMOTE_DOMAIN)
        elif kind == "genuine":
            pems = pki.issue(self._ca, domain)
        else:
            raise ValueError(f"unknown impostor certificate {kind!r}")
        cert.write_bytes(pems[0])
        key.write_bytes(pems[1])
        key.chmod(0o600)
        return cert, key

    # -- what the service saw ----------------------------------------------------------------------------------------

    def _tap(self, stream: Any, direction: str, element: Element) -> None:
        view = self._by_stream.get(id(stream))
        if view is None:
            if len(self.streams) >= MAX_STREAMS:
                return
            view = StreamView(index=len(self.streams), stream=stream, opened=time.monotonic())
            if self.recorder is not None:
                view.label = self.recorder.endpoint("stand-in").label
                self.recorder.event(view.label, f"the stand-in service accepted a connection from {stream.peer}")
            self.streams.append(view)
            self._by_stream[id(stream)] = view
        if len(view.units) >= MAX_UNITS:
            return
        view.units.append(Unit(time.monotonic(), direction, bool(stream.tls), element))
        query = element.find(f"{{{MAM}}}query") if direction == "in" and kind(element) == "iq" else None
        if query is not None and self._archive_query is not None:
            self._archive_queryid = query.get("queryid") or ""
            self._archive_query.set()
        if self.recorder is not None and view.label:
            self.recorder.add(view.label, direction, "app", to_bytes(element))

    def mark(self) -> int:
        return len(self.streams)

    def streams_of(self, account: str, since: int = 0) -> list[StreamView]:
        """Streams opened since `since` that authenticated as `account`, or as no one at all (a client that gave up
        before authenticating); the harness's own parties authenticate as other accounts."""
        return [v for v in self.streams[since:] if v.account in (account, None)]

    # -- checks on what the client said (the suite's `service` verbs) -------------------------------------------------

    def mechanisms_offered_to(self, run: Any) -> list[str]:
        """The SASL mechanisms the service offered on the client's connections during `run`."""
        offered: list[str] = []
        for view in run.streams:
            for unit in view.units:
                if unit.direction == "out":
                    for mechanism in unit.element.iter(f"{{{SASL}}}mechanism"):
                        if mechanism.text and mechanism.text not in offered:
                            offered.append(mechanism.text)
        return offered

    def mechanism_used_by(self, run: Any) -> str | None:
        """The mechanism of the client's last <auth/> during `run` (None: it never authenticated)."""
        used = None
        for view in run.streams:
            for unit in view.units:
                if unit.direction == "in" and unit.element.tag == f"{{{SASL}}}auth":
                    used = unit.element.get("mechanism")
        return used

    def stronger_mechanisms_offered_to(self, run: Any) -> list[str]:
        """Offered mechanisms of a stronger family than the one the client used (by hash: SCRAM-SHA-512 over
        SCRAM-SHA-256 over SCRAM-SHA-1 over PLAIN; -PLUS is judged apart, only for clients with channel binding)."""
        used = self.mechanism_used_by(run)
        rank = _strength(used) if used else -1
        return [m for m in self.mechanisms_offered_to(run) if _strength(m) > rank]

    def saw_client_send(self, run: Any, text: str) -> bool:
        return any(unit.direction == "in" and text.encode() in to_bytes(unit.element)
                   for view in run.streams for unit in view.units)

    def stanzas_before_session(self, run: Any) -> list[str]:
        """Presence and message stanzas the client sent before its session was established on that connection:
        outside TLS, before SASL <success/>, or before the bind result (units of one read count as sent before
        anything the service answered to them, so a pipelined stanza shows)."""
        early: list[str] = []
        for view in run.streams:
            succeeded = bound = False
            for unit in view.units:
                element = unit.element
                if unit.direction == "out":
                    succeeded = succeeded or element.tag == f"{{{SASL}}}success"
                    bound = bound or (element.get("type") == "result" and element.find(f".//{{{BIND}}}bind") is not None)
                elif kind(element) in ("message", "presence") and not (unit.tls and succeeded and bound):
                    why = "outside TLS" if not unit.tls else "before SASL success" if not succeeded \
                        else "before the bind result"
                    early.append(f"<{kind(element)}/> {why}")
        return early

    def delivers_again(self, full_jid: str, text: str) -> None:
        """Deliver once more, unchanged (same XEP-0359 stanza-id), the last message carrying `text` that went to the
        session of `full_jid`: what a message archive sync or a resumed stream may do."""
        for view in reversed(self.streams):
            if str(getattr(view.stream, "jid", "")) != full_jid:
                continue
            for unit in reversed(view.units):
                if unit.direction == "out" and kind(unit.element) == "message" and \
                        text.encode() in to_bytes(unit.element):
                    if not self.delivers_raw(full_jid, copy.deepcopy(unit.element)):
                        raise SetupFailed(f"the client's session {full_jid} is gone; nothing to deliver again")
                    return
        raise SetupFailed(f"the stand-in never delivered a message carrying {text} to {full_jid}")

    # -- the client's account, arranged as the service -----------------------------------------------------------------

    def holds_archive_queries(self) -> None:
        """Answer archive queries (XEP-0313) only once `answers_archive_queries()` is called (at most 30 s later),
        so that the client's query is still open when something else arrives."""
        async def hold() -> None:
            self.service.archive_gate = asyncio.Event()
            self._archive_query = asyncio.Event()
        self.portal.call(hold)

    def archive_query_of(self, running: Any) -> str:
        """The queryid of the archive query the client sent during `running` (since the queries were held: the
        harness's own parties send none), waiting up to T_POS for it."""
        async def wait() -> None:
            await asyncio.wait_for(self._archive_query.wait(), self.profile.timeouts.positive)
        try:
            self.portal.call(wait)
        except (asyncio.TimeoutError, TimeoutError):
            raise SetupFailed(f"the client sent no archive query within {self.profile.timeouts.positive:g}s") from None
        return self._archive_queryid

    def answers_archive_queries(self) -> None:
        async def release() -> None:
            if self.service.archive_gate is not None:
                self.service.archive_gate.set()
        self.portal.call(release)

    def archives(self, account: str, *, sender: str, body: str) -> None:
        """An archived message from `sender` to `account` (a bare JID), never delivered live (received while away)."""
        def arrange() -> None:
            self.service.archive(account.split("@", 1)[0], sender, message(account, body, from_=sender))
        self.portal.call(_sync, arrange)

    def leaves_tls_to_the_client(self) -> None:
        """Offer STARTTLS without requiring it (until the next test's clean slate), as a lenient service would: the
        session stays confidential only if the client asks for TLS on its own (RFC 7590 §3.1)."""
        self.service.tls_optional = True

    def clean_slate(self, user: str) -> None:
        """Empty roster, blocklist, pending requests and stored messages of `user`, as if the account were new; the
        service requires TLS again."""
        self.service.tls_optional = False
        self.answers_archive_queries()  # nothing stays held for the next test
        self.service.archive_gate = self._archive_query = None

        def clean() -> None:
            store = self.service.store
            for contact in list(store.roster(user)):
                store.roster(contact.split("@", 1)[0]).pop(f"{user}@{self.service.config.domain}", None)
            store.rosters[user] = {}
            store.blocklists.pop(user, None)
            store.pending_in.pop(user, None)
            store.offline.pop(user, None)
            store.archives.pop(user, None)
            store.save()
        self.portal.call(_sync, clean)

    def befriends(self, user: str, contact: str) -> None:
        """Make `user` and `contact` mutual contacts (subscription both, each allowed to see the other)."""
        def arrange() -> None:
            store, domain = self.service.store, self.service.config.domain
            store.roster(user)[f"{contact}@{domain}"] = RosterItem(jid=f"{contact}@{domain}", subscription="both")
            store.roster(contact)[f"{user}@{domain}"] = RosterItem(jid=f"{user}@{domain}", subscription="both")
            store.save()
        self.portal.call(_sync, arrange)

    def delivers_raw(self, full_jid: str, element: Element) -> bool:
        """Write `element` as it is on the stream of the session bound to `full_jid` (the service speaking for
        itself: a re-delivery, a push); False if there is no such session."""
        async def deliver() -> bool:
            for jid, session in self.service.sessions.items():
                if str(jid) == full_jid:
                    session.emit(element)
                    return True
            return False
        return self.portal.call(deliver)


def _strength(mechanism: str) -> int:
    name = mechanism.removesuffix("-PLUS")
    return {"PLAIN": 0, "SCRAM-SHA-1": 1, "SCRAM-SHA-256": 2, "SCRAM-SHA-512": 3}.get(name, -1)


async def _sync(fn) -> None:
    fn()
