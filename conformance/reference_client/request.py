"""The shim request (conformance/shim/contract.py REQUEST_FIELDS), checked once: a request the client cannot use is a
usage error of the harness (exit 2), never something the client half-does."""

from __future__ import annotations

import dataclasses
import json
import math
import ssl
from pathlib import Path
from typing import Any

from conformance.adapters.xmpp.codec.jid import JID, JidError

MAX_LINGER = 24 * 3600.0


class UsageError(Exception):
    """The request cannot be used; the message is one line for standard error."""


@dataclasses.dataclass(frozen=True)
class Request:
    host: str
    port: int
    tls: str  # "starttls" or "direct"
    domain: str
    ca_file: str
    jid: JID  # the account's bare JID
    username: str  # its localpart as the harness wrote it (the SASL authentication identity)
    password: str = dataclasses.field(repr=False)
    resource: str
    to: str
    body: str
    status: str
    linger: float
    receipt: bool
    sync: bool = False


def _text(data: dict[str, Any], field: str, *, required: bool = True) -> str:
    value = data.get(field)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise UsageError(f"request field {field!r} must be a non-empty string")
    return value


def parse(line: bytes, action: str) -> Request:
    try:
        data = json.loads(line)
    except ValueError as exc:
        raise UsageError(f"the request is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError("the request must be one JSON object")
    port = data.get("port")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise UsageError(f"request field 'port' must be a TCP port, not {port!r}")
    tls = _text(data, "tls", required=False) or "starttls"
    if tls not in ("starttls", "direct"):
        raise UsageError(f"request field 'tls' must be 'starttls' or 'direct', not {tls!r}")
    ca_file = _text(data, "ca_file")
    if not Path(ca_file).is_file():
        raise UsageError(f"request field 'ca_file': no such file {ca_file!r}")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=ca_file)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise UsageError(f"request field 'ca_file': {ca_file!r} holds no usable certificate ({exc})") from None
    jid_text = _text(data, "jid")
    try:
        jid = JID.parse(jid_text)
    except JidError as exc:
        raise UsageError(f"request field 'jid': {exc}") from None
    if jid.local is None or jid.resource is not None:
        raise UsageError(f"request field 'jid' must be a bare JID user@domain, not {jid_text!r}")
    to = _text(data, "to", required=action == "send-message")
    if to:
        try:
            JID.parse(to)
        except JidError as exc:
            raise UsageError(f"request field 'to': {exc}") from None
    linger = data.get("linger", 30)
    if isinstance(linger, bool) or not isinstance(linger, (int, float)) or not math.isfinite(linger) or linger < 0:
        raise UsageError(f"request field 'linger' must be a number of seconds, not {linger!r}")
    receipt, sync = data.get("receipt", False), data.get("sync", False)
    if not isinstance(receipt, bool):
        raise UsageError(f"request field 'receipt' must be true or false, not {receipt!r}")
    if not isinstance(sync, bool):
        raise UsageError(f"request field 'sync' must be true or false, not {sync!r}")
    return Request(host=_text(data, "host"), port=port, tls=tls, domain=_text(data, "domain").lower(),
                   ca_file=ca_file, jid=jid, username=jid_text.rpartition("@")[0], password=_text(data, "password"),
                   resource=_text(data, "resource", required=False), to=to,
                   body=_text(data, "body", required=False), status=_text(data, "status", required=False),
                   linger=min(float(linger), MAX_LINGER), receipt=receipt, sync=sync)
