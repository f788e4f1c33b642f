"""The knee search against simulated servers: doubling, bisection, the SLO."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from async_etl.core.knee import THRESHOLD, KneeSearch, Point, RatePoint, RateSearch


def server(knee: int, growth: float = 0.1, service_ms: float = 20.0):  # type: ignore[no-untyped-def]
    """A closed-loop point at concurrency c for a server serving ``knee`` at once."""

    def measure(c: int) -> Point:
        busy = min(c, knee)
        service = service_ms * (1 + growth * busy / knee)
        latency = service * max(1.0, c / knee)
        return Point(c, c / latency * 1000.0, latency, latency)

    return measure


def search(measure, **kw: object) -> KneeSearch:  # type: ignore[no-untyped-def]
    """Run the search to the end against ``measure``."""
    found = KneeSearch(**kw)  # type: ignore[arg-type]
    while (level := found.next_level()) is not None:
        found.record(measure(level))
    return found


def test_doubles_then_bisects_to_the_knee() -> None:
    """Capacity 24: doubling to 64 (flat past 32), then bisection reports 24, not 32."""
    found = search(server(24), maximum=256)
    knee = found.knee()
    assert knee is not None and knee.concurrency == 24
    assert {1, 2, 4, 8, 16, 32, 64} <= {p.concurrency for p in found.curve()}
    assert "stopped growing" in knee.reason


@given(knee=st.integers(2, 300), growth=st.floats(0, 0.3))
def test_the_knee_is_found_within_a_quarter(knee: int, growth: float) -> None:
    """For any capacity up to the maximum, the reported knee is within ±25 % of it."""
    found = search(server(knee, growth), maximum=1024)
    result = found.knee()
    assert result is not None
    assert abs(result.concurrency - knee) <= 0.25 * knee
    assert len(found.points) <= 2 * 11 + 4


def test_an_slo_on_p99_caps_the_knee() -> None:
    """With p99 <= 30 ms and latency rising past 16, the knee stays where p99 meets the SLO."""
    found = search(server(16, growth=0.0, service_ms=20.0), slo_p99_ms=30.0)
    knee = found.knee()
    assert knee is not None and knee.p99_ms <= 30.0
    assert "over the SLO" in found.stop_reason


def test_no_level_meets_the_slo() -> None:
    """When even concurrency 1 breaks the SLO there is no knee and nothing more to measure."""
    found = search(server(8, service_ms=50.0), slo_p99_ms=10.0)
    assert found.knee() is None and found.next_level() is None


def test_bad_search_settings() -> None:
    """A start above the maximum or a threshold of 1 is a ValueError."""
    with pytest.raises(ValueError, match="start"):
        KneeSearch(start=8, maximum=4)
    with pytest.raises(ValueError, match="threshold"):
        KneeSearch(threshold=1.0)


def sink(capacity: float, base_ms: float = 20.0):  # type: ignore[no-untyped-def]
    """An open-loop point at a target rate for a sink that takes ``capacity`` rows/s: past it
    the achieved rate is the capacity and the backlog shows in the latency from due."""

    def measure(target: float) -> RatePoint:
        achieved = min(target, capacity)
        backlog_ms = 0.0 if target <= capacity else 1000.0 * (target / capacity - 1)
        return RatePoint(target, achieved, base_ms + backlog_ms / 2, base_ms + backlog_ms)

    return measure


def rate_search(measure, **kw: object) -> RateSearch:  # type: ignore[no-untyped-def]
    """Run the rate search to the end against ``measure``."""
    found = RateSearch(**kw)  # type: ignore[arg-type]
    while (rate := found.next_rate()) is not None:
        found.record(measure(rate))
    return found


@given(capacity=st.floats(500, 5_000_000), start=st.floats(100, 10_000))
def test_the_rate_knee_is_the_capacity_within_the_resolution(capacity: float, start: float) -> None:
    """Doubling then bisection ends within 1/8 below the capacity (or the threshold above)."""
    found = rate_search(sink(capacity), start=start, maximum=1e8)
    knee = found.knee()
    assert knee is not None, found.curve()
    assert capacity * (1 - 1 / 8) / (1 + 1 / 8) <= knee.target <= capacity / (1 - THRESHOLD)
    assert knee.reason.startswith(
        f"at {min(p.target for p in found.curve() if p.target > knee.target):,.0f} rows/s only"
    )
    assert len(found.curve()) <= 30


def test_the_rate_slo_stops_the_climb_before_the_capacity() -> None:
    """A p99 SLO of 20 ms: rates that keep up but queue are not held; the reason says so."""

    def measure(target: float) -> RatePoint:
        return RatePoint(target, target, 5.0, 5.0 + target / 1000.0)

    found = rate_search(measure, start=1000.0, maximum=1e6, slo_p99_ms=20.0)
    knee = found.knee()
    assert knee is not None and 15_000 * (1 - 1 / 8) <= knee.target <= 15_000
    assert "over the SLO" in knee.reason


def test_a_start_rate_not_held_halves_and_none_held_is_reported() -> None:
    """Start above the capacity: halving finds a held rate; a sink that holds none: no knee."""
    found = rate_search(sink(3000.0), start=50_000.0, maximum=1e6)
    knee = found.knee()
    assert knee is not None and 3000 * 7 / 8 / (1 + 1 / 8) <= knee.target <= 3000 / 0.95
    dead = rate_search(lambda t: RatePoint(t, 0.0, 1.0, 1.0), start=1000.0)
    assert dead.knee() is None and len(dead.curve()) == 7


def test_a_sink_faster_than_the_maximum_rate_stops_there() -> None:
    """Every rate held up to the maximum: the knee is the maximum, and the reason says so."""
    found = rate_search(sink(1e9), start=1000.0, maximum=64_000.0)
    knee = found.knee()
    assert knee is not None and knee.target == 64_000.0
    assert knee.reason == "reached the maximum rate 64,000 rows/s"


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"start": 0.0}, "start rate"),
        ({"start": 10.0, "maximum": 5.0}, "start rate"),
        ({"threshold": 1.0}, "threshold"),
        ({"resolution": 0.0}, "resolution"),
    ],
)
def test_rate_search_refuses_bad_settings(kw: dict[str, float], message: str) -> None:
    """A start <= 0 or above the maximum, a threshold or resolution outside (0, 1): ValueError."""
    with pytest.raises(ValueError, match=message):
        RateSearch(**kw)  # type: ignore[arg-type]
