"""Graceful degradation of a database's parallelism: halving to the floor, doubling back."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from async_etl.core.degrade import Degradation, Step


def test_failures_halve_down_to_the_floor_and_successes_double_back() -> None:
    """Budget 8, floor 3: failures give 8->4->3 (then no step), successes 3->6->8."""
    d = Degradation("postgresql://h:5432/db", base=8, floor=3)
    steps = [d.failed("dropped"), d.failed("dropped"), d.failed("dropped")]
    assert [(s.old, s.new) for s in steps if s] == [(8, 4), (4, 3)]
    assert steps[2] is None and d.level == 3
    back = [d.succeeded(), d.succeeded(), d.succeeded()]
    assert [(s.old, s.new) for s in back if s] == [(3, 6), (6, 8)]
    assert back[2] is None
    assert steps[0] == Step("postgresql://h:5432/db", 8, 4, "transient failure: dropped")


def test_a_failure_never_lowers_the_level_below_the_running_jobs_reservations() -> None:
    """Budget 8, floor 2: with 6 then 4 held by running jobs, failures give 8->6->4, then 4->2."""
    d = Degradation("db", base=8, floor=2)
    steps = [d.failed("x", held=6), d.failed("x", held=4), d.failed("x", held=4)]
    assert [(s.old, s.new) for s in steps if s] == [(8, 6), (6, 4)]
    assert steps[2] is None
    step = d.failed("x", held=0)
    assert step is not None and (step.old, step.new) == (4, 2)


def test_a_failure_never_raises_the_level_whatever_is_held() -> None:
    """held above the current level keeps the level (a failure only ever lowers it)."""
    d = Degradation("db", base=8, floor=2)
    d.failed("x")
    assert d.level == 4
    assert d.failed("x", held=7) is None and d.level == 4


@given(st.integers(1, 64), st.data())
def test_the_level_never_drops_below_what_is_held(base: int, data: st.DataObject) -> None:
    """After any failure with ``held`` reserved, level >= min(held, the level before)."""
    floor = data.draw(st.integers(1, base))
    d = Degradation("db", base=base, floor=floor)
    for ok, held in data.draw(st.lists(st.tuples(st.booleans(), st.integers(0, 80)), max_size=40)):
        before = d.level
        step = d.succeeded() if ok else d.failed("x", held=held)
        assert floor <= d.level <= base
        assert ok or min(held, before) <= d.level <= before
        assert (step is None) == (d.level == before)


@given(st.integers(1, 64), st.data())
def test_the_level_stays_within_floor_and_base(base: int, data: st.DataObject) -> None:
    """Whatever the sequence of outcomes, floor <= level <= base and each step changes it."""
    floor = data.draw(st.integers(1, base))
    d = Degradation("db", base=base, floor=floor)
    for ok in data.draw(st.lists(st.booleans(), max_size=40)):
        before = d.level
        step = d.succeeded() if ok else d.failed("x")
        assert floor <= d.level <= base
        assert (step is None) == (d.level == before)


def test_a_floor_above_the_budget_is_refused() -> None:
    """floor > base is a ValueError."""
    with pytest.raises(ValueError, match="floor"):
        Degradation("db", base=2, floor=3)
