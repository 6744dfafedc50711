"""Pcap evidence: each recorded connection becomes a TCP conversation that scapy reads back consistently and that
tshark dissects as XMPP, decrypting what follows STARTTLS with the case's TLS key log."""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import subprocess

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.utils import rdpcap

from conformance.evidence import write_case_evidence
from conformance.transport import pcap
from conformance.transport.wire import Recorder

from suite_runs import run_cli

HEADER = (b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          b"xmlns:stream='http://etherx.jabber.org/streams' to='iut.test' version='1.0'>")
FEATURES = (b"<stream:stream from='iut.test' id='1' version='1.0'><stream:features><starttls "
            b"xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>")
STARTTLS = b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
PROCEED = b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
CLIENT_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)) * 2
SERVER_FLIGHT = b"\x17\x03\x03" + bytes(i % 251 for i in range(130_000))  # more than two segments' worth


def tcp(recorder: Recorder, label: str, direction: str, data: bytes) -> None:
    """One read or write as the connection records it: the bytes on the socket, and (ignored here) the app layer."""
    recorder.add(label, direction, "tcp", data)
    recorder.add(label, direction, "app", b"(plaintext of the above)")


def two_connections() -> Recorder:
    """alice: a plaintext XMPP stream up to STARTTLS over IPv4; bob: TLS-looking bytes over IPv6, interleaved."""
    recorder = Recorder()
    recorder.endpoint("alice").local, recorder.endpoints["alice"].remote = ("127.0.0.1", 50123), ("127.0.0.1", 5222)
    recorder.endpoint("bob").local, recorder.endpoints["bob"].remote = ("::1", 50124), ("::1", 5222)
    recorder.event("alice", "connected 127.0.0.1:5222")
    tcp(recorder, "alice", "out", HEADER)
    recorder.event("bob", "connected [::1]:5222")
    tcp(recorder, "bob", "out", CLIENT_HELLO)
    tcp(recorder, "alice", "in", FEATURES)
    tcp(recorder, "bob", "in", SERVER_FLIGHT)
    tcp(recorder, "alice", "out", STARTTLS)
    tcp(recorder, "bob", "out", b"\x17\x03\x03\x00\x20" + b"\xaa" * 32)
    tcp(recorder, "alice", "in", PROCEED)
    recorder.event("alice", "peer closed the connection")
    return recorder


def flags(packet) -> str:
    return str(packet[TCP].flags)


def conversations(packets) -> dict[int, list]:
    """Packets grouped by the harness's (local) port, in file order; the remote port is 5222."""
    by_port: dict[int, list] = collections.defaultdict(list)
    for packet in packets:
        segment = packet[TCP]
        by_port[segment.sport if segment.dport == 5222 else segment.dport].append(packet)
    return by_port


def test_each_connection_is_a_tcp_conversation_with_consistent_numbers(tmp_path):
    recorder = two_connections()
    path = tmp_path / "capture.pcap"
    assert pcap.write_pcap(recorder, path) is True
    packets = rdpcap(str(path))
    times = [float(p.time) for p in packets]
    assert times == sorted(times), "packets are written in recorded order"
    by_port = conversations(packets)
    assert sorted(by_port) == [50123, 50124]
    for label, port, network in (("alice", 50123, IP), ("bob", 50124, IPv6)):
        conversation = by_port[port]
        assert all(network in p for p in conversation), f"{label}: one address family per the endpoints"
        names = [flags(p) for p in conversation]
        assert names[:3] == ["S", "SA", "A"] and names[-3:] == ["FA", "FA", "A"], names
        assert set(names[3:-3]) == {"PA"}, names
        chunks = [c for c in recorder.chunks if c.connection == label]
        assert times_of(conversation[:3]) == [recorder.wall_started + chunks[0].t] * 3, "handshake at the first record"
        assert times_of(conversation[-3:]) == [recorder.wall_started + chunks[-1].t] * 3, "FINs at the last record"
        assert times_of(conversation[3:-3]) == [recorder.wall_started + c.t for c in chunks if c.layer == "tcp"
                                                for _ in range(0, len(c.data), pcap.MAX_SEGMENT)], "data at its time"

        following: dict[str, int] = {}  # next sequence number expected from each side
        streams = {"out": b"", "in": b""}
        for packet in conversation:
            segment = packet[TCP]
            side = "out" if segment.dport == 5222 else "in"
            other = "in" if side == "out" else "out"
            payload = bytes(segment.payload)
            if flags(packet) == "S":
                following[side] = segment.seq + 1
                continue
            if flags(packet) == "SA":
                following[side] = segment.seq
            assert segment.seq == following[side] % 2**32, f"{label} {side}: sequence number"
            assert segment.ack == following[other] % 2**32, f"{label} {side}: acknowledges all the other side sent"
            assert len(payload) <= pcap.MAX_SEGMENT
            following[side] += len(payload) + (1 if "S" in flags(packet) or "F" in flags(packet) else 0)
            streams[side] += payload
        for side in ("out", "in"):
            assert streams[side] == b"".join(c.data for c in chunks if c.layer == "tcp" and c.direction == side)
    assert sum(1 for p in by_port[50124] if len(p[TCP].payload)) == 5, "the 130003-byte flight in three segments"
    for packet in packets:
        assert_checksums_valid(packet)


