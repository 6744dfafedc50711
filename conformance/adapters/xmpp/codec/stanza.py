"""Namespaces, stream headers and small builders/readers for XMPP units (RFC 6120/6121), sans-IO."""

from __future__ import annotations

import uuid

from .xml import E, Element, STREAM_NS, XML_NS, escape_attr, split

CLIENT = "jabber:client"
SERVER = "jabber:server"
TLS = "urn:ietf:params:xml:ns:xmpp-tls"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND = "urn:ietf:params:xml:ns:xmpp-bind"
SESSION = "urn:ietf:params:xml:ns:xmpp-session"
STREAMS_ERR = "urn:ietf:params:xml:ns:xmpp-streams"
STANZAS_ERR = "urn:ietf:params:xml:ns:xmpp-stanzas"
ROSTER = "jabber:iq:roster"
PRIVACY = "jabber:iq:privacy"
BLOCKING = "urn:xmpp:blocking"
BLOCKING_ERRORS = "urn:xmpp:blocking:errors"
LAST = "jabber:iq:last"
PING = "urn:xmpp:ping"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
MAM = "urn:xmpp:mam:2"
FORWARD = "urn:xmpp:forward:0"
DELAY = "urn:xmpp:delay"
RSM = "http://jabber.org/protocol/rsm"
DATA_FORMS = "jabber:x:data"
CARBONS = "urn:xmpp:carbons:2"
STANZA_ID = "urn:xmpp:sid:0"
PUBSUB = "http://jabber.org/protocol/pubsub"
PUBSUB_OWNER = "http://jabber.org/protocol/pubsub#owner"
PUBSUB_EVENT = "http://jabber.org/protocol/pubsub#event"
PUBSUB_ERRORS = "http://jabber.org/protocol/pubsub#errors"
NODE_CONFIG = "http://jabber.org/protocol/pubsub#node_config"
GEOLOC = "http://jabber.org/protocol/geoloc"
HINTS = "urn:xmpp:hints"
SM = "urn:xmpp:sm:3"

STANZA_KINDS = ("message", "presence", "iq")


def q(ns: str, local: str) -> str:
    """Clark name."""
    return f"{{{ns}}}{local}"


def new_id(prefix: str = "h") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def stream_header(*, to: str | None, from_: str | None = None, content_ns: str = CLIENT, version: str = "1.0",
                  stream_id: str | None = None, lang: str = "en", extra_ns: dict[str, str] | None = None) -> bytes:
    attrs = []
    if from_:
        attrs.append(f" from='{escape_attr(from_)}'")
    if to:
        attrs.append(f" to='{escape_attr(to)}'")
    if stream_id:
        attrs.append(f" id='{escape_attr(stream_id)}'")
    if version:
        attrs.append(f" version='{escape_attr(version)}'")
    attrs.append(f" xml:lang='{escape_attr(lang)}'")
    for prefix, uri in (extra_ns or {}).items():
        attrs.append(f" xmlns:{prefix}='{escape_attr(uri)}'")
    return (f"<?xml version='1.0'?><stream:stream xmlns='{content_ns}' xmlns:stream='{STREAM_NS}'"
            + "".join(attrs) + ">").encode()


STREAM_CLOSE = b"</stream:stream>"


def stream_error(condition: str, text: str | None = None, extra: Element | None = None) -> Element:
    """A stream error; `extra` is an application-specific condition (RFC 6120 §4.9.4)."""
    return E(q(STREAM_NS, "error"), None,
             E(condition, ns=STREAMS_ERR),
             E("text", {q(XML_NS, "lang"): "en"}, text=text, ns=STREAMS_ERR) if text else None,
             extra)


def kind(element: Element) -> str | None:
    """'message' / 'presence' / 'iq' for stanzas in the client or server namespace, else None."""
    uri, local = split(element.tag)
    if uri in (CLIENT, SERVER) and local in STANZA_KINDS:
        return local
    return None


def is_stream_error(element: Element) -> bool:
    return element.tag == q(STREAM_NS, "error")


def error_condition(element: Element) -> str | None:
    """Defined condition of a stream error, stanza error, or SASL/SM failure element."""
    if is_stream_error(element):
        for child in element:
            uri, local = split(child.tag)
            if uri == STREAMS_ERR and local != "text":
                return local
        return "undefined-condition"
    uri, local = split(element.tag)
    if local == "failure" or local == "failed":
        for child in element:
            c_uri, c_local = split(child.tag)
            if c_local != "text":
                return c_local
        return None
    error = element.find(f"{{{uri}}}error") if uri else None
    if error is None:
        return None
    for child in error:
        c_uri, c_local = split(child.tag)
        if c_uri == STANZAS_ERR and c_local != "text":
            return c_local
    return "undefined-condition"


def stanza_error(stanza: Element, condition: str, error_type: str = "cancel", text: str | None = None,
                 extra: Element | None = None) -> Element:
    """The error reply to `stanza` (RFC 6120 §8.3): addresses swapped, original id kept."""
    uri, local = split(stanza.tag)
    reply = E(stanza.tag, {"type": "error", "id": stanza.get("id"), "to": stanza.get("from"),
                           "from": stanza.get("to")})
    error = E(f"{{{uri}}}error", {"type": error_type},
              E(condition, ns=STANZAS_ERR),
              E("text", text=text, ns=STANZAS_ERR) if text else None,
              extra)
    reply.append(error)
    return reply


def iq(type_: str, *children: Element | None, to: str | None = None, id_: str | None = None,
       from_: str | None = None, ns: str = CLIENT) -> Element:
    return E(q(ns, "iq"), {"type": type_, "id": id_ or new_id("iq"), "to": to, "from": from_}, *children)


def iq_result(request: Element, *children: Element | None) -> Element:
    uri, _ = split(request.tag)
    return E(q(uri or CLIENT, "iq"), {"type": "result", "id": request.get("id"), "to": request.get("from"),
                                     "from": request.get("to")}, *children)


def message(to: str | None, body: str | None = None, *children: Element | None, type_: str | None = "chat",
            id_: str | None = None, from_: str | None = None, ns: str = CLIENT) -> Element:
    return E(q(ns, "message"), {"to": to, "type": type_, "id": id_ or new_id("m"), "from": from_},
             E(q(ns, "body"), text=body) if body is not None else None, *children)


def presence(to: str | None = None, type_: str | None = None, *children: Element | None, status: str | None = None,
             show: str | None = None, from_: str | None = None, id_: str | None = None,
             ns: str = CLIENT) -> Element:
    return E(q(ns, "presence"), {"to": to, "type": type_, "from": from_, "id": id_},
             E(q(ns, "show"), text=show) if show else None,
             E(q(ns, "status"), text=status) if status is not None else None,
             *children)


def in_content_ns(stanza: Element, source: str, target: str) -> Element:
    """`stanza` with every element of the content namespace `source` moved to `target`, in place: client and
    server streams carry the same stanzas in 'jabber:client' and 'jabber:server' (RFC 6120 §4.8.3)."""
    prefix = f"{{{source}}}"
    for element in stanza.iter():
        if isinstance(element.tag, str) and element.tag.startswith(prefix):
            element.tag = f"{{{target}}}{element.tag[len(prefix):]}"
    return stanza
