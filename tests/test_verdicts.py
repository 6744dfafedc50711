"""Verdicts follow the level of the statement, and the exit code follows the verdicts (README tables)."""

import pytest

from conformance.verdicts import (ControlFailed, NotApplicable, SetupFailed, Unsupported, Verdict, Violation,
                                  exit_code, verdict_for)


@pytest.mark.parametrize("level, verdict", [("MUST", Verdict.FAIL), ("MUST*", Verdict.FAIL), ("SHOULD", Verdict.WARN),
                                            ("OPEN", Verdict.WARN), ("MAY", Verdict.INFO)])
def test_a_violation_is_judged_by_the_level_of_its_statement(level, verdict):
    assert verdict_for(Violation("x"), level) is verdict
    assert verdict_for(AssertionError("x"), level) is verdict
    assert verdict_for(None, level) is Verdict.PASS


@pytest.mark.parametrize("exc, verdict", [(ControlFailed("x"), Verdict.ERROR), (SetupFailed("x"), Verdict.ERROR),
                                          (Unsupported("x"), Verdict.UNSUPPORTED), (NotApplicable("x"), Verdict.NA),
                                          (RuntimeError("x"), Verdict.ERROR), (TimeoutError(), Verdict.ERROR)])
def test_what_the_harness_could_not_tell_is_never_a_pass_or_a_fail(exc, verdict):
    assert verdict_for(exc, "MUST") is verdict


@pytest.mark.parametrize("verdicts, strict, code", [
    ([Verdict.PASS, Verdict.NA], False, 0),
    ([Verdict.PASS, Verdict.WARN, Verdict.INFO], False, 0),
    ([Verdict.PASS, Verdict.WARN], True, 1),
    ([Verdict.FAIL, Verdict.ERROR], False, 1),
    ([Verdict.PASS, Verdict.ERROR], False, 3),
    ([Verdict.XPASS], False, 1),
    ([Verdict.XFAIL, Verdict.UNSUPPORTED], False, 0),
])
def test_exit_codes(verdicts, strict, code):
    assert exit_code(verdicts, strict) == code
