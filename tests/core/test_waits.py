from __future__ import annotations

import pytest

from async_etl.core.waits import WAIT_RULE, wait_problem


@pytest.mark.parametrize("seconds", [0.5, 1, 5.0, 1e-3, 3600])
def test_a_finite_positive_number_of_seconds_bounds_a_wait(seconds: float) -> None:
    """Any finite number > 0 (int or float) is a wait's limit: no problem."""
    assert wait_problem(seconds) is None


@pytest.mark.parametrize(
    "seconds", [0, 0.0, -1, float("nan"), float("inf"), float("-inf"), True, "5", None]
)
def test_anything_else_is_refused_in_one_line_naming_it(seconds: object) -> None:
    """0, negatives, NaN, infinities, a bool, text, None: one line, the rule and the value."""
    assert wait_problem(seconds) == f"{WAIT_RULE}, got {seconds!r}"


def test_the_refusal_quotes_what_the_user_typed() -> None:
    """``shown`` replaces the value's repr (the text typed, not the float it became)."""
    assert wait_problem(-1.0, "'-1'") == f"{WAIT_RULE}, got '-1'"
