"""The shim's events (contract.py EVENTS): one JSON object per line on standard output, flushed at once so the
harness sees each as it happens."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO


class Reporter:
    def __init__(self, out: TextIO | None = None):
        self.out = out or sys.stdout
        self.gone = False  # the harness stopped reading: nothing more to say, but the client still ends cleanly

    def __call__(self, event: str, **fields: Any) -> None:
        if self.gone:
            return
        line = json.dumps({"event": event, **{k: v for k, v in fields.items() if v is not None}})
        try:
            self.out.write(line + "\n")
            self.out.flush()
        except (BrokenPipeError, ValueError, OSError):
            self.gone = True

    def received(self, kind: str, **fields: Any) -> None:
        self("received", kind=kind, **fields)
