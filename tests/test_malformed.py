"""The malformed-XMPP builders and strategies (conformance/adapters/xmpp/malformed.py) and the bounded fuzz runner
(conformance/attacker/fuzz.py): samples are bounded, reproducible from a seed, and each carries a defect."""

from __future__ import annotations

import time

import pytest
from hypothesis import Phase, given, settings, strategies as st
from hypothesis import seed as hypothesis_seed

from conformance.adapters.xmpp import malformed
from conformance.adapters.xmpp.codec.xml import Limits, StreamParser, UnitReceived, XmlError
from conformance.attacker import fuzz

DOMAIN = "iut.test"
OVERSIZE = 20_000
HEADER = malformed.header(DOMAIN)


def _draw(count: int, seed: int, **kwargs) -> list[malformed.Sample]:
    drawn: list[malformed.Sample] = []

    @hypothesis_seed(seed)
    @settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate])
    @given(malformed.samples(DOMAIN, oversize=OVERSIZE, **kwargs))
    def collect(sample):
        drawn.append(sample)
    collect()
    return drawn


def test_samples_are_reproducible_from_their_seed():
    assert [s.data for s in _draw(40, 7)] == [s.data for s in _draw(40, 7)]
    assert [s.data for s in _draw(40, 7)] != [s.data for s in _draw(40, 8)]


@settings(max_examples=300, database=None, deadline=None)
@given(malformed.samples(DOMAIN, oversize=OVERSIZE))
def test_every_sample_is_bounded_and_refused_by_a_restricted_parser(sample):
    assert len(sample.data) <= malformed.max_sample_bytes(OVERSIZE, 2 * malformed.MIN_DEPTH)
    assert sample.stage in malformed.STAGES
    data = sample.data if sample.stage == "header" else HEADER + sample.data
    parser = StreamParser(Limits(max_unit_bytes=OVERSIZE - 1))
    if sample.kind in ("unknown-namespace", "bad-header"):
        return  # well-formed XML a server refuses for what it means (namespace, host, root), not for its syntax
    with pytest.raises(XmlError):
        parser.feed(data)


def test_the_stages_asked_for_are_the_only_ones_drawn():
    assert {s.stage for s in _draw(30, 1, stages=("header",))} == {"header"}
    with pytest.raises(ValueError):
        malformed.samples(DOMAIN, stages=("nowhere",))


def test_an_entity_chain_is_small_and_expands_as_declared():
    doctype, top = malformed.entity_chain("CAN", levels=3, fanout=3)
    assert top == "e2" and len(doctype) < 200
    assert malformed.expansion("CAN", 3, 3) == "CAN" * 9
    for levels, fanout in ((4, 2), (2, 4), (0, 1)):
        with pytest.raises(ValueError):
            malformed.entity_chain("CAN", levels, fanout)
    # a parser that expands entities (the reference's flaw 'entities-expanded') makes exactly that of it
    header, top = malformed.header_declaring_entities(DOMAIN, "CAN", 2, 2)
    events = StreamParser(expand_internal_entities=True).feed(header + malformed.message_referencing("b@x", top, "1"))
    body = [e for e in events if isinstance(e, UnitReceived)][0].element[0].text
    assert body == malformed.expansion("CAN", 2, 2)
    with pytest.raises(XmlError) as refused:
        StreamParser().feed(header)
    assert refused.value.condition == "restricted-xml"


def test_an_oversized_stanza_has_the_size_asked_for_and_is_refused_with_a_policy_violation():
    stanza = malformed.oversized_ping(DOMAIN, "big", 262_145)
    assert len(stanza) == 262_145
    with pytest.raises(XmlError) as refused:
        StreamParser(Limits(max_unit_bytes=262_144)).feed(HEADER + stanza)  # arrives whole, in one read
    assert refused.value.condition == "policy-violation"
    events = StreamParser(Limits(max_unit_bytes=262_145)).feed(HEADER + stanza)
    assert any(isinstance(e, UnitReceived) for e in events)


def test_deep_nesting_is_built_without_recursion_and_refused():
    stanza = malformed.deep_ping(DOMAIN, "deep", 10_000)
    assert stanza.count(b"<x") == 10_000 and stanza.count(b"</x>") == 10_000
    with pytest.raises(XmlError) as refused:
        StreamParser().feed(HEADER + stanza)
    assert refused.value.condition == "policy-violation"


def test_the_fuzz_runner_shrinks_a_failure_and_records_it():
    sent: list[int] = []

    def probe(n: int) -> str | None:
        sent.append(n)
        return "taken" if n >= 1000 else None

    run = fuzz.run(st.integers(0, 100_000), probe, examples=50, seconds=10, seed=3)
    assert run.failures and run.shrunk is not None
    assert run.shrunk.sample == 1000 and run.shrunk.detail == "taken"
    assert run.first is not None and run.first.sample >= 1000
    assert run.probed == len(sent) == len(set(sent))  # a sample judged once is not sent again


def test_the_fuzz_runner_stops_probing_when_its_time_is_up():
    def slow(n: int) -> str | None:
        time.sleep(0.05)
        return None

    started = time.monotonic()
    run = fuzz.run(st.integers(0, 10**6), slow, examples=1000, seconds=0.3, seed=0)
    assert run.out_of_time and run.probed < 20 and not run.failures
    assert time.monotonic() - started < 5


def test_the_fuzz_runner_is_reproducible():
    def probe(n: int) -> str | None:
        return "odd" if n % 2 else None

    one = fuzz.run(st.integers(0, 10**6), probe, examples=30, seconds=10, seed=11)
    two = fuzz.run(st.integers(0, 10**6), probe, examples=30, seconds=10, seed=11)
    assert [f.sample for f in one.failures] == [f.sample for f in two.failures]
    assert one.shrunk.sample == two.shrunk.sample == 1
