"""Retry policy: when to try again and how long to wait, as pure arithmetic.

Exponential backoff with full jitter (``sleep = U(0, min(cap, base * 2**(attempt-1)))``), a
cap, a maximum number of retries, and ``Retry-After`` respected as a lower bound.  The random
draw is passed in, so the policy is deterministic under test and both runners (async and
threads) share it unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Strategy = Literal["exponential", "linear", "fixed"]


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do after a failed attempt: retry after ``delay`` seconds, or give up."""

    retry: bool
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a transient failure is retried."""

    max_retries: int = 5
    base: float = 0.05
    cap: float = 5.0
    strategy: Strategy = "exponential"

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.base < 0 or self.cap < 0:
            raise ValueError("base and cap must be >= 0")

    def ceiling(self, attempt: int) -> float:
        """The largest delay allowed after failed attempt number ``attempt`` (1-based)."""
        n = max(1, attempt)
        if self.strategy == "exponential":
            raw = self.base * 2.0 ** min(n - 1, 62)
        elif self.strategy == "linear":
            raw = self.base * n
        else:
            raw = self.base
        return min(self.cap, raw)

    def decide(
        self, attempt: int, *, retryable: bool, jitter: float, retry_after: float | None = None
    ) -> Decision:
        """Decide after attempt ``attempt`` failed; ``jitter`` is a uniform draw in [0, 1)."""
        if not retryable or attempt > self.max_retries:
            return Decision(retry=False)
        delay = jitter * self.ceiling(attempt)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.cap))
        return Decision(retry=True, delay=delay)
