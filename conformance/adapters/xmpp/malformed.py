"""Malformed XMPP, sans-IO: byte builders for parser and size abuse, and hypothesis strategies over the XMPP grammar.

Everything here returns bytes and never touches a socket. The builders make the three abuses of IMPP-5.3-3 that are
spelled out (an internal DTD whose entities a careless parser expands, a stanza one byte larger than the IUT's
limit, XML nested 10 000 levels deep); `samples()` draws many more: each sample carries exactly one defect that a
conformant server must answer by ending the stream (RFC 6120 §4.9, §11), placed where it is sent (`stage`).

Bounds: entity expansion is tiny and non-recursive (at most 3 levels of fan-out 3: 27 copies of a short text), so
no sample is a real "billion laughs"; a sample is at most `max_sample_bytes(oversize, max_depth)` long. Large
samples are built by repetition from a few drawn numbers, so hypothesis shrinks numbers, not megabytes.
"""

from __future__ import annotations

import dataclasses

from hypothesis import strategies as st

from .codec.stanza import CLIENT, PING, SASL, STREAM_CLOSE, stream_header
from .codec.xml import STREAM_NS, escape_attr

PROLOG = b"<?xml version='1.0'?>"
DEEP_NS = "urn:example:impp-conformance:deep"
FILLER_NS = "urn:example:impp-conformance:filler"
MAX_ENTITY_LEVELS = 3
MAX_ENTITY_FANOUT = 3
MIN_DEPTH = 10_000  # IMPP-5.3-3 (c): nesting a server must refuse

# Where a sample is sent: right after TLS, in place of the stream header; on a stream opened after TLS but before
# authentication; on a stream whose party authenticated and bound a resource.
STAGES = ("header", "unauthenticated", "authenticated")
HEADER_KINDS = ("dtd", "bad-header", "invalid-utf8", "restricted", "truncated")
CONTENT_KINDS = ("dtd", "entity", "deep", "huge-attribute", "invalid-utf8", "unknown-namespace", "bad-syntax",
                 "restricted", "truncated")

