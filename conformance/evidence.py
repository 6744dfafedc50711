"""Evidence per test: the transcript of every connection the harness opened, with credentials redacted, and a pcap
of the same connections as they crossed the wire (decryptable with the case's TLS key log)."""

from __future__ import annotations

import re
from pathlib import Path

from conformance.transport.pcap import write_pcap
from conformance.transport.wire import Recorder

# SASL payloads carry passwords (PLAIN) or proofs an attacker could test passwords against (SCRAM): never written.
_SECRETS = re.compile(rb"(<(?:auth|response)\b[^>]*>)([^<]+)(</(?:auth|response)>)")


def redact(data: bytes) -> bytes:
    return _SECRETS.sub(rb"\1[redacted]\3", data)


def slug(nodeid: str) -> str:
    """`module.py::test[param]` -> `module/test[param]`: one evidence directory per test, grouped by module."""
    path, _, name = nodeid.rpartition("::")
    module = Path(path).stem if path else "suite"
    clean = re.sub(r"[^A-Za-z0-9_.\-\[\]]+", "_", name)[:150]
    return f"{module}/{clean}"


def render_transcript(recorder: Recorder, title: str, notes: tuple[str, ...] = ()) -> str:
    lines = [f"# {title}", "# time (s) | connection | direction | data (application layer; SASL payloads redacted)", ""]
    for chunk in recorder.chunks:
        if chunk.layer == "tcp":
            continue
        if chunk.layer == "event":
            lines.append(f"{chunk.t:9.3f}  {chunk.connection:<18} ..  {chunk.note}")
            continue
        arrow = "->" if chunk.direction == "out" else "<-"
        text = redact(chunk.data).decode("utf-8", errors="replace")
        lines.append(f"{chunk.t:9.3f}  {chunk.connection:<18} {arrow}  {text}")
    if recorder.truncated:
        lines.append("# (recording truncated at its byte limit)")
    lines.extend(f"# ({note})" for note in notes)
    return "\n".join(lines) + "\n"


def write_case_evidence(directory: Path, recorder: Recorder, title: str) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    notes: tuple[str, ...] = ()
    pcap = directory / "capture.pcap"
    try:
        if write_pcap(recorder, pcap):
            files["pcap"] = pcap
    except Exception as exc:  # the pcap is a convenience; the transcript and the report must be written regardless
        notes = (f"no capture.pcap: {type(exc).__name__}: {exc}",)
    transcript = directory / "transcript.txt"
    transcript.write_text(render_transcript(recorder, title, notes), encoding="utf-8")
    return {"transcript": transcript, **files}
