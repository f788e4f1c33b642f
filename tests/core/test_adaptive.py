"""The adaptive concurrency controller against simulated servers: knee, errors, bounds."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from async_etl.core.adaptive import (
    CONVERGENCE_STEPS,
    AdaptiveSettings,
    Observation,
    VegasController,
)


class QueueingServer:
    """C* requests served at once; service time grows by up to ``growth``; the rest queue."""

    def __init__(self, knee: int, service_s: float, growth: float, noise: float = 0.0) -> None:
        self.knee, self.service_s, self.growth, self.noise = knee, service_s, growth, noise
        self.rng = random.Random(knee)

    def window(self, limit: int) -> Observation:
        """A closed-loop window at ``limit`` in flight: the median latency it would measure."""
        busy = min(limit, self.knee)
        service = self.service_s * (1 + self.growth * busy / self.knee)
        latency = service * max(1.0, limit / self.knee) * (1 + self.rng.uniform(0, self.noise))
        return Observation(latency_s=latency, completed=100, peak_in_flight=limit)


def run(ctl: VegasController, server: QueueingServer, steps: int) -> list[int]:
    """The limit after each of ``steps`` windows."""
    limits = []
    for _ in range(steps):
        ctl.observe(server.window(ctl.limit))
        limits.append(ctl.limit)
    return limits


def settled_within(limits: list[int], knee: int) -> int:
    """The number of windows after which every limit stays within ±20 % of the knee."""
    outside = [i for i, limit in enumerate(limits) if abs(limit - knee) > 0.2 * knee]
    return max(outside, default=-1) + 1


@settings(max_examples=300, deadline=None)
@given(
    knee=st.integers(8, 256),
    service_s=st.floats(0.001, 0.2),
    growth=st.floats(0, 0.12),
    start=st.data(),
)
def test_converges_to_the_knee_within_the_documented_steps(
    knee: int, service_s: float, growth: float, start: st.DataObject
) -> None:
    """From any start up to half the knee, the limit settles within ±20 % of C* in time."""
    initial = start.draw(st.integers(1, max(1, knee // 2)))
    ctl = VegasController(AdaptiveSettings(maximum=4 * knee, initial=initial))
    limits = run(ctl, QueueingServer(knee, service_s, growth), 4 * CONVERGENCE_STEPS)
    assert settled_within(limits, knee) <= CONVERGENCE_STEPS


@settings(max_examples=200, deadline=None)
@given(knee=st.integers(16, 256), service_s=st.floats(0.001, 0.2), growth=st.floats(0, 0.12))
def test_converges_with_noisy_latency(knee: int, service_s: float, growth: float) -> None:
    """With 3 % latency noise and C* >= 16 the limit still settles within ±20 % of C*."""
    ctl = VegasController(AdaptiveSettings(maximum=4 * knee))
    limits = run(ctl, QueueingServer(knee, service_s, growth, noise=0.03), 4 * CONVERGENCE_STEPS)
    assert settled_within(limits, knee) <= CONVERGENCE_STEPS


@pytest.mark.parametrize("initial", [2, 40, 100])
def test_backs_off_on_errors(initial: int) -> None:
    """A window with failed attempts (errors, 429, 503) multiplies the limit by the backoff."""
    ctl = VegasController(AdaptiveSettings(initial=initial, maximum=128, backoff=0.7))
    change = ctl.observe(Observation(latency_s=0.01, completed=10, errors=3, peak_in_flight=1))
    assert change is not None and change.reason == "errors"
    assert ctl.limit == max(1, int(initial * 0.7))
    assert not ctl.slow_start


def test_sheds_load_below_a_server_that_answers_busy_past_its_capacity() -> None:
    """A server answering 429 past 50 in flight (latency flat): the limit saws below ~50."""
    ctl = VegasController(AdaptiveSettings(maximum=1000))
    seen = []
    for _ in range(200):
        limit = ctl.limit
        ctl.observe(
            Observation(latency_s=0.02, completed=100, errors=int(limit > 50), peak_in_flight=limit)
        )
        seen.append(ctl.limit)
    tail = seen[50:]
    assert max(tail) <= 50 + max(1, round(0.05 * 50))
    assert sum(tail) / len(tail) >= 0.7 * 50


def test_an_unused_limit_does_not_grow() -> None:
    """Headroom grows the limit only when the peak in flight reached it (no idle inflation)."""
    ctl = VegasController(AdaptiveSettings(initial=8))
    assert ctl.observe(Observation(latency_s=0.01, completed=50, peak_in_flight=3)) is None
    assert ctl.limit == 8


@settings(max_examples=300, deadline=None)
@given(
    bounds=st.tuples(st.integers(1, 64), st.integers(0, 64)),
    windows=st.lists(
        st.tuples(st.floats(0, 10), st.integers(0, 500), st.integers(0, 5), st.integers(0, 400)),
        max_size=60,
    ),
)
def test_never_leaves_its_bounds(
    bounds: tuple[int, int], windows: list[tuple[float, int, int, int]]
) -> None:
    """Whatever it observes, the limit stays within [minimum, maximum]."""
    low, extra = bounds
    ctl = VegasController(AdaptiveSettings(minimum=low, maximum=low + extra, initial=low))
    for latency, completed, errors, peak in windows:
        change = ctl.observe(Observation(latency, completed, errors, peak))
        assert low <= ctl.limit <= low + extra
        if change is not None:
            assert change.new == ctl.limit and change.old != change.new


def test_settings_refuse_inconsistent_bounds() -> None:
    """A minimum above the maximum, or alpha above beta, is a ValueError."""
    with pytest.raises(ValueError, match="minimum"):
        AdaptiveSettings(minimum=10, maximum=5)
    with pytest.raises(ValueError, match="alpha"):
        AdaptiveSettings(alpha=0.3, beta=0.2)
