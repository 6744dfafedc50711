"""`@case("IMPP-5.1-2")`: binds a test to a catalogue case; the ID, level and quote come from the catalogue."""

from __future__ import annotations

import pytest

from conformance import catalogue

MARKER = "impp_case"


def case(case_id: str, step: str | None = None):
    """Mark a conformance test. `step` names a sub-step whose catalogue level differs from the case's."""
    entry = catalogue.get(case_id)  # an unknown ID fails at import, so it can never reach a report
    entry.level_of(step)
    return getattr(pytest.mark, MARKER)(case_id, step=step)


def case_of(item) -> tuple[str, str | None] | None:
    marker = item.get_closest_marker(MARKER)
    if marker is None:
        return None
    return marker.args[0], marker.kwargs.get("step")
