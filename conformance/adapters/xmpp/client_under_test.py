"""The client IUT as the suite speaks to it: runs of its shim (conformance/shim) against the harness's stand-in
service, directly or through the on-path attacker, and what the client did as its shim reports it and as the
stand-in saw it.

The client logs in as the stand-in's account alice; the harness's parties (bob, mallory) are other accounts on the
same service. Each run's events and the shim's standard error go into the case's evidence.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from typing import Any, Callable

from conformance.profile import Profile
from conformance.shim import runner
from conformance.shim.runner import ShimProcess, ShimRun
from conformance.verdicts import SetupFailed, Unsupported

from .runtime import Runtime
from .stand_in import StandIn, StreamView

ACCOUNT = "alice"
_RUNS = itertools.count(1)


@dataclasses.dataclass(frozen=True)
class ClientTarget:
    """What the harness needs to drive a client IUT (from the profile's [client], or the reference client)."""

    name: str
    command: tuple[str, ...]
    timeout: float
    actions: frozenset[str] = frozenset()
    features: frozenset[str] = frozenset()


def shim_request(profile: Profile, address: tuple[str, int], **fields: Any) -> dict[str, Any]:
    """The shim's request (contract REQUEST_FIELDS) for the client's account on the stand-in `profile` describes,
    connecting to `address` (the service's, or an attacker's in front of it); `fields` set the action's own."""
    domain, account = profile.target.domain, profile.account(ACCOUNT)
    request = {"host": address[0], "port": address[1], "tls": "starttls", "domain": domain,
               "ca_file": str(profile.target.ca_file), "jid": f"{account.username}@{domain}",
               "password": account.password, "resource": f"iut-{next(_RUNS)}", "to": "", "body": "", "status": "",
               "linger": 30.0, "receipt": False, "sync": False}
    request.update(fields)
    return request


def _text_of(event: dict[str, Any]) -> str:
    return json.dumps(event, ensure_ascii=False)


class ClientRun:
    """A finished run of the shim: what the client reported, and how it ended."""

    def __init__(self, result: ShimRun, streams: list[StreamView]):
        self.result = result
        self.streams = streams  # the stand-in's view of the client's connections during the run

    @property
    def events(self) -> list[dict[str, Any]]:
        return self.result.events

    @property
    def bound(self) -> str | None:
        event = next(iter(self.result.of("bound")), None)
        return str(event.get("jid") or "?") if event is not None else None

    @property
    def gave_up(self) -> bool:
        """The client ended the action itself: refused, or the connection was lost before the action was done."""
        return self.result.refused

    def failure(self) -> str:
        failed = self.result.of("failed")
        return str(failed[-1].get("reason", "")) if failed else ""

    def shown(self, text: str) -> list[dict[str, Any]]:
        """The `received` events carrying `text` anywhere (body, status, a receipt's id, a roster item's name)."""
        return [e for e in self.result.of("received") if text in _text_of(e)]

    def __str__(self) -> str:
        return str(self.result)


def _is_status(event: dict[str, Any], kind: str, message_id: str, sender: str) -> bool:
    """A report that `sender` (a bare JID) said something of `message_id`: a receipt, or an error."""
    return event.get("event") == "received" and event.get("kind") == kind and \
        str(event.get("id")) == message_id and str(event.get("from", "")).split("/", 1)[0] == sender


class RunningClient:
    """A shim still running: the test waits for what the client shows, acts, and finally ends the run."""

    def __init__(self, owner: "ClientUnderTest", shim: ShimProcess, mark: int, label: str):
        self.owner = owner
        self.rt = owner.rt
        self.shim = shim
        self.mark = mark
        self.label = label
        self.run: ClientRun | None = None

    def _wait(self, predicate: Callable[[dict[str, Any]], bool], within: float) -> dict[str, Any] | None:
        return self.rt.call(self.shim.wait_for, predicate, within, timeout=within + 5)

    def is_bound(self, within: float | None = None) -> str | None:
        """The full JID the client bound, once it has (None: it did not within `within`, or gave up)."""
        event = self._wait(lambda e: e.get("event") in ("bound", "failed"), within or self.rt.timeouts.step)
        return str(event.get("jid")) if event is not None and event.get("event") == "bound" else None

    @property
    def full_jid(self) -> str:
        """The address of the client's session (it must have bound: see bound_or_setup_failed)."""
        event = next((e for e in self.shim.events if e.get("event") == "bound"), None)
        if event is None or not event.get("jid"):
            raise SetupFailed("the client has not reported the address it bound")
        return str(event["jid"])

    @property
    def bare(self) -> str:
        return self.full_jid.split("/", 1)[0]

    def bound_or_setup_failed(self) -> str:
        jid = self.is_bound()
        if jid is None:
            run = self.ends()
            raise SetupFailed(f"the client did not log in to the genuine service: {run}"
                              f"{'; ' + run.failure() if run.failure() else ''}")
        return jid

    def sent(self, kind: str, within: float | None = None) -> dict[str, Any] | None:
        return self._wait(lambda e: e.get("event") == "sent" and e.get("kind") == kind,
                          within or self.rt.timeouts.positive)

    def shows(self, text: str, within: float | None = None) -> dict[str, Any] | None:
        """The first `received` event carrying `text`, waiting up to `within` (T_POS) for it."""
        return self._wait(lambda e: e.get("event") == "received" and text in _text_of(e),
                          within if within is not None else self.rt.timeouts.positive)

    def shows_receipt(self, message_id: str, *, sender: str, within: float | None = None) -> dict[str, Any] | None:
        """The client's report that `sender` (a bare JID) confirmed delivery of `message_id`, waiting up to T_POS."""
        return self._wait(lambda e: _is_status(e, "receipt", message_id, sender),
                          within if within is not None else self.rt.timeouts.positive)

    def receipts(self, message_id: str, *, sender: str) -> list[dict[str, Any]]:
        """Every receipt for `message_id` from `sender` the client reported so far (no waiting)."""
        return [e for e in self.shim.events if _is_status(e, "receipt", message_id, sender)]

    def shows_failure(self, message_id: str, *, sender: str, within: float | None = None) -> dict[str, Any] | None:
        """The client's report that `sender` (a bare JID) said `message_id` failed (an error), waiting up to T_POS."""
        return self._wait(lambda e: _is_status(e, "error", message_id, sender),
                          within if within is not None else self.rt.timeouts.positive)

    def failures(self, message_id: str, *, sender: str) -> list[dict[str, Any]]:
        """Every error for `message_id` from `sender` the client took so far (no waiting)."""
        return [e for e in self.shim.events if _is_status(e, "error", message_id, sender)]

    def synced(self, within: float | None = None) -> dict[str, Any] | None:
        """The client's report that its archive query ended, waiting up to T_POS for it."""
        return self._wait(lambda e: e.get("event") == "synced",
                          within if within is not None else self.rt.timeouts.positive)

    def shown(self, text: str) -> list[dict[str, Any]]:
        """Every `received` event so far carrying `text` (no waiting)."""
        return [e for e in self.shim.events if e.get("event") == "received" and text in _text_of(e)]

    def ended_by_itself_within(self, seconds: float) -> bool:
        """Did the client end its run (it closed, gave up) within `seconds`, without being told to?"""
        return self.rt.call(self.shim.exit, seconds, timeout=seconds + 5) is not None

    def ends(self) -> ClientRun:
        """Tell the client to disconnect (end of its standard input) and collect the run."""
        if self.run is None:
            result = self.rt.call(self.shim.finish, self.owner.timeout, timeout=self.owner.timeout + 10)
            self.owner._record(self.label, result)
            self.run = ClientRun(result, self.owner.stand_in.streams_of(ACCOUNT, self.mark))
            if result.broken:
                tail = result.stderr.strip().splitlines()[-1:] or [""]
                raise SetupFailed(f"the client's shim failed as a program: {result}"
                                  f"{'; stderr: ' + tail[0] if tail[0] else ''}")
        return self.run


class ClientUnderTest:
    def __init__(self, rt: Runtime, target: ClientTarget, stand_in: StandIn):
        self.rt = rt
        self.target = target
        self.stand_in = stand_in
        self.timeout = target.timeout
        self.running: list[RunningClient] = []
        self.account = rt.profile.account(ACCOUNT)

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def password(self) -> str:
        return self.account.password

    @property
    def bare(self) -> str:
        """The client's account (bare JID) on the stand-in service."""
        return f"{self.account.username}@{self.rt.domain}"

    @property
    def timeouts(self):
        return self.rt.timeouts

    def canary(self, label: str) -> str:
        return self.rt.canary(label)

    def needs(self, feature: str) -> None:
        if feature not in self.target.features:
            raise Unsupported(f"the client's shim does not offer '{feature}' (docs/shim.md), which this check needs")

    def starts(self, action: str = "login", *, via: Any = None, **fields: Any) -> RunningClient:
        """Start the shim's `action` against the stand-in (through `via`, an on-path attacker, if given)."""
        if self.target.actions and action not in self.target.actions:
            raise Unsupported(f"the client's shim does not implement '{action}'")
        address = via.listening_at if via is not None else self.rt.address
        request = shim_request(self.rt.profile, address, **{"linger": self.timeout, **fields})
        label = self.rt.recorder.endpoint("client").label
        shown = {k: ("***" if k == "password" else v) for k, v in request.items()}
        self.rt.recorder.event(label, f"shim {action}: {' '.join(self.target.command)} with {json.dumps(shown)}")
        mark = self.stand_in.mark()

        async def start() -> ShimProcess:
            return await runner.start(list(self.target.command), action, request)
        running = RunningClient(self, self.rt.call(start), mark, label)
        self.running.append(running)
        return running

    def logs_in(self, *, via: Any = None) -> ClientRun:
        """Log in (through `via` if given) and, once the client is bound or has given up, end the run."""
        running = self.starts("login", via=via)
        running.is_bound()
        return running.ends()

    def _record(self, label: str, result: ShimRun) -> None:
        for event in result.events:
            self.rt.recorder.event(label, "shim: " + _text_of(event)[:2000])
        self.rt.recorder.event(label, str(result))
        if result.stderr.strip():
            self.rt.recorder.event(label, "shim stderr (tail): " + result.stderr[-4000:])

    def dismiss(self) -> None:
        """End every run still going (a test that failed half-way), bounded."""
        for running in self.running:
            if running.run is None:
                try:
                    running.ends()
                except Exception:
                    running.shim.kill()
