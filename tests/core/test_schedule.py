"""Open-loop schedules: ramps parsed, due times exact, the rate verdict."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from async_etl.core.schedule import MET_FRACTION, RateFigures, RateSchedule, RateStep


def test_ramp_parses_steps_with_units() -> None:
    """10000:30s,50000:500ms,2000:1m is three steps of 30 s, 0.5 s and 60 s."""
    ramp = RateSchedule.parse_ramp("10000:30s, 50000:500ms,2000:1m")
    assert ramp.steps == (RateStep(10000, 30.0), RateStep(50000, 0.5), RateStep(2000, 60.0))
    assert ramp.seconds == 90.5
    assert ramp.total_rows == 10000 * 30 + 25000 + 2000 * 60


@pytest.mark.parametrize("text", ["", "10000", "fast:30s", "10000:30h", "0:10s", "100:0s"])
def test_malformed_ramps_are_refused(text: str) -> None:
    """A ramp step without RATE:LENGTH, with an unknown unit or a zero is a ValueError."""
    with pytest.raises(ValueError, match=r"expected RATE:LENGTH|must be > 0"):
        RateSchedule.parse_ramp(text)


def test_due_times_follow_each_steps_rate() -> None:
    """At 100 rows/s for 2 s then 400 rows/s for 1 s: row 150 is due at 1.5 s, row 300 at 2.25."""
    ramp = RateSchedule((RateStep(100, 2.0), RateStep(400, 1.0)))
    assert ramp.due_at(0) == 0.0
    assert ramp.due_at(150) == 1.5
    assert ramp.due_at(200) == 2.0
    assert ramp.due_at(300) == 2.25
    assert ramp.due_at(600) is None
    assert ramp.mean_rows_per_s == 200.0


def test_a_constant_rate_without_end_never_runs_out() -> None:
    """--rate without --duration: every row has a due time, rows / rate seconds in."""
    schedule = RateSchedule.constant(5000)
    assert schedule.seconds is None and schedule.total_rows is None
    assert schedule.due_at(10**9) == 10**9 / 5000


def test_the_span_of_rows_is_when_the_next_row_is_due() -> None:
    """2 rows of a 1 row/s, 2 s schedule span 2 s; 3 rows of an endless 10 row/s one 0.3 s."""
    assert RateSchedule.constant(1.0, 2.0).span_of(2) == 2.0
    assert RateSchedule.constant(1.0, 2.0).span_of(1) == 1.0
    assert RateSchedule.constant(10.0).span_of(3) == pytest.approx(0.3)
    assert RateSchedule.constant(10.0).span_of(0) == 0.0


@given(
    steps=st.lists(st.tuples(st.floats(1, 1e6), st.floats(0.01, 100)), min_size=1, max_size=6),
    offsets=st.lists(st.integers(0, 10**8), min_size=2, max_size=20),
)
def test_due_times_never_go_back(steps: list[tuple[float, float]], offsets: list[int]) -> None:
    """Later rows are never due earlier, and every due time lies within the schedule."""
    schedule = RateSchedule(tuple(RateStep(rate, seconds) for rate, seconds in steps))
    total = schedule.seconds
    assert total is not None
    times = [schedule.due_at(offset) for offset in sorted(offsets)]
    known = [t for t in times if t is not None]
    assert known == sorted(known)
    assert all(0.0 <= t <= total + 1e-6 for t in known)
    assert times[len(known) :] == [None] * (len(times) - len(known))


def test_the_verdict_says_by_how_much_a_target_was_missed() -> None:
    """Half the target achieved: not met, with the share, late batches and the lag in seconds."""
    figures = RateFigures(
        target_rows_per_s=10_000,
        rows=50_000,
        span_s=10.0,
        batches=100,
        late_batches=80,
        lag_p99_ms=4900.0,
        lag_max_ms=5000.0,
    )
    assert not figures.met
    assert figures.verdict() == (
        "target 10,000 rows/s not met: achieved 5,000 rows/s (50 % of it); "
        "80 of 100 batches sent late, schedule lag up to 5.00 s"
    )
    met = RateFigures(10_000, int(10_000 * MET_FRACTION), 1.0, 10, 0, 0.0, 0.0)
    assert met.met and met.verdict().startswith("target 10,000 rows/s met")


def test_verdict_agrees_with_the_reported_figure_in_its_last_digit() -> None:
    """An achieved rate of 8,969.46 reported as 8,969.5 reads 8,970 in the verdict too."""
    figures = RateFigures(
        target_rows_per_s=20_000.0,
        rows=896_946,
        span_s=100.0,
        batches=10,
        late_batches=5,
        lag_p99_ms=1.0,
        lag_max_ms=2.0,
    )
    assert round(figures.achieved_rows_per_s, 1) == 8969.5
    assert figures.verdict().startswith("target 20,000 rows/s not met: achieved 8,970 rows/s")
