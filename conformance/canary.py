"""Canaries: unique tokens planted in what a test publishes, so delivery and leaks are found by searching for them."""

from __future__ import annotations

import re
import uuid


def make(case_id: str, label: str) -> str:
    short = re.sub(r"[^0-9A-Za-z._]", "", case_id.removeprefix("IMPP-").replace("-", "_"))
    return f"CAN-{short}-{label}-{uuid.uuid4().hex[:10]}"
