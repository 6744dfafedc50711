"""Role verbs for SCRAM channel binding (RFC 5802 §6): logging in with SCRAM-*-PLUS bound to the party's own TLS
session (straight to the IUT, or to another address such as an on-path attacker's, trusting another CA), and logging
in as a client that believes the service has no channel binding (GS2 flag 'y'), as one whose mechanism list a MITM
stripped of its -PLUS entries would. Mixed into XmppParty.

The harness computes only `tls-unique` (RFC 5929): Python's ssl module has no keying-material exporter for
`tls-exporter` (RFC 9266), and `tls-unique` is defined on TLS 1.2 alone, so these connections cap TLS at 1.2. A
service that does not speak TLS 1.2, or offers no SCRAM-*-PLUS there, makes the case UNSUPPORTED, never PASS.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING

from conformance.roles import Outcome
from conformance.verdicts import SetupFailed, Unsupported, note

from .client import AuthResult, ProtocolViolation, StreamEnded, XmppClient
from .codec import sasl
from .codec.stanza import SASL, q
from .runtime import TlsRefused

if TYPE_CHECKING:
    from .party import XmppParty


def _answer(result: AuthResult) -> str:
    """The IUT's SASL answer in words: <success/>, or the failure condition with its text (SCRAM's e=...)."""
    if result.success:
        return "<success/>"
    text = result.element.findtext(q(SASL, "text")) if result.element is not None else None
    return f"<{result.condition}/>" + (f" ({text.strip()})" if text and text.strip() else "")


class ChannelBindingVerbs:
    """Verbs of XmppParty for channel binding; `self` is an XmppParty."""

    async def _tls12_stream(self: "XmppParty", via: tuple[str, int] | None,
                            ca_file: Path | str | None) -> XmppClient:
        """A secure stream on TLS 1.2 (where tls-unique exists), to the IUT or to `via`."""
        context = self.rt.tls_context(maximum_version=ssl.TLSVersion.TLSv1_2, ca_file=ca_file)
        try:
            return await self.rt.secure_stream(self.name, address=via, context=context)
        except TlsRefused as exc:
            if via is not None:
                raise
            raise Unsupported(f"the IUT does not negotiate TLS 1.2 ({exc}); the harness can compute only tls-unique "
                              f"channel binding, which RFC 9266 confines to TLS 1.2") from None

    @staticmethod
    def _plus_offered(client: XmppClient) -> list[str]:
        """The SCRAM-*-PLUS mechanisms the IUT offers on this stream, best first; UNSUPPORTED if none."""
        offered = client.mechanisms()
        plus = [m for m in sasl.SCRAM_PLUS_PREFERENCE if m in offered]
        if not plus:
            raise Unsupported(f"the IUT offers no SCRAM-*-PLUS mechanism on {client.conn.tls_version or 'TLS'} "
                              f"(offered: {', '.join(offered) or 'none'}): no channel binding to exercise")
        return plus

    def logs_in_with_channel_binding(self: "XmppParty", via: tuple[str, int] | None = None,
                                     ca_file: Path | str | None = None) -> Outcome:
        """Log in with the best offered SCRAM-*-PLUS, binding the exchange to the party's own TLS 1.2 session
        (tls-unique), then bind a resource. `via` connects to another address than the IUT's (an on-path relay that
        terminates TLS), `ca_file` trusts another CA for that connection. Granted means SASL succeeded (the bound
        JID, if any, is in `data`); refused carries the SASL condition and the IUT's text (e=...) in `detail`."""
        async def run():
            client = await self._tls12_stream(via, ca_file)
            try:
                mechanism = self._plus_offered(client)[0]
                binding = client.own_channel_binding()
                if binding is None:
                    raise SetupFailed(f"no tls-unique channel binding on {self.name}'s {client.conn.tls_version} "
                                      f"connection")
                types = client.channel_binding_types()
                if types is not None and binding[0] not in types:
                    raise Unsupported(f"the IUT's channel-binding types (XEP-0440) are {', '.join(types) or 'none'}; "
                                      f"the harness can compute only {', '.join(sasl.CHANNEL_BINDING_TYPES)}")
                where = f" via {via[0]}:{via[1]}" if via else ""
                advertised = f"XEP-0440 types {', '.join(types)}" if types is not None else "no XEP-0440 advertisement"
                detail = f"{mechanism} with {binding[0]} over {client.conn.tls_version}{where} ({advertised}): "
                result = await client.authenticate(self.account.username, self.account.password, mechanism=mechanism,
                                                   channel_binding=binding)
                if not result.success:
                    return Outcome(refused=True, condition=result.condition, detail=detail + _answer(result))
                try:
                    jid = await client.bind()
                except (StreamEnded, ProtocolViolation) as exc:
                    return Outcome(refused=False, detail=detail + f"<success/>, but binding failed: {exc}")
                return Outcome(refused=False, data=[str(jid)], detail=detail + f"<success/>, bound {jid}")
            finally:
                await client.close()
        return self._call(run)

    def logs_in_claiming_no_channel_binding(self: "XmppParty") -> Outcome:
        """On TLS 1.2, where the IUT offers SCRAM-*-PLUS, log in like a client whose mechanism list a MITM stripped of
        the -PLUS entries: the non-PLUS counterpart with GS2 flag 'y' ("I support channel binding, but I believe the
        server does not"). Granted means the IUT accepted it; RFC 5802 §6 requires a failure."""
        async def run():
            client = await self._tls12_stream(None, None)
            try:
                plus = self._plus_offered(client)
                offered = client.mechanisms()
                counterpart = plus[0].removesuffix("-PLUS")
                mechanism = next((m for m in (counterpart, *sasl.SCRAM_PREFERENCE) if m in offered), None)
                if mechanism is None:  # nothing a stripped list could have left: the 'y' flag cannot even be sent
                    note(f"the IUT offers only -PLUS SCRAM mechanisms ({', '.join(offered)}); sending 'y' with "
                         f"{counterpart} anyway")
                    mechanism = counterpart
                result = await client.authenticate(self.account.username, self.account.password, mechanism=mechanism,
                                                   claim_no_channel_binding=True)
                detail = (f"{mechanism} with GS2 flag 'y' over {client.conn.tls_version}, where the IUT offers "
                          f"{', '.join(plus)}: {_answer(result)}")
                return Outcome(refused=not result.success, condition=None if result.success else result.condition,
                               detail=detail)
            finally:
                await client.close()
        return self._call(run)
