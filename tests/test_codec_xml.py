"""The sans-IO XML layer: restricted XML is refused, limits hold, and parsing does not depend on how bytes arrive."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.adapters.xmpp.codec.xml import (E, Limits, StreamClosed, StreamOpened, StreamParser, UnitReceived,
                                                 XmlError, serialize)

HEADER = (b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          b"xmlns:stream='http://etherx.jabber.org/streams' to='iut.test' version='1.0'>")

# Characters XML 1.0 allows in text and attribute values (no surrogates, no C0 controls but tab/newline/CR).
xml_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\ufffe\uffff",
                                 min_codepoint=0x20) | st.sampled_from("\t\n\r"), max_size=40)
names = st.sampled_from(["message", "body", "x", "item", "status", "query", "a-b", "c.d"])
namespaces = st.sampled_from(["jabber:client", "urn:example:one", "urn:example:two", None])


@st.composite
def elements(draw, depth=0):
    ns = draw(namespaces)
    tag = draw(names)
    element = E(f"{{{ns}}}{tag}" if ns else f"{{jabber:client}}{tag}",
                draw(st.dictionaries(st.sampled_from(["id", "to", "type", "k"]), xml_text, max_size=3)))
    if depth < 3:
        for child in draw(st.lists(elements(depth + 1), max_size=3)):
            element.append(child)
    text = draw(xml_text)
    element.text = text or None
    return element


def parse_units(data: bytes, chunk: int = 0) -> list:
    parser = StreamParser()
    events = []
    pieces = [data] if chunk <= 0 else [data[i:i + chunk] for i in range(0, len(data), chunk)]
    for piece in pieces:
        events += parser.feed(piece)
    return events


def shape(element: ET.Element):
    return (element.tag, dict(element.attrib), element.text or "", [shape(c) for c in element],
            element.tail or "")


@settings(max_examples=150, deadline=None)
@given(elements(), st.integers(min_value=0, max_value=17))
def test_serialized_units_parse_back_identically_however_the_bytes_arrive(element, chunk):
    data = HEADER + serialize(element, "jabber:client").encode() + b"</stream:stream>"
    events = parse_units(data, chunk)
    assert isinstance(events[0], StreamOpened)
    units = [e.element for e in events if isinstance(e, UnitReceived)]
    assert [shape(u) for u in units] == [shape(element)]
    assert isinstance(events[-1], StreamClosed)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(min_value=1, max_value=50))
def test_arbitrary_bytes_give_events_or_a_stream_error_condition_never_anything_else(noise, chunk):
    try:
        parse_units(HEADER + noise, chunk)
    except XmlError as exc:
        assert exc.condition in ("not-well-formed", "restricted-xml", "policy-violation")


@pytest.mark.parametrize("payload, condition", [
    (b"<!DOCTYPE x [<!ENTITY a 'aaaa'><!ENTITY b '&a;&a;&a;'>]>", "restricted-xml"),
    (b"<!-- a comment -->", "restricted-xml"),
    (b"<?pi target?>", "restricted-xml"),
    (b"<message>&lol;</message>", "not-well-formed"),
    (b"<message>\xff\xfe</message>", "not-well-formed"),
])
def test_restricted_xml_is_refused(payload, condition):
    data = HEADER + payload if not payload.startswith(b"<!DOCTYPE") else payload + HEADER
    with pytest.raises(XmlError) as refused:
        parse_units(data)
    assert refused.value.condition == condition


def test_billion_laughs_is_refused_before_any_expansion():
    laughs = b"<!DOCTYPE lolz [<!ENTITY lol 'lol'>" + b"".join(
        b"<!ENTITY lol%d '%s'>" % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10) for i in range(1, 10)) + b"]>"
    with pytest.raises(XmlError) as refused:
        parse_units(laughs + HEADER + b"<message>&lol9;</message>")
    assert refused.value.condition == "restricted-xml"


def test_nesting_beyond_the_limit_is_a_policy_violation():
    with pytest.raises(XmlError) as refused:
        parse_units(HEADER + b"<a>" * 100)
    assert refused.value.condition == "policy-violation"


def test_a_unit_that_never_ends_is_cut_at_the_size_limit():
    parser = StreamParser(Limits(max_unit_bytes=10_000))
    parser.feed(HEADER + b"<message><body>")
    with pytest.raises(XmlError) as refused:
        for _ in range(100):
            parser.feed(b"x" * 1000)
    assert refused.value.condition == "policy-violation"
    assert parser.fed < 20_000


def test_an_attribute_that_never_ends_is_cut_at_the_size_limit():
    parser = StreamParser(Limits(max_unit_bytes=10_000))
    parser.feed(HEADER + b"<message to='")
    with pytest.raises(XmlError):
        for _ in range(100):
            parser.feed(b"x" * 1000)


def test_a_parser_stays_failed_after_an_error():
    parser = StreamParser()
    with pytest.raises(XmlError):
        parser.feed(HEADER + b"<!-- c -->")
    with pytest.raises(XmlError):
        parser.feed(b"<presence/>")
