from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from async_etl.orchestrator.breaker import Breaker, Breakers, BreakerState, Gate, Outcome, Ticket


def fail_n(b: Breaker, n: int, now: float) -> list[str]:
    events = []
    for _ in range(n):
        ticket, ev = b.start(now)
        events += ev
        events += b.finish(ticket, now, "transient")
    return [e.new.value for e in events]


def test_opens_after_k_consecutive_transient_failures() -> None:
    """K consecutive transient failures open the breaker; a success in between resets the count."""
    b = Breaker("db", threshold=3, cooldown=10.0)
    assert fail_n(b, 2, 0.0) == []
    t, _ = b.start(0.0)
    assert b.finish(t, 0.0, "success") == []
    assert fail_n(b, 2, 1.0) == [] and b.state is BreakerState.CLOSED
    assert fail_n(b, 1, 2.0) == ["open"]
    assert not b.allows(5.0) and b.reopens_at() == 12.0


def test_half_open_lets_exactly_one_trial_through_and_closes_on_success() -> None:
    """After the cool-down one trial starts (half-open); its success closes the breaker."""
    b = Breaker("db", threshold=1, cooldown=5.0)
    assert fail_n(b, 1, 0.0) == ["open"]
    assert b.allows(5.0)
    trial, events = b.start(5.0)
    assert trial.trial and [e.new for e in events] == [BreakerState.HALF_OPEN]
    assert not b.allows(5.0)
    with pytest.raises(RuntimeError):
        b.start(5.0)
    (event,) = b.finish(trial, 6.0, "success")
    assert (event.old, event.new, event.target) == (
        BreakerState.HALF_OPEN,
        BreakerState.CLOSED,
        "db",
    )
    assert b.allows(6.0)


def test_failed_trial_reopens_and_stopped_trial_gives_its_place_back() -> None:
    """A transient trial failure reopens with a new cool-down; a stopped trial changes nothing."""
    b = Breaker("db", threshold=1, cooldown=5.0)
    fail_n(b, 1, 0.0)
    trial, _ = b.start(5.0)
    assert [e.new.value for e in b.finish(trial, 6.0, "transient")] == ["open"]
    assert not b.allows(10.0) and b.allows(11.0)
    trial, _ = b.start(11.0)
    assert b.finish(trial, 12.0, "stopped") == [] and b.state is BreakerState.HALF_OPEN
    assert b.allows(12.0)


def test_results_of_jobs_started_before_opening_are_ignored() -> None:
    """A success from a job launched before the breaker opened does not close it."""
    b = Breaker("db", threshold=1, cooldown=5.0)
    early, _ = b.start(0.0)
    fail_n(b, 1, 0.0)
    assert b.finish(early, 1.0, "success") == [] and b.state is BreakerState.OPEN


def test_breakers_are_per_target() -> None:
    """Each target has its own breaker; next_reopen is the earliest open one."""
    bs = Breakers(threshold=1, cooldown=3.0)
    fail_n(bs["a"], 1, 1.0)
    assert bs["b"].allows(1.0) and not bs["a"].allows(1.0)
    assert bs.next_reopen() == 4.0


@given(st.lists(st.tuples(st.sampled_from(["start", "finish"]),
                          st.sampled_from(["success", "transient", "permanent", "stopped"]),
                          st.floats(0, 3)), max_size=60))  # fmt: skip
def test_never_more_than_one_trial_in_flight(ops: list[tuple[str, Outcome, float]]) -> None:
    """Whatever happens, at most one half-open trial runs and OPEN never admits a job early."""
    b = Breaker("db", threshold=2, cooldown=2.0)
    now = 0.0
    running: list[Ticket] = []
    for op, outcome, dt in ops:
        now += dt
        if op == "start":
            if b.state is BreakerState.OPEN and b.opened_at is not None:
                assert b.allows(now) == (now >= b.opened_at + 2.0)
            if b.allows(now):
                running.append(b.start(now)[0])
        elif running:
            b.finish(running.pop(0), now, outcome)
        assert sum(t.trial for t in running) <= 1
        assert b.trial_running == any(t.trial for t in running)


def test_the_gate_says_any_job_one_trial_or_none() -> None:
    """gate(): OPEN while closed, SHUT while open or its trial runs, TRIAL once cooled down."""
    b = Breaker("db", threshold=1, cooldown=5.0)
    assert b.gate(0.0) is Gate.OPEN
    fail_n(b, 1, 0.0)
    assert b.gate(4.9) is Gate.SHUT and b.gate(5.0) is Gate.TRIAL
    trial, _ = b.start(5.0)
    assert b.gate(5.0) is Gate.SHUT
    b.finish(trial, 6.0, "success")
    assert b.gate(6.0) is Gate.OPEN
