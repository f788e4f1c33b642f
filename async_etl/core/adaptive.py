"""Adaptive concurrency: a latency-based limit controller (TCP Vegas), as pure arithmetic.

Theory of operation
-------------------
The rule is TCP Vegas' (Brakmo & Peterson, "TCP Vegas: End to End Congestion Avoidance on a
Global Internet", IEEE JSAC 1995), in the form Netflix's ``concurrency-limits`` library uses
for request concurrency (``VegasLimit``), with AIMD's multiplicative decrease on errors (TCP
Reno, RFC 5681):

* ``baseline`` is the lowest typical latency seen: the latency of a request that did not queue.
* each window the runner reports the typical (median) latency of the requests it finished at
  the current ``limit``.  By Little's law, ``queue = limit * (1 - baseline / latency)`` requests
  of those in flight were waiting rather than being served.
* ``queue > beta`` (too many waiting): jump straight to the estimated queue-free limit,
  ``limit - queue``.  ``queue < alpha`` (headroom) and the limit was really used (the
  peak in flight reached it): grow — doubling until a queue first shows ("slow start"), then
  by ``max(1, 5 %)`` a window.  In between: hold.
* any failed attempt in the window (errors, 429, 503, timeouts) multiplies the limit by
  ``backoff`` and ends slow start.
* the limit always stays within ``[minimum, maximum]``.

Against a server with ``C*`` requests served at once and a queue behind them (latency flat up
to ``C*``, then growing in proportion to the queue), the limit settles within ±20 % of ``C*``
in at most ``CONVERGENCE_STEPS`` windows from any start at or below half the knee, for
``C* >= 8`` (``C* >= 16`` with 3 % latency noise) and a service time that grows by up to
12 % from idle to full (tested in ``tests/core/test_adaptive.py`` against a simulated
server).  A start far above the knee measures a queued latency as the baseline: start low.
The thresholds are fractions of the limit (``alpha`` 10 %, ``beta`` 15 %; at least 1 and
1.5 requests), so the settled band is the same at every scale.

The controller keeps no clock and does no I/O: the runner measures, the controller decides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

CONVERGENCE_STEPS = 15
"""Windows within which the limit settles near the knee of a queueing server (see above)."""


@dataclass(frozen=True, slots=True)
class AdaptiveSettings:
    """Bounds and thresholds of the controller; raises ``ValueError`` when inconsistent.

    ``minimum`` / ``maximum`` bound the limit (requests in flight), ``initial`` is where it
    starts; ``alpha`` / ``beta`` are the queue fractions below which it grows and above which
    it shrinks; ``backoff`` multiplies the limit after a window with failures.
    """

    minimum: int = 1
    maximum: int = 256
    initial: int = 1
    alpha: float = 0.1
    beta: float = 0.15
    backoff: float = 0.7

    def __post_init__(self) -> None:
        if not 1 <= self.minimum <= self.maximum:
            raise ValueError(f"need 1 <= minimum <= maximum, got {self.minimum}..{self.maximum}")
        if not 0 < self.alpha < self.beta < 1:
            raise ValueError(f"need 0 < alpha < beta < 1, got {self.alpha}, {self.beta}")
        if not 0 < self.backoff < 1:
            raise ValueError(f"backoff must be within (0, 1), got {self.backoff}")

    def clamp(self, value: float) -> int:
        """``value`` rounded into ``[minimum, maximum]``."""
        return max(self.minimum, min(self.maximum, round(value)))


@dataclass(frozen=True, slots=True)
class Observation:
    """One window of a run at the current limit.

    ``latency_s``: the median latency of the requests finished in the window (seconds);
    ``completed``: requests finished; ``errors``: failed attempts (any transient failure,
    429 / 503 included); ``peak_in_flight``: the most requests in flight during the window.
    """

    latency_s: float
    completed: int
    errors: int = 0
    peak_in_flight: int = 0


@dataclass(frozen=True, slots=True)
class Change:
    """A decided change of the limit, with what it was based on (for the log event)."""

    old: int
    new: int
    reason: str
    queue: float
    latency_ms: float
    baseline_ms: float

    def as_event(self) -> dict[str, float | int | str]:
        """The fields of the structlog ``concurrency_changed`` event."""
        return {
            "old": self.old,
            "new": self.new,
            "reason": self.reason,
            "queue": round(self.queue, 2),
            "latency_ms": round(self.latency_ms, 3),
            "baseline_ms": round(self.baseline_ms, 3),
        }


AUTO_DEFAULT = (1, 16)
"""Bounds of a bare ``auto`` job ``max_workers``."""


def parse_auto(text: str, default: tuple[int, int] = AUTO_DEFAULT) -> tuple[int, int]:
    """``"auto"`` or ``"auto:MIN-MAX"`` as (MIN, MAX); ``ValueError`` for anything else."""
    raw = text.strip().lower()
    if raw == "auto":
        return default
    head, _, bounds = raw.partition(":")
    low, _, high = bounds.partition("-")
    if head != "auto" or not low.isdigit() or not high.isdigit():
        raise ValueError(f"expected an integer, auto or auto:MIN-MAX, got {text!r}")
    if not 1 <= int(low) <= int(high):
        raise ValueError(f"auto:MIN-MAX needs 1 <= MIN <= MAX, got {text!r}")
    return int(low), int(high)


class VegasController:
    """Decides the concurrency limit window by window (see the module docstring)."""

    def __init__(self, settings: AdaptiveSettings | None = None) -> None:
        self.settings = settings or AdaptiveSettings()
        self.limit = self.settings.clamp(self.settings.initial)
        self.baseline_s = math.inf
        self.slow_start = True
        self.changes = 0

    def observe(self, obs: Observation) -> Change | None:
        """Take one window's figures; returns the change of limit, or None to keep it."""
        s = self.settings
        if obs.errors > 0:
            self.slow_start = False
            return self._move(obs.latency_s, s.clamp(math.floor(self.limit * s.backoff)), 0.0)
        if obs.completed <= 0 or obs.latency_s <= 0:
            return None
        self.baseline_s = min(self.baseline_s, obs.latency_s)
        limit = self.limit
        queue = round(limit * (1.0 - self.baseline_s / obs.latency_s), 6)  # no float dust
        alpha, beta = max(1.0, s.alpha * limit), max(1.5, s.beta * limit)
        if queue > beta:
            self.slow_start = False
            return self._move(obs.latency_s, s.clamp(limit - queue), queue, "queueing")
        if queue >= alpha:
            self.slow_start = False  # queueing has begun: grow gently from here on
        elif obs.peak_in_flight >= limit:
            grown = limit * 2 if self.slow_start else limit + max(1, round(0.05 * limit))
            return self._move(obs.latency_s, s.clamp(grown), queue, "headroom")
        return None

    def _move(
        self, latency_s: float, new: int, queue: float, reason: str = "errors"
    ) -> Change | None:
        old, self.limit = self.limit, new
        if new == old:
            return None
        self.changes += 1
        baseline = 0.0 if math.isinf(self.baseline_s) else self.baseline_s
        return Change(old, new, reason, queue, latency_s * 1000.0, baseline * 1000.0)
