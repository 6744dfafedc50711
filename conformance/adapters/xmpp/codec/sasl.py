"""SASL for the harness client (RFC 6120 §6): SCRAM through scramp, PLAIN, and the forgeries the suite needs.

scramp implements SCRAM itself; what is written here is only what a polite client would never do, such as asking
to act for another identity (an authzid in the GS2 header) or replaying a recorded client-final-message.

Channel binding (SCRAM-*-PLUS, RFC 5802 §6): the harness computes `tls-unique` only (RFC 5929), because Python's
ssl module exposes no TLS keying-material exporter for `tls-exporter` (RFC 9266); and since RFC 9266 forbids
`tls-unique` on TLS 1.3, a PLUS login of the harness runs on TLS 1.2. A client may also send the GS2 flag 'y'
("I support channel binding but believe the server does not"), as one whose mechanism list a MITM stripped would.
"""

from __future__ import annotations

import base64
import ssl

import scramp
from scramp import core as scramp_core

SCRAM_PREFERENCE = ("SCRAM-SHA-256", "SCRAM-SHA-1")
SCRAM_PLUS_PREFERENCE = ("SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS")
SASL_CB = "urn:xmpp:sasl-cb:0"  # XEP-0440: the channel-binding types a server supports, as a stream feature
CHANNEL_BINDING_TYPES = ("tls-unique",)  # the types the harness can compute

ChannelBinding = tuple[str, bytes]  # (type, data), e.g. ("tls-unique", <the first TLS 1.2 Finished message>)


def b64(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode("ascii") if data else "="


def unb64(text: str | None) -> bytes:
    text = (text or "").strip()
    if text in ("", "="):
        return b""
    return base64.b64decode(text, validate=False)


def plain_message(username: str, password: str, authzid: str = "") -> bytes:
    return f"{authzid}\0{username}\0{password}".encode()


class _AuthzidHeader(scramp_core.Gs2Header):
    """A GS2 header carrying an authorization identity: `n,a=<authzid>,` (RFC 5802 §5.1)."""

    def __init__(self, authzid: str):
        super().__init__("n", None)
        self.authzid = authzid.replace("=", "=3D").replace(",", "=2C")

    def __str__(self) -> str:
        return f"n,a={self.authzid},"


def is_plus(mechanism: str) -> bool:
    return mechanism.startswith("SCRAM-") and mechanism.endswith("-PLUS")


def tls_unique(tls: ssl.SSLObject | ssl.SSLSocket | None) -> ChannelBinding | None:
    """The `tls-unique` channel binding of a TLS connection, where it is defined: TLS 1.2 (RFC 5929 §3; RFC 9266
    §3 forbids it on TLS 1.3, where it no longer identifies the connection)."""
    if tls is None or tls.version() != "TLSv1.2":
        return None
    data = tls.get_channel_binding("tls-unique")
    return ("tls-unique", data) if data else None


def scram_client(mechanism: str, username: str, password: str, authzid: str | None = None, *,
                 channel_binding: ChannelBinding | None = None, claim_no_channel_binding: bool = False
                 ) -> scramp.ScramClient:
    """A SCRAM client for `mechanism`. A -PLUS mechanism needs `channel_binding` (GS2 header 'p=<type>', the data
    in the client-final-message's c=); `claim_no_channel_binding` sends the GS2 flag 'y' with a non-PLUS mechanism."""
    if is_plus(mechanism):
        if channel_binding is None:
            raise ValueError(f"{mechanism} needs channel-binding data")
        if authzid or claim_no_channel_binding:
            raise ValueError(f"{mechanism}: no authzid and no 'y' flag with channel binding")
        return scramp.ScramClient([mechanism], username, password, channel_binding=channel_binding)
    client = scramp.ScramClient([mechanism], username, password)
    if claim_no_channel_binding:
        if authzid:
            raise ValueError("the 'y' flag is sent without an authzid")
        client.gs2_header = scramp_core.Gs2Header("y", None)
    elif authzid:
        client.gs2_header = _AuthzidHeader(authzid)
    return client
