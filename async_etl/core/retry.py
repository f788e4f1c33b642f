"""Retry policy: when to try again and how long to wait, as pure arithmetic.

Exponential backoff with full jitter (``sleep = U(0, min(cap, base * 2**(attempt-1)))``), a
cap, a maximum number of retries, and ``Retry-After`` respected as a lower bound.  The random
draw is passed in, so the policy is deterministic under test and both runners (async and
threads) share it unchanged.

A *network* failure (connection refused or lost: the server is down or restarting) is paced on
a slower clock: the ceiling grows from ``connect_base`` (default 0.5 s) instead of ``base``, and
the draw is "equal jitter" (``U(ceiling/2, ceiling)``), so the retries of one failure span
seconds, the time a server takes to come back, instead of milliseconds: with the defaults
five retries wait 6.25-12.5 s in all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from async_etl.errors import AsyncEtlError, ErrorKind

Strategy = Literal["exponential", "linear", "fixed"]
STRATEGIES: tuple[Strategy, ...] = ("exponential", "linear", "fixed")


def delays_problem(base: float, cap: float) -> str | None:
    """Why a ``[retry]`` section's ``base_delay`` / ``max_delay`` (seconds) cannot go together.

    None when ``base <= cap``.  Every wait is at most ``cap`` (``RetryPolicy.ceiling``), so a
    ``base`` above it would change nothing: the setting would be accepted and do nothing.
    """
    if base <= cap:
        return None
    return (
        f"base_delay {base:g} s is above max_delay {cap:g} s, so every wait would be "
        "max_delay and base_delay would do nothing: lower base_delay or raise max_delay"
    )


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do after a failed attempt: retry after ``delay`` seconds, or give up."""

    retry: bool
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a transient failure is retried.

    A job or plan file's ``[retry]`` names the same settings in its own words:
    ``max_attempts`` = ``max_retries + 1``, ``base_delay`` = ``base``, ``max_delay`` = ``cap``
    (``from_attempts`` builds a policy from them).  Raises ``ValueError`` for
    ``max_retries`` < 0, a delay that is negative or not a finite number, or a ``strategy``
    not in ``STRATEGIES``.
    """

    max_retries: int = 5
    base: float = 0.05
    cap: float = 5.0
    strategy: Strategy = "exponential"
    connect_base: float = 0.5

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        delays = (self.base, self.cap, self.connect_base)
        if not all(math.isfinite(d) and d >= 0 for d in delays):  # NaN passes a plain >= 0
            raise ValueError(
                f"base, connect_base and cap must be finite numbers >= 0, got base={self.base}, "
                f"connect_base={self.connect_base}, cap={self.cap}"
            )
        if self.strategy not in STRATEGIES:  # any other word backed off as "fixed"
            raise ValueError(
                f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}"
            )

    @classmethod
    def from_attempts(
        cls,
        max_attempts: int,
        base_delay: float,
        max_delay: float,
        strategy: Strategy = "exponential",
    ) -> RetryPolicy:
        """The policy a job or plan file's ``[retry]`` keys describe, in their words.

        ``max_attempts`` counts tries (the first included): ``max_retries = max_attempts - 1``;
        ``base_delay`` is ``base`` and ``max_delay`` is ``cap`` (seconds).  The one place the
        two vocabularies meet (the job and plan loaders use it).  Raises ``ValueError`` for
        ``max_attempts`` < 1, and what the constructor raises.
        """
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        return cls(max_retries=max_attempts - 1, base=base_delay, cap=max_delay, strategy=strategy)

    def ceiling(self, attempt: int, *, network: bool = False) -> float:
        """The largest delay (s) allowed after failed attempt number ``attempt`` (1-based).

        ``network``: the failure was a refused or lost connection (ceiling from ``connect_base``).
        """
        n = max(1, attempt)
        base = max(self.base, self.connect_base) if network else self.base
        if self.strategy == "exponential":
            raw = base * 2.0 ** min(n - 1, 62)
        elif self.strategy == "linear":
            raw = base * n
        else:
            raw = base
        return min(self.cap, raw)

    def at_most(self, retries: int) -> RetryPolicy:
        """The same policy with no more than ``retries`` retries (the same pacing)."""
        return replace(self, max_retries=min(self.max_retries, retries))

    def decide(
        self,
        attempt: int,
        *,
        retryable: bool,
        jitter: float,
        retry_after: float | None = None,
        network: bool = False,
    ) -> Decision:
        """Decide after attempt ``attempt`` failed; ``jitter`` is a uniform draw in [0, 1).

        ``network``: a refused or lost connection, paced from ``connect_base`` with a delay of at
        least half the ceiling (a server needs seconds to come back, not milliseconds).
        """
        if not retryable or attempt > self.max_retries:
            return Decision(retry=False)
        ceiling = self.ceiling(attempt, network=network)
        delay = ceiling * (0.5 + jitter / 2) if network else jitter * ceiling
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.cap))
        return Decision(retry=True, delay=delay)

    def after(self, attempt: int, error: AsyncEtlError, jitter: float) -> Decision:
        """``decide`` for a raised ``error``: its retryable flag, ``Retry-After`` and kind."""
        return self.decide(
            attempt,
            retryable=error.retryable,
            jitter=jitter,
            retry_after=getattr(error, "retry_after", None),
            network=error.kind is ErrorKind.NETWORK,
        )
