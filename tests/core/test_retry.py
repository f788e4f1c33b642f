from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from async_etl.core.retry import RetryPolicy


@given(
    attempt=st.integers(min_value=1, max_value=200),
    jitter=st.floats(min_value=0.0, max_value=0.999999),
    strategy=st.sampled_from(["exponential", "linear", "fixed"]),
)
def test_delay_is_full_jitter_below_the_capped_ceiling(
    attempt: int, jitter: float, strategy: str
) -> None:
    """Every retry delay lies in [0, min(cap, ceiling)] and scales with the jitter draw."""
    policy = RetryPolicy(max_retries=1000, base=0.1, cap=3.0, strategy=strategy)  # type: ignore[arg-type]
    decision = policy.decide(attempt, retryable=True, jitter=jitter)
    assert decision.retry
    assert 0.0 <= decision.delay <= 3.0
    assert abs(decision.delay - jitter * policy.ceiling(attempt)) < 1e-12


def test_exponential_ceiling_doubles_until_the_cap() -> None:
    """The exponential ceiling doubles per attempt and then stays at the cap."""
    policy = RetryPolicy(base=0.5, cap=3.0)
    assert [policy.ceiling(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_gives_up_after_max_retries_and_on_fatal_errors() -> None:
    """Attempt max_retries+1 is not retried, nor is a non-retryable error."""
    policy = RetryPolicy(max_retries=2)
    assert policy.decide(2, retryable=True, jitter=0.5).retry
    assert not policy.decide(3, retryable=True, jitter=0.5).retry
    assert not policy.decide(1, retryable=False, jitter=0.5).retry


def test_retry_after_is_a_lower_bound_capped_by_the_cap() -> None:
    """A server's Retry-After raises the delay, but never above the policy cap."""
    policy = RetryPolicy(base=0.01, cap=2.0)
    assert policy.decide(1, retryable=True, jitter=0.0, retry_after=1.5).delay == 1.5
    assert policy.decide(1, retryable=True, jitter=0.0, retry_after=60).delay == 2.0


@given(
    attempt=st.integers(min_value=1, max_value=50),
    jitter=st.floats(min_value=0.0, max_value=0.999999),
)
def test_network_failures_wait_at_least_half_a_slower_ceiling(attempt: int, jitter: float) -> None:
    """A refused connection waits U(c/2, c) with c grown from connect_base, never ~0 s."""
    policy = RetryPolicy(max_retries=100, base=0.05, cap=5.0, connect_base=0.5)
    ceiling = policy.ceiling(attempt, network=True)
    assert ceiling == min(5.0, 0.5 * 2.0 ** (attempt - 1))
    delay = policy.decide(attempt, retryable=True, jitter=jitter, network=True).delay
    assert ceiling / 2 <= delay <= ceiling


def test_default_network_retries_span_seconds() -> None:
    """With the bench defaults, five retries of a refused connection wait 6.25 s at least."""
    policy = RetryPolicy(max_retries=5, base=0.05, cap=5.0)
    waits = [policy.decide(n, retryable=True, jitter=0.0, network=True) for n in range(1, 7)]
    assert [w.retry for w in waits] == [True] * 5 + [False]
    assert sum(w.delay for w in waits) == 0.25 + 0.5 + 1.0 + 2.0 + 2.5


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"base": math.nan}, "base, connect_base and cap must be finite numbers >= 0"),
        ({"cap": math.inf}, "base, connect_base and cap must be finite numbers >= 0"),
        ({"connect_base": math.nan}, "base, connect_base and cap must be finite numbers >= 0"),
        ({"strategy": "exponental"}, "strategy must be one of exponential, linear, fixed"),
    ],
)
def test_a_policy_that_would_not_pace_as_written_is_refused(
    kwargs: dict[str, Any], problem: str
) -> None:
    """NaN / inf delays and a misspelt strategy (it backed off as 'fixed') raise ValueError."""
    with pytest.raises(ValueError, match=problem):
        RetryPolicy(**kwargs)


@pytest.mark.parametrize(("retries", "kept"), [(0, 0), (1, 1), (6, 1)])
def test_at_most_caps_the_retries_and_keeps_the_pacing(retries: int, kept: int) -> None:
    """``at_most(1)`` (the ledger's forget): one retry at most, paced as the job's policy."""
    policy = RetryPolicy(max_retries=retries, base=0.2, cap=5.0, strategy="linear")
    capped = policy.at_most(1)
    assert capped.max_retries == kept
    assert (capped.base, capped.cap, capped.strategy) == (0.2, 5.0, "linear")
    assert capped.decide(1, retryable=True, jitter=0.5).retry is (kept >= 1)
    assert not capped.decide(2, retryable=True, jitter=0.5).retry


def test_from_attempts_takes_the_retry_sections_words():
    """``from_attempts(max_attempts, base_delay, max_delay)``: attempts - 1 retries, same delays."""
    made = RetryPolicy.from_attempts(max_attempts=7, base_delay=0.2, max_delay=5.0)
    assert made == RetryPolicy(max_retries=6, base=0.2, cap=5.0, strategy="exponential")
    assert RetryPolicy.from_attempts(1, 0.5, 2.0, "fixed") == RetryPolicy(0, 0.5, 2.0, "fixed")
    with pytest.raises(ValueError, match=r"^max_attempts must be >= 1, got 0$"):
        RetryPolicy.from_attempts(0, 0.2, 5.0)


def test_the_job_and_plan_files_retry_is_from_attempts():
    """A job file's and a plan file's ``[retry]`` give what ``from_attempts`` gives their keys."""
    from async_etl.orchestrator.plan import RetrySettings

    settings = RetrySettings(max_attempts=4, strategy="linear", base_delay=0.3, max_delay=9.0)
    assert settings.policy() == RetryPolicy.from_attempts(4, 0.3, 9.0, "linear")
