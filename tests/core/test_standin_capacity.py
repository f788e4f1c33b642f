"""The stand-in's capacity model: service time under load and stalls, decided without I/O."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from async_etl.testing.crate.capacity import CapacityModel


def test_service_time_grows_with_requests_in_service() -> None:
    """With growth 0.5 and capacity 4, the 4th request in service takes 1.375 x latency."""
    model = CapacityModel(latency_ms=100, capacity=4, growth=0.5)
    times = []
    for _ in range(4):
        model.admit(0.0)
        times.append(model.service_s())
    assert times == [0.1, 0.1 * (1 + 0.5 / 4), 0.1 * (1 + 1.0 / 4), 0.1 * (1 + 1.5 / 4)]


def test_unlimited_capacity_keeps_the_fixed_latency() -> None:
    """Capacity 0 means no model: the service time is latency_ms whatever the load."""
    model = CapacityModel(latency_ms=20, capacity=0, growth=0.5)
    for _ in range(50):
        model.admit(0.0)
    assert model.service_s() == 0.02


def test_every_nth_request_starts_a_stall_that_holds_everyone() -> None:
    """stall_every=3: the 3rd admission freezes the server for stall_ms; later ones wait it out."""
    model = CapacityModel(latency_ms=1, capacity=2, stall_every=3, stall_ms=1000)
    model.admit(10.0)
    model.admit(10.0)
    assert model.hold_s(10.0) == 0.0
    model.admit(10.5)
    assert model.stalls == 1
    assert model.hold_s(10.5) == 1.0
    assert model.hold_s(11.0) == 0.5
    assert model.hold_s(11.6) == 0.0


@given(
    capacity=st.integers(1, 64),
    growth=st.floats(0, 2),
    arrivals=st.lists(st.booleans(), min_size=1, max_size=200),
)
def test_busy_count_follows_admissions_and_releases(
    capacity: int, growth: float, arrivals: list[bool]
) -> None:
    """Busy equals admissions minus releases, and the service time never falls below latency."""
    model = CapacityModel(latency_ms=10, capacity=capacity, growth=growth)
    busy = 0
    for admit in arrivals:
        if admit and busy < capacity:
            model.admit(0.0)
            busy += 1
            assert model.service_s() >= 0.01
        elif busy:
            model.release()
            busy -= 1
        assert model.busy == busy
