"""The requirements as data: every case of the test catalogue, with its section, level, quote and IUT role.

Reports, `impp-conformance list`, the verdict mapping and the kill matrix are all generated from these files
(`cases.toml`, `statements.toml`); test code names a case only by its ID.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import tomllib
from importlib import resources

LEVELS = ("MUST", "MUST*", "SHOULD", "MAY", "OPEN")
STEP_LEVELS = ("MUST", "SHOULD", "MAY")
CASE_ID = re.compile(r"^IMPP-(5\.\d+|T1|2)-\d+$")
SECTION_ORDER = [f"5.{n}" for n in range(1, 15)] + ["T1", "2"]


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    section: str
    area: str
    level: str
    level_note: str
    iut: str
    title: str
    statements: tuple[str, ...]
    quote: str
    check: str
    xmpp: str
    sip: str
    pass_criteria: str
    remediation: str
    step_levels: dict[str, str]
    not_applicable: dict[str, str]

    def level_of(self, step: str | None) -> str:
        """The level that decides the verdict of a test of this case (a sub-step may be weaker)."""
        if step is None:
            return self.level
        try:
            return self.step_levels[step]
        except KeyError:
            raise KeyError(f"{self.id} has no sub-step {step!r} with its own level in the catalogue") from None

    @property
    def section_title(self) -> str:
        prefix = "§" if self.section[0].isdigit() else ""
        return f"{prefix}{self.section} {self.area}"


@dataclasses.dataclass(frozen=True)
class Statement:
    id: str
    section: str
    level: str
    text: str
    cases: tuple[str, ...]


class CatalogueError(Exception):
    pass


def _read(name: str) -> dict:
    return tomllib.loads(resources.files(__package__).joinpath(name).read_text(encoding="utf-8"))


@functools.cache
def cases() -> dict[str, Case]:
    result: dict[str, Case] = {}
    for raw in _read("cases.toml")["case"]:
        raw = dict(raw)
        raw["statements"] = tuple(raw["statements"])
        raw.setdefault("step_levels", {})
        raw.setdefault("not_applicable", {})
        case = Case(**raw)
        if not CASE_ID.match(case.id) or case.id in result:
            raise CatalogueError(f"bad or duplicate case id {case.id!r}")
        if case.level not in LEVELS or any(v not in STEP_LEVELS for v in case.step_levels.values()):
            raise CatalogueError(f"{case.id}: unknown level")
        result[case.id] = case
    return result


@functools.cache
def statements() -> dict[str, Statement]:
    return {raw["id"]: Statement(raw["id"], raw["section"], raw["level"], raw["text"], tuple(raw["cases"]))
            for raw in _read("statements.toml")["statement"]}


def get(case_id: str) -> Case:
    try:
        return cases()[case_id]
    except KeyError:
        raise CatalogueError(f"{case_id} is not a case of the catalogue") from None


def section_key(section: str) -> int:
    return SECTION_ORDER.index(section) if section in SECTION_ORDER else len(SECTION_ORDER)