# Byte sequences that are not UTF-8 at all (RFC 3629), or UTF-8 for characters XML 1.0 forbids (§2.2).
INVALID_UTF8 = (b"\xff", b"\xfe", b"\x80", b"\xc3(", b"\xc0\xaf", b"\xe0\x80\xaf", b"\xed\xa0\x80",
                b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80", b"\xc3", b"\x00", b"\x01", b"\x1b", b"\xef\xbf\xbe")
PREDEFINED_ENTITIES = ("amp", "lt", "gt", "apos", "quot")


@dataclasses.dataclass(frozen=True, repr=False)
class Sample:
    """One malformed input: where it goes, the bytes, and the defect it carries."""

    stage: str
    kind: str
    data: bytes

    def __repr__(self) -> str:  # short: hypothesis represents every failing sample, some are a megabyte long
        return f"Sample({self.describe(80)})"

    def _repr_pretty_(self, printer, cycle: bool) -> None:  # what hypothesis' printer uses for dataclasses
        printer.text(repr(self))

    def describe(self, limit: int = 160) -> str:
        head = self.data[:limit]
        more = f"… ({len(self.data)} bytes)" if len(self.data) > limit else ""
        return f"{self.kind} at stage {self.stage}: {head!r}{more}"


# -- builders ------------------------------------------------------------------------------------------------------


def header(domain: str, *, content_ns: str = CLIENT, stream_ns: str = STREAM_NS, root: str = "stream:stream",
           prolog: bytes = PROLOG, extra: str = "") -> bytes:
    """An opening stream header (RFC 6120 §4.7), every part of it chosen by the caller."""
    standard = stream_header(to=domain).removeprefix(PROLOG)
    text = standard.decode().replace(f"xmlns='{CLIENT}'", f"xmlns='{escape_attr(content_ns)}'", 1)
    text = text.replace(f"xmlns:stream='{STREAM_NS}'", f"xmlns:stream='{escape_attr(stream_ns)}'", 1)
    text = text.replace("<stream:stream ", f"<{root} ", 1)
    if extra:
        text = text[:-1] + " " + extra + ">"
    return prolog + text.encode()


def entity_chain(text: str, levels: int = 2, fanout: int = 2) -> tuple[bytes, str]:
    """An internal DTD subset declaring a bounded chain of entities: e0 is `text`, each next one `fanout` references
    to the one before. Returns the DOCTYPE declaration and the name of the top entity, whose expansion is `text`
    repeated fanout**(levels - 1) times (at most 9 times with the bounds below, never a real billion laughs)."""
    if not (1 <= levels <= MAX_ENTITY_LEVELS and 1 <= fanout <= MAX_ENTITY_FANOUT):
        raise ValueError(f"entity chain out of bounds: {levels} levels, fan-out {fanout}")
    decls = [f"<!ENTITY e0 '{escape_attr(text)}'>"]
    for level in range(1, levels):
        decls.append(f"<!ENTITY e{level} '" + f"&e{level - 1};" * fanout + "'>")
    return f"<!DOCTYPE stream:stream [{''.join(decls)}]>".encode(), f"e{levels - 1}"


def expansion(text: str, levels: int = 2, fanout: int = 2) -> str:
    """What a parser that expands `entity_chain(text, levels, fanout)` makes of its top entity."""
    return text * fanout ** (levels - 1)


def header_declaring_entities(domain: str, text: str, levels: int = 2, fanout: int = 2) -> tuple[bytes, str]:
    """A stream header preceded by an internal DTD subset (RFC 6120 §11.1 restricts both); and the top entity."""
    doctype, top = entity_chain(text, levels, fanout)
    return header(domain, prolog=PROLOG + doctype), top


def message_referencing(to: str, entity: str, stanza_id: str) -> bytes:
    return (f"<message to='{escape_attr(to)}' type='chat' id='{escape_attr(stanza_id)}'><body>&{entity};</body>"
            f"</message>").encode()


def ping(domain: str, stanza_id: str, payload: bytes = b"", attrs: bytes = b"") -> bytes:
    """An XEP-0199 ping to the service carrying `payload` inside <ping/> (a request no one else ever sees)."""
    return (f"<iq type='get' to='{escape_attr(domain)}' id='{escape_attr(stanza_id)}'>"
            f"<ping xmlns='{PING}'").encode() + attrs + b">" + payload + b"</ping></iq>"


def oversized_ping(domain: str, stanza_id: str, size: int) -> bytes:
    """A ping exactly `size` bytes long (at least its envelope), the surplus as character data."""
    envelope = ping(domain, stanza_id, f"<data xmlns='{FILLER_NS}'></data>".encode())
    fill = max(size - len(envelope), 0)
    return ping(domain, stanza_id, f"<data xmlns='{FILLER_NS}'>".encode() + b"A" * fill + b"</data>")


def nested(depth: int, name: str = "x") -> bytes:
    """`depth` elements, each the only child of the one before, in a namespace nobody understands."""
    if depth < 1:
        return b""
    return (f"<{name} xmlns='{DEEP_NS}'>".encode() + f"<{name}>".encode() * (depth - 1)
            + f"</{name}>".encode() * depth)


def deep_ping(domain: str, stanza_id: str, depth: int) -> bytes:
    """A ping whose payload nests `depth` levels below <ping/> (depth + 2 below the stream root)."""
    return ping(domain, stanza_id, nested(depth))


def sasl_probe() -> bytes:
    """A SASL <auth/> for a mechanism nobody offers: on a live stream before authentication the IUT answers it with
    <failure/> and keeps the stream, so the answer shows that the stream survived what came before."""
    return f"<auth xmlns='{SASL}' mechanism='X-IMPP-CONFORMANCE-NONE'/>".encode()


def max_sample_bytes(oversize: int, max_depth: int) -> int:
    """Upper bound on the length of any sample `samples(domain, oversize, max_depth)` draws."""
    return max(oversize, 8 * max_depth) + 4096


# -- strategies ----------------------------------------------------------------------------------------------------

_NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8)
_TEXT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789 -", max_size=24)


@st.composite
def _carrier(draw, domain: str) -> tuple[bytes, bytes]:
    """A stanza split around the place where a defect goes: (before, after). Addressed to the service itself, so
    a server that wrongly takes it delivers it to no user."""
    kind = draw(st.sampled_from(("iq", "message", "presence")))
    sid = f"m{draw(st.integers(0, 999))}"
    text = draw(_TEXT).encode()
    if kind == "iq":
        return (f"<iq type='get' to='{domain}' id='{sid}'><ping xmlns='{PING}'>".encode() + text,
                b"</ping></iq>")
    if kind == "message":
        return f"<message to='{domain}' type='normal' id='{sid}'><body>".encode() + text, b"</body></message>"
    return f"<presence id='{sid}'><status>".encode() + text, b"</status></presence>"


@st.composite
def _laughs(draw) -> tuple[bytes, str]:
    text = "impp-entity-" + draw(_NAME)
    return entity_chain(text, draw(st.integers(1, MAX_ENTITY_LEVELS)), draw(st.integers(1, MAX_ENTITY_FANOUT)))


