"""Evidence per test: the transcript of every connection the harness opened, with credentials redacted, and a pcap
of the same connections as they crossed the wire (decryptable with the case's TLS key log)."""

from __future__ import annotations

import re
from collections.abc import Iterator
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


def transcript_lines(recorder: Recorder, title: str, notes: tuple[str, ...] = ()) -> Iterator[str]:
    """The transcript line by line (each ending in a newline), so that writing it never holds a second copy of a
    recording that may be as large as the recorder's byte limit (a hostile IUT can fill it)."""
    yield f"# {title}\n"
    yield "# time (s) | connection | direction | data (application layer; SASL payloads redacted)\n\n"
    for chunk in recorder.chunks:
        if chunk.layer == "tcp":
            continue
        if chunk.layer == "event":
            yield f"{chunk.t:9.3f}  {chunk.connection:<18} ..  {chunk.note}\n"
            continue
        arrow = "->" if chunk.direction == "out" else "<-"
        text = redact(chunk.data).decode("utf-8", errors="replace")
        yield f"{chunk.t:9.3f}  {chunk.connection:<18} {arrow}  {text}\n"
    if recorder.truncated:
        yield "# (recording truncated at its byte limit)\n"
    for note in notes:
        yield f"# ({note})\n"


STANDARD_FILES = ("transcript.txt", "capture.pcap", "tls-keys.log", "harness-error.txt")


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
    with transcript.open("w", encoding="utf-8") as out:
        out.writelines(transcript_lines(recorder, title, notes))
    # what a test wrote there itself (e.g. the first and the shrunk malformed sample of a fuzzing run)
    extra = {path.name: path for path in sorted(directory.iterdir())
             if path.is_file() and path.name not in STANDARD_FILES}
    return {"transcript": transcript, **files, **extra}