def times_of(packets) -> list[float]:
    return [pytest.approx(float(p.time), abs=1e-6) for p in packets]


def assert_checksums_valid(packet) -> None:
    rebuilt = packet.copy()
    del rebuilt[TCP].chksum
    if IP in rebuilt:
        del rebuilt[IP].chksum
    rebuilt = rebuilt.__class__(bytes(rebuilt))
    assert rebuilt[TCP].chksum == packet[TCP].chksum
    if IP in packet:
        assert rebuilt[IP].chksum == packet[IP].chksum


def test_connections_without_recorded_addresses_get_stable_loopback_ones(tmp_path):
    def recording() -> Recorder:
        recorder = Recorder()
        recorder.endpoint("alice")  # connected, but its addresses were never learnt
        tcp(recorder, "alice", "out", HEADER)
        tcp(recorder, "relay", "in", FEATURES)  # a label without an endpoint at all
        recorder.wall_started = 1_700_000_000.0
        return recorder

    a, b = tmp_path / "a.pcap", tmp_path / "b.pcap"
    pcap.write_pcap(recording(), a)
    pcap.write_pcap(recording(), b)
    packets = rdpcap(str(a))
    assert {p[IP].src for p in packets} == {"127.0.0.1"}
    assert {(p[TCP].sport, p[TCP].dport) for p in packets if flags(p) == "S"} == {(40000, 5222), (40001, 5222)}
    assert [bytes(p) for p in packets] == [bytes(p) for p in rdpcap(str(b))], "same recording, same packets"


def test_nothing_on_the_wire_means_no_pcap(tmp_path):
    recorder = Recorder()
    recorder.endpoint("alice")
    recorder.event("alice", "connect to 127.0.0.1:5222 failed: refused")
    assert pcap.write_pcap(recorder, tmp_path / "capture.pcap") is False
    assert not (tmp_path / "capture.pcap").exists()
    assert write_case_evidence(tmp_path / "case", recorder, "t").keys() == {"transcript"}


def test_every_case_gets_a_pcap_next_to_its_transcript(tmp_path):
    files = write_case_evidence(tmp_path, two_connections(), "t")
    assert files == {"transcript": tmp_path / "transcript.txt", "pcap": tmp_path / "capture.pcap"}
    assert len(rdpcap(str(files["pcap"]))) > 10


