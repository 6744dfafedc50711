"""SASL for the harness client (RFC 6120 §6): SCRAM through scramp, PLAIN, and the forgeries the suite needs.

scramp implements SCRAM itself; what is written here is only what a polite client would never do, such as asking
to act for another identity (an authzid in the GS2 header) or replaying a recorded client-final-message.
"""

from __future__ import annotations

import base64

import scramp
from scramp import core as scramp_core

SCRAM_PREFERENCE = ("SCRAM-SHA-256", "SCRAM-SHA-1")


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


def scram_client(mechanism: str, username: str, password: str, authzid: str | None = None) -> scramp.ScramClient:
    client = scramp.ScramClient([mechanism], username, password)
    if authzid:
        client.gs2_header = _AuthzidHeader(authzid)
    return client
