"""Cases the protocol family of the target cannot express: reported N/A with the catalogue's reason, not left out."""

import pytest

from conformance import catalogue
from conformance.adapters import ADAPTERS
from conformance.marks import case
from conformance.verdicts import NotApplicable

NOT_APPLICABLE = [c for c in catalogue.cases().values()
                  if c.iut == "service" and any(protocol in c.not_applicable for protocol in ADAPTERS)]


@pytest.mark.parametrize("case_id", [pytest.param(c.id, marks=case(c.id), id=c.id) for c in NOT_APPLICABLE])
def test_case_is_not_expressible_in_the_protocol(case_id, iut):
    reason = catalogue.get(case_id).not_applicable.get(iut.profile.target.protocol)
    if reason is None:
        pytest.skip(f"{case_id} applies to {iut.profile.target.protocol} but has no test yet")
    raise NotApplicable(reason)
