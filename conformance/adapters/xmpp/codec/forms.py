"""XEP-0004 data forms, the small part XEP-0060 node configuration needs: build a form, read its field values."""

from __future__ import annotations

from .stanza import DATA_FORMS, q
from .xml import E, Element

FORM_TYPE = "FORM_TYPE"
MAX_FIELDS = 64
MAX_VALUES = 64


def form(type_: str, fields: dict[str, list[str]], *, form_type: str | None = None,
         field_types: dict[str, str] | None = None) -> Element:
    """A form of `type_` ('form', 'submit', 'result') with one <field/> per entry, FORM_TYPE first if given."""
    x = E("x", {"type": type_}, ns=DATA_FORMS)
    if form_type is not None:
        x.append(E("field", {"var": FORM_TYPE, "type": "hidden"}, E("value", text=form_type, ns=DATA_FORMS),
                   ns=DATA_FORMS))
    for var, values in fields.items():
        field = E("field", {"var": var, "type": (field_types or {}).get(var)}, ns=DATA_FORMS)
        for value in values:
            field.append(E("value", text=value, ns=DATA_FORMS))
        x.append(field)
    return x


def values(x: Element | None) -> dict[str, list[str]]:
    """var -> values of a form (FORM_TYPE included), bounded so a hostile form cannot grow without limit."""
    result: dict[str, list[str]] = {}
    if x is None:
        return result
    for field in x.findall(q(DATA_FORMS, "field"))[:MAX_FIELDS]:
        var = field.get("var")
        if var:
            result[var] = [v.text or "" for v in field.findall(q(DATA_FORMS, "value"))[:MAX_VALUES]]
    return result


def form_type(x: Element | None) -> str | None:
    found = values(x).get(FORM_TYPE)
    return found[0] if found else None
