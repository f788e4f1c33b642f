"""The knee search against simulated servers: doubling, bisection, the SLO."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from async_etl.core.knee import KneeSearch, Point


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
