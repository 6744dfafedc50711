"""XML for XMPP streams, sans-IO: a bounded, restricted streaming parser and a namespace-aware serializer.

An XMPP stream is one never-ending XML document. Its top-level children (stanzas, stream features, SASL and TLS
negotiation elements) are the units both sides exchange. The parser here turns bytes into those units and refuses
everything RFC 6120 §11.1 restricts (DTDs, entity declarations, comments, processing instructions), using
defusedxml's hardened expat parser so that no entity is ever expanded. Size and depth are bounded so a hostile
peer cannot make us buffer without limit.

Elements are plain `xml.etree.ElementTree.Element` objects with Clark-notation tags (`{jabber:client}message`).
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

Element = ET.Element

STREAM_NS = "http://etherx.jabber.org/streams"
XML_NS = "http://www.w3.org/XML/1998/namespace"


@dataclasses.dataclass(frozen=True)
class Limits:
    """Bounds on what one peer may make us hold in memory."""

    max_unit_bytes: int = 256 * 1024  # one top-level element (stanza, features, ...)
    max_depth: int = 64  # nesting below the stream root
    max_header_bytes: int = 8 * 1024  # the opening <stream:stream ...> tag


class XmlError(Exception):
    """The peer sent XML we refuse. `condition` is the RFC 6120 stream error condition that fits."""

    def __init__(self, condition: str, text: str):
        super().__init__(f"{condition}: {text}")
        self.condition = condition
        self.text = text


@dataclasses.dataclass
class StreamOpened:
    tag: str  # Clark name of the root, normally {http://etherx.jabber.org/streams}stream
    attrs: dict[str, str]
    default_ns: str | None


@dataclasses.dataclass
class UnitReceived:
    element: Element
    raw_size: int  # bytes this unit occupied on the stream


@dataclasses.dataclass
class StreamClosed:
    pass


Event = StreamOpened | UnitReceived | StreamClosed


class _Builder:
    """expat target: builds top-level children of the stream root, enforcing depth and restricted XML."""

    def __init__(self, owner: "StreamParser"):
        self._owner = owner
        self._stack: list[Element] = []
        self._pending_ns: list[tuple[str, str]] = []

    def start_ns(self, prefix: str, uri: str) -> None:
        self._pending_ns.append((prefix, uri))

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        ns = self._pending_ns
        self._pending_ns = []
        owner = self._owner
        if owner.depth == 0:
            default = next((uri for prefix, uri in ns if prefix == ""), None)
            owner.depth = 1
            owner._boundary = owner._byte_index()
            owner._events.append(StreamOpened(tag, dict(attrib), default))
            return
        owner.depth += 1
        if owner.depth == 2:
            owner._boundary = owner._byte_index()  # a top-level element starts: its size counts from here
        if owner.depth - 1 > owner.limits.max_depth:
            raise XmlError("policy-violation", f"XML nested deeper than {owner.limits.max_depth} levels")
        element = ET.Element(tag, attrib)
        if self._stack:
            self._stack[-1].append(element)
        self._stack.append(element)

    def end(self, tag: str) -> None:
        owner = self._owner
        owner.depth -= 1
        if owner.depth == 0:
            owner._events.append(StreamClosed())
            return
        element = self._stack.pop()
        if owner.depth == 1:
            end = owner._byte_index()  # where its end tag starts; the tag itself is counted as written unprefixed
            size = max(end - owner._boundary, 0) + len(split(tag)[1]) + 3
            if size > owner.limits.max_unit_bytes:  # it arrived whole within one feed: the size check comes here
                raise XmlError("policy-violation", f"a single XML element exceeds {owner.limits.max_unit_bytes} bytes")
            owner._events.append(UnitReceived(element, size))
            owner._boundary = end

    def data(self, text: str) -> None:
        if not self._stack:
            return  # whitespace between top-level units
        current = self._stack[-1]
        if len(current):
            last = current[-1]
            last.tail = (last.tail or "") + text
        else:
            current.text = (current.text or "") + text

    def comment(self, text: str) -> None:
        raise XmlError("restricted-xml", "XML comments are not allowed on an XMPP stream")

    def pi(self, target: str, text: str | None = None) -> None:
        raise XmlError("restricted-xml", "processing instructions are not allowed on an XMPP stream")

    def close(self) -> None:
        return None


class StreamParser:
    """Feed bytes, get stream events. One instance per stream (a new one after every stream restart)."""

    def __init__(self, limits: Limits = Limits(), *, expand_internal_entities: bool = False):
        """`expand_internal_entities` lets a document type declaration with an internal subset through and
        expands the entities it declares: never right for XMPP (RFC 6120 §11.1); only the reference service's flaw
        'entities-expanded' asks for it. External entities stay forbidden even then."""
        self.limits = limits
        self.depth = 0
        self.fed = 0
        self._events: list[Event] = []
        self._boundary = 0  # stream byte offset of the last top-level event; what follows is still buffered
        self._failed: XmlError | None = None
        self._parser = DefusedXMLParser(target=_Builder(self), forbid_dtd=not expand_internal_entities,
                                        forbid_entities=not expand_internal_entities, forbid_external=True)
        expat = self._parser.parser
        # Any entity reference other than the five predefined ones is restricted XML; expat calls this
        # handler for such references only when no DTD declared them, which we forbid anyway.
        expat.SkippedEntityHandler = self._skipped_entity

    def _skipped_entity(self, name: str, is_parameter_entity: bool) -> None:
        raise XmlError("restricted-xml", f"entity reference &{name}; is not allowed")

    def _byte_index(self) -> int:
        return self._parser.parser.CurrentByteIndex

    def feed(self, data: bytes) -> list[Event]:
        if self._failed:
            raise self._failed
        self.fed += len(data)
        try:
            self._parser.feed(data)
        except XmlError as exc:
            self._failed = exc
            raise
        except DefusedXmlException as exc:
            self._failed = XmlError("restricted-xml", f"DTDs and entity declarations are not allowed ({type(exc).__name__})")
            raise self._failed from None
        except ET.ParseError as exc:
            self._failed = XmlError("not-well-formed", str(exc))
            raise self._failed from None
        except (ValueError, UnicodeError) as exc:
            self._failed = XmlError("not-well-formed", str(exc))
            raise self._failed from None
        if self.depth == 0 and self.fed > self.limits.max_header_bytes:
            self._failed = XmlError("policy-violation", "stream header too large")
            raise self._failed
        if self.depth >= 1 and self.fed - self._boundary > self.limits.max_unit_bytes:
            self._failed = XmlError("policy-violation",
                                    f"a single XML element exceeds {self.limits.max_unit_bytes} bytes")
            raise self._failed
        events, self._events = self._events, []
        return events


# ---------------------------------------------------------------------------------------------------------------
# Building and serializing


def E(tag: str, attrs: dict[str, str | None] | None = None, *children: Element | None, text: str | None = None,
      ns: str | None = None) -> Element:
    """Build an element. `tag` may be Clark notation or a local name completed with `ns`."""
    if ns and not tag.startswith("{"):
        tag = f"{{{ns}}}{tag}"
    element = ET.Element(tag, {k: v for k, v in (attrs or {}).items() if v is not None})
    element.text = text
    for child in children:
        if child is not None:
            element.append(child)
    return element


def split(tag: str) -> tuple[str | None, str]:
    if tag.startswith("{"):
        uri, _, local = tag[1:].partition("}")
        return uri, local
    return None, tag


def escape_text(text: str) -> str:
    # CR is escaped because XML parsers turn a literal CR (or CRLF) into LF.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")


def escape_attr(text: str) -> str:
    # Whitespace other than the space is escaped because attribute-value normalisation turns it into spaces.
    return (escape_text(text).replace("'", "&apos;").replace('"', "&quot;")
            .replace("\n", "&#10;").replace("\t", "&#9;"))


def _attr_name(name: str) -> tuple[str, str | None]:
    """Return (qualified name, namespace needing a prefix declaration or None)."""
    uri, local = split(name)
    if uri is None:
        return local, None
    if uri == XML_NS:
        return f"xml:{local}", None
    return f"ns{abs(hash(uri)) % 1000}:{local}", uri


def serialize(element: Element, parent_ns: str | None = None) -> str:
    """Serialize with default-namespace declarations only where the namespace changes, as XMPP peers expect."""
    parts: list[str] = []
    _serialize(element, parent_ns, parts)
    return "".join(parts)


def _serialize(element: Element, parent_ns: str | None, out: list[str]) -> None:
    uri, local = split(element.tag)
    out.append("<" + local)
    if uri is not None and uri != parent_ns:
        out.append(f" xmlns='{escape_attr(uri)}'")
    effective_ns = uri if uri is not None else parent_ns
    for name, value in element.attrib.items():
        qname, needs = _attr_name(name)
        if needs:
            prefix = qname.split(":", 1)[0]
            out.append(f" xmlns:{prefix}='{escape_attr(needs)}'")
        out.append(f" {qname}='{escape_attr(value)}'")
    if element.text is None and len(element) == 0:
        out.append("/>")
    else:
        out.append(">")
        if element.text:
            out.append(escape_text(element.text))
        for child in element:
            _serialize(child, effective_ns, out)
            if child.tail:
                out.append(escape_text(child.tail))
        out.append(f"</{local}>")


def to_bytes(element: Element, parent_ns: str | None = None) -> bytes:
    return serialize(element, parent_ns).encode("utf-8")