@pytest.mark.parametrize("where", ["import", "midway"])
def test_a_failing_scapy_costs_the_pcap_only(tmp_path, monkeypatch, where):
    if where == "import":
        def broken(self):
            raise ImportError("No module named 'scapy'")
        monkeypatch.setattr(pcap._Framer, "__init__", broken)
    else:
        real, calls = pcap._Framer.frame, []

        def broken(self, segment):
            calls.append(segment)
            if len(calls) > 5:
                raise ValueError("cannot frame this")
            return real(self, segment)
        monkeypatch.setattr(pcap._Framer, "frame", broken)
    files = write_case_evidence(tmp_path, two_connections(), "t")
    assert files == {"transcript": tmp_path / "transcript.txt"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["transcript.txt"], "no pcap, not even half of one"
    assert "no capture.pcap" in files["transcript"].read_text()


# -- end to end: the suite's own pcaps through tshark -------------------------------------------------------------

TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (Debian: apt-get install tshark)")

# One test whose unauthenticated stream stays plaintext (next to TLS streams), one where every stream goes TLS.
PLAINTEXT = "test_no_stanza_is_taken_in_plaintext"
TLS_ONLY = "test_messages_carry_the_authenticated_sender"
LINE = re.compile(r"^\s*[\d.]+\s+(\S+)\s+(->|<-|\.\.)\s\s(.*)$")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    """The two tests run by the CLI against the reference service; per test: pcap, key log, connections."""
    out = tmp_path_factory.mktemp("pcap-run")
    done = run_cli("run", "--case", "IMPP-T1-4", "--case", "IMPP-5.2-2", "-k", f"{PLAINTEXT} or {TLS_ONLY}",
                   "--out", str(out), "--run-id", "pcap")
    run_dir = out / "pcap"
    assert (run_dir / "results.json").exists(), done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((run_dir / "results.json").read_text())
    port = int(report["target"]["address"].rsplit(":", 1)[1])
    tests = {}
    for test in report["tests"]:
        name = test["nodeid"].rpartition("::")[2]
        evidence = {kind: run_dir / path for kind, path in test["evidence"].items()}
        lines = [m.groups() for m in map(LINE.match, evidence["transcript"].read_text().splitlines()) if m]
        tests[name] = {"pcap": evidence["pcap"], "keylog": evidence["tls-keylog"], "port": port, "lines": lines,
                       "config": out}
    assert sorted(tests) == sorted([PLAINTEXT, TLS_ONLY]), report["tests"]
    return tests


def tshark(test: dict, display_filter: str, *fields: str, keys: bool = False) -> list[list[str]]:
    """Rows of `fields` for every frame matching the filter; XMPP on the reference's port, decrypted if `keys`."""
    args = [TSHARK, "-n", "-r", str(test["pcap"]), "-d", f"tcp.port=={test['port']},xmpp",
            "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE", "-Y", display_filter,
            "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=|", *[a for f in fields for a in ("-e", f)]]
    if keys:
        args += ["-o", f"tls.keylog_file:{test['keylog']}"]
    env = {**os.environ, "WIRESHARK_CONFIG_DIR": str(test["config"])}  # no personal preferences or Decode As
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    return [line.split("\t") for line in done.stdout.splitlines()]


def bodies(lines, connections=None) -> collections.Counter:
    return collections.Counter(body for label, arrow, text in lines if arrow != ".." and
                               (connections is None or label in connections)
                               for body in re.findall(r"<body>([^<]*)</body>", text))


@needs_tshark
@pytest.mark.parametrize("name", [PLAINTEXT, TLS_ONLY])
def test_tshark_follows_every_connection_without_complaint(run, name):
    test = run[name]
    connected = {label for label, arrow, text in test["lines"] if text.startswith("connected ")}
    assert len(tshark(test, "tcp.flags.syn == 1 && tcp.flags.ack == 0", "tcp.stream")) == len(connected) >= 3
    assert len(tshark(test, "tcp.flags.fin == 1", "tcp.stream")) == 2 * len(connected)
    # Retransmission, lost or out-of-order segment, ACK of unseen data, bad checksums: all from wrong numbers.
    bad = "tcp.analysis.flags || tcp.checksum.status == 0 || ip.checksum.status == 0"
    assert tshark(test, bad, "frame.number", "_ws.expert.message") == []


@needs_tshark
def test_the_plaintext_part_is_xmpp_to_tshark(run):
    test = run[PLAINTEXT]
    tls = {label for label, arrow, text in test["lines"] if text.startswith("TLS established")}
    plain = {label for label, arrow, text in test["lines"] if arrow != ".."} - tls
    assert tls and plain, "the case has TLS and plaintext connections"
    assert len(tshark(test, "xmpp.starttls", "tcp.stream")) == len(tshark(test, "xmpp.proceed", "tcp.stream")) \
        == len(tshark(test, "tls.handshake.type == 1", "tcp.stream")) == len(tls)
    assert len(tshark(test, "xmpp.stream", "tcp.stream")) >= 2 * len(tls | plain), "each side's stream header"
    in_clear = bodies(test["lines"], plain)
    assert in_clear and collections.Counter(
        b for [value] in tshark(test, "xmpp.message", "xml.cdata") for b in value.split("|")) == in_clear
    assert tshark(test, "xmpp && tls", "frame.number") == [], "nothing after STARTTLS is XMPP without the keys"


@needs_tshark
@pytest.mark.parametrize("name", [PLAINTEXT, TLS_ONLY])
def test_with_the_key_log_tshark_decrypts_the_xmpp_after_starttls(run, name):
    test = run[name]
    decrypted = tshark(test, "xmpp && tls", "tcp.stream", "_ws.col.Info", keys=True)
    assert len({stream for stream, info in decrypted}) == len(
        {label for label, arrow, text in test["lines"] if text.startswith("TLS established")})
    messages = tshark(test, "xmpp.message", "xml.cdata", keys=True)
    assert collections.Counter(b for [value] in messages for b in value.split("|")) == bodies(test["lines"])
    jids = {jid for [value] in tshark(test, "xmpp.iq.bind.jid", "xmpp.iq.bind.jid", keys=True)
            for jid in value.split("|")}
    assert jids == set(re.findall(r"<jid>([^<]+)</jid>", "".join(text for *_, text in test["lines"])))
    assert {jid.split("@")[0] for jid in jids} == {"alice", "bob", "mallory"}
