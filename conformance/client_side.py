"""The client half of a run: the client IUT (a profile's [client] shim, or the embedded reference client with its
flaws), the harness's stand-in service it is tested against, and the preflight that checks both before any case.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from conformance.adapters.xmpp import XmppAdapter
from conformance.adapters.xmpp.client_under_test import ClientTarget, shim_request
from conformance.adapters.xmpp.stand_in import StandIn
from conformance.evidence import write_case_evidence
from conformance.profile import Profile
from conformance.shim import runner
from conformance.shim.contract import ACTIONS, FEATURES
from conformance.transport.wire import Recorder

REFERENCE_CLIENT = (sys.executable, "-m", "conformance.reference_client")
PREFLIGHT_SECONDS = 60.0


class ClientSideError(Exception):
    """The client IUT or its stand-in service cannot be used: every client case is an ERROR with this reason."""


def reference_target(flaws: tuple[str, ...]) -> ClientTarget:
    command = (*REFERENCE_CLIENT, *(arg for flaw in flaws for arg in ("--flaw", flaw)))
    name = "reference-client" + "".join(f"+{f}" for f in flaws)
    return ClientTarget(name=name, command=command, timeout=30.0)


def profile_target(profile: Profile) -> ClientTarget:
    return ClientTarget(name=profile.target.name, command=profile.client.command, timeout=profile.client.timeout)


class ClientSide:
    def __init__(self, target: ClientTarget, run_dir: Path, client_profile: Profile | None):
        self.target = target
        self.run_dir = run_dir
        self.client_profile = client_profile  # its timeouts apply to the client cases
        self.stand_in: StandIn | None = None
        self.adapter: XmppAdapter | None = None
        self.error: str | None = None

    def start(self, portal) -> None:
        """Start the stand-in and run the preflight (capabilities, one login); raise ClientSideError once and for
        all if either fails."""
        if self.error:
            raise ClientSideError(self.error)
        if self.adapter is not None:
            return
        recorder = Recorder()
        try:
            self.stand_in = StandIn(self.run_dir / "stand-in", portal)
            profile = self.stand_in.start()
            if self.client_profile is not None:
                profile = dataclasses.replace(profile, timeouts=self.client_profile.timeouts)
            else:  # the reference client reacts within milliseconds: a few seconds bound its closes and retries
                profile = dataclasses.replace(profile, timeouts=dataclasses.replace(
                    profile.timeouts, close=3.0, fallback=3.0))
            self.adapter = XmppAdapter(profile, portal)
            self.stand_in.recorder = recorder
            self.target = portal.call(self._preflight, recorder)
        except ClientSideError as exc:
            self.error = str(exc)
        except Exception as exc:  # the stand-in could not start: a harness problem, said in one line
            self.error = f"the stand-in service did not start: {type(exc).__name__}: {exc}"
        finally:
            if self.stand_in is not None:
                self.stand_in.recorder = None
            write_case_evidence(self.run_dir / "preflight-client", recorder,
                                "preflight: the client's capabilities, one login to the stand-in service")
        if self.error:
            self.adapter = None
            raise ClientSideError(self.error)

    async def _preflight(self, recorder: Recorder) -> ClientTarget:
        command = list(self.target.command)
        result = await runner.run(command, "capabilities", {}, timeout=PREFLIGHT_SECONDS)
        recorder.event("preflight", f"{' '.join(command)} capabilities: {result}")
        offered = next(iter(result.of("capabilities")), None)
        if not result.done or offered is None or not isinstance(offered.get("actions"), list):
            tail = result.stderr.strip().splitlines()[-1:] or [""]
            raise ClientSideError(f"the client's shim ({' '.join(command)}) failed its preflight: {result}"
                                  f"{'; ' + tail[0] if tail[0] else ''}")
        actions = frozenset(a for a in offered["actions"] if a in ACTIONS)
        features = frozenset(f for f in offered.get("features") or [] if f in FEATURES)
        target = ClientTarget(self.target.name, self.target.command, self.target.timeout, actions, features)
        if "login" not in actions:
            raise ClientSideError("the client's shim does not implement 'login', which every client case needs")
        request = shim_request(self.adapter.profile, self.adapter.address, resource="preflight", linger=10)
        shim = await runner.start(command, "login", request)
        bound = await shim.wait_for(lambda e: e.get("event") in ("bound", "failed"), target.timeout)
        login = await shim.finish(target.timeout)
        for event in login.events:
            recorder.event("preflight", f"login: {event}")
        if bound is None or bound.get("event") != "bound" or login.broken:
            reason = next((e.get("reason") for e in login.events if e.get("event") == "failed"), "")
            raise ClientSideError(f"the client did not log in to the harness's genuine service in its preflight: "
                                  f"{login}{'; ' + str(reason) if reason else ''}")
        return target

    def stop(self) -> None:
        if self.stand_in is not None:
            self.stand_in.stop()