@st.composite
def _header_sample(draw, domain: str) -> Sample:
    kind = draw(st.sampled_from(HEADER_KINDS))
    if kind == "dtd":
        doctype, top = draw(_laughs())
        before, after = draw(_carrier(domain))
        data = header(domain, prolog=PROLOG + doctype) + before + f"&{top};".encode() + after
    elif kind == "bad-header":
        variant = draw(st.sampled_from(("stream-namespace", "content-namespace", "root", "host")))
        word = draw(_NAME)
        if variant == "stream-namespace":
            data = header(domain, stream_ns=f"urn:example:{word}")
        elif variant == "content-namespace":
            data = header(domain, content_ns=f"urn:example:{word}")
        elif variant == "root":
            data = header(domain, root=draw(st.sampled_from(("stream:features", "stream:" + word, "message"))))
        else:
            data = header(f"{word}.invalid")
    elif kind == "invalid-utf8":
        data = header(domain, extra=f"id='{draw(_NAME)}'")
        data = data[:-2] + draw(st.sampled_from(INVALID_UTF8)) + data[-2:]  # inside the last attribute's value
    elif kind == "restricted":
        if draw(st.booleans()):
            data = PROLOG + f"<!--{draw(_TEXT)}-->".encode() + header(domain, prolog=b"")
        else:
            data = PROLOG + f"<?{draw(_NAME)}x {draw(_TEXT)}?>".encode() + header(domain, prolog=b"")
    else:  # truncated: the header cut short, then the stream's closing tag
        full = header(domain)
        data = full[:draw(st.integers(len(PROLOG) + 1, len(full) - 1))] + STREAM_CLOSE
    return Sample("header", kind, data)


@st.composite
def _content_sample(draw, domain: str, stage: str, oversize: int, max_depth: int) -> Sample:
    kind = draw(st.sampled_from(CONTENT_KINDS))
    before, after = draw(_carrier(domain))
    if kind == "dtd":
        doctype, _ = draw(_laughs())
        data = before + doctype + after
    elif kind == "entity":
        name = draw(_NAME.filter(lambda n: n not in PREDEFINED_ENTITIES))
        data = before + f"&{name};".encode() + after
    elif kind == "deep":
        data = before + nested(draw(st.integers(MIN_DEPTH, max(max_depth, MIN_DEPTH)))) + after
    elif kind == "huge-attribute":
        size = draw(st.integers(oversize, oversize + 1024))
        data = before + f"<data xmlns='{FILLER_NS}' value='".encode() + b"A" * size + b"'/>" + after
    elif kind == "invalid-utf8":
        bad = draw(st.sampled_from(INVALID_UTF8))
        if draw(st.booleans()):
            data = before + bad + after
        else:
            data = before + f"<data xmlns='{FILLER_NS}' value='".encode() + bad + b"'/>" + after
    elif kind == "unknown-namespace":
        word = draw(_NAME)
        variant = draw(st.sampled_from(("namespace", "prefix", "element")))
        if variant == "namespace":  # a first-level element of a namespace the server does not know
            data = f"<{word} xmlns='urn:example:unknown:{word}'/>".encode()
        elif variant == "prefix":  # a prefix nobody declared: not namespace-well-formed
            data = f"<{word}:message to='{domain}'/>".encode()
        else:  # an element jabber:client does not have at the first level
            data = f"<{word}x/>".encode()
    elif kind == "bad-syntax":
        variant = draw(st.sampled_from(("mismatched", "duplicate-attribute", "unquoted", "lt-in-attribute",
                                        "digit-name", "bare-ampersand", "unclosed-tag")))
        data = {
            "mismatched": before + b"</wrong>" + after,
            "duplicate-attribute": before + f"<data xmlns='{FILLER_NS}' a='1' a='2'/>".encode() + after,
            "unquoted": before + f"<data xmlns='{FILLER_NS}' a=1/>".encode() + after,
            "lt-in-attribute": before + f"<data xmlns='{FILLER_NS}' a='<'/>".encode() + after,
            "digit-name": before + b"<1data/>" + after,
            "bare-ampersand": before + b" & " + after,
            "unclosed-tag": before + b"<data " + after,
        }[variant]
    elif kind == "restricted":
        inner = f"<!--{draw(_TEXT)}-->" if draw(st.booleans()) else f"<?{draw(_NAME)}x {draw(_TEXT)}?>"
        data = before + inner.encode() + after
    else:  # truncated: the stanza cut short, then the stream's closing tag
        full = before + after
        data = full[:draw(st.integers(1, len(full) - 1))] + STREAM_CLOSE
    return Sample(stage, kind, data)


def samples(domain: str, *, stages: tuple[str, ...] = STAGES, oversize: int = 1024 * 1024,
            max_depth: int = 2 * MIN_DEPTH) -> st.SearchStrategy[Sample]:
    """Malformed input for streams to `domain`: each sample has exactly one defect that ends the stream at a
    conformant server (restricted XML, not well-formed, invalid namespace, unknown host, policy violation). A huge
    attribute is `oversize` to `oversize + 1024` bytes long (pass the IUT's stanza limit plus one); nesting is
    MIN_DEPTH to `max_depth` deep."""
    unknown = set(stages) - set(STAGES)
    if unknown:
        raise ValueError(f"unknown stage(s) {sorted(unknown)}; known: {', '.join(STAGES)}")

    @st.composite
    def draw_sample(draw) -> Sample:
        stage = draw(st.sampled_from(stages))
        if stage == "header":
            return draw(_header_sample(domain))
        return draw(_content_sample(domain, stage, oversize, max_depth))
    return draw_sample()
