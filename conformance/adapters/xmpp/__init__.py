"""XMPP adapter: reaches an XMPP service from a profile and casts the suite's roles onto XMPP streams."""

from __future__ import annotations

from pathlib import Path

from conformance.profile import Profile
from conformance.transport.wire import Recorder
from conformance.verdicts import SetupFailed

from .cast import Cast
from .on_path import XmppStreamHooks
from .runtime import Runtime, TargetUnreachable, resolve


class XmppAdapter:
    protocol = "xmpp"

    def __init__(self, profile: Profile, portal):
        self.profile = profile
        self.portal = portal
        self.address = resolve(profile, profile.timeouts.handshake)

    def runtime(self, recorder: Recorder, case_id: str, keylog: Path | None = None) -> Runtime:
        return Runtime(portal=self.portal, profile=self.profile, address=self.address, recorder=recorder,
                       case_id=case_id, keylog=keylog)

    def cast(self, runtime: Runtime) -> Cast:
        return Cast(runtime)

    def stream_hooks(self) -> XmppStreamHooks:
        """What an on-path attacker needs to know about this protocol's streams."""
        return XmppStreamHooks(direct_tls=self.profile.target.tls == "direct")

    def preflight(self, recorder: Recorder) -> None:
        """Reach the target and log every account in once; raise TargetUnreachable with a one-line reason."""
        rt = self.runtime(recorder, "preflight")
        cast = Cast(rt)
        host, port = self.address
        try:
            for party in cast.parties.values():
                rt.call(party._login, None, False, timeout=self.profile.timeouts.handshake * 3)
        except TargetUnreachable:
            raise
        except SetupFailed as exc:
            raise TargetUnreachable(f"{host}:{port} ({self.profile.target.domain}): {exc}") from None
        except TimeoutError as exc:
            raise TargetUnreachable(f"{host}:{port} ({self.profile.target.domain}) does not answer: {exc}") from None
        finally:
            cast.dismiss()


__all__ = ["XmppAdapter", "TargetUnreachable"]
