from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from async_etl.core.plan import (
    BatchPlanner,
    Step,
    generation_window,
    next_step,
    plan_batches,
    queue_size,
)
from async_etl.typing import IdRange


@given(
    start=st.integers(min_value=-(10**12), max_value=10**12),
    total=st.integers(min_value=0, max_value=20_000),
    batch_size=st.integers(min_value=1, max_value=5_000),
)
def test_batches_cover_the_range_exactly_once(start: int, total: int, batch_size: int) -> None:
    """Batches are contiguous, disjoint, never larger than batch_size and cover every id."""
    batches = plan_batches(start, total, batch_size)
    ids = [i for b in batches for i in range(b.start, b.stop)]
    assert ids == list(range(start, start + total))
    assert all(1 <= b.count <= batch_size for b in batches)


@given(batch_size=st.integers(min_value=1, max_value=1000), n=st.integers(0, 50))
def test_endless_planner_keeps_going_and_tracks_issued(batch_size: int, n: int) -> None:
    """An endless plan issues full batches and its issued_range spans exactly what it issued."""
    planner = BatchPlanner(start=7, batch_size=batch_size)
    for _ in range(n):
        ids = planner.next()
        assert ids is not None and ids.count == batch_size
    assert planner.issued_range.start == 7
    assert planner.issued_range.count == n * batch_size
    assert not planner.exhausted


def test_bounded_planner_reports_exhaustion() -> None:
    """After the last batch the planner is exhausted and returns None."""
    planner = BatchPlanner(start=1, batch_size=3, total=7)
    counts = []
    while (ids := planner.next()) is not None:
        counts.append(ids.count)
    assert counts == [3, 3, 1]
    assert planner.exhausted and planner.next() is None


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"batch_size": 1, "total": -1}])
def test_invalid_planner_arguments_are_refused(kwargs: dict[str, int]) -> None:
    """A zero batch size or a negative total is a programming error."""
    with pytest.raises(ValueError):
        BatchPlanner(start=1, **kwargs)


@given(batch_size=st.integers(min_value=1, max_value=100_000))
def test_units_group_small_batches_only(batch_size: int) -> None:
    """Units hold >= 4000 rows (at most 32 batches); batches of >= 4000 rows go alone."""
    from async_etl.core.plan import batches_per_unit

    k = batches_per_unit(batch_size)
    assert 1 <= k <= 32
    assert k == 32 or k * batch_size >= 4000
    if batch_size >= 4000:
        assert k == 1


def test_a_stop_wins_over_the_deadline_and_issues_nothing() -> None:
    """A requested stop ends the producer without a reason and without issuing ids."""
    planner = BatchPlanner(start=1, batch_size=10)
    assert next_step(planner, stopping=True, now=5.0, deadline=1.0) == Step(None)
    assert planner.issued == 0


def test_the_deadline_stops_with_its_reason() -> None:
    """At or past the deadline the step says stop for "duration"; before it, the next range."""
    planner = BatchPlanner(start=1, batch_size=10)
    assert next_step(planner, stopping=False, now=2.0, deadline=2.0) == Step(None, "duration")
    assert next_step(planner, stopping=False, now=1.0, deadline=2.0) == Step(IdRange(1, 10))
    assert next_step(planner, stopping=False, now=9.0, deadline=None) == Step(IdRange(11, 10))


def test_an_exhausted_plan_ends_without_a_reason() -> None:
    """A bounded plan's last step is Step(None) with no stop reason."""
    planner = BatchPlanner(start=1, batch_size=10, total=10)
    assert next_step(planner, stopping=False, now=0.0, deadline=None).ids == IdRange(1, 10)
    assert next_step(planner, stopping=False, now=0.0, deadline=None) == Step(None)


@given(workers=st.integers(0, 64))
def test_window_and_queue_grow_with_the_generators(workers: int) -> None:
    """Two units generate per worker (at least two inline); the queue holds at least 4."""
    assert generation_window(workers) == 2 * max(1, workers)
    assert queue_size(workers) == max(4, 2 * workers)
