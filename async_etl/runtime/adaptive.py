"""Driving the adaptive concurrency controller: measure a window, decide, set the limiter.

Theory of operation
-------------------
One task per run, beside the reporter.  Every ``interval`` seconds it takes the window the
runner's ``RunStats`` collected (latencies of finished attempts, failed attempts, peak in
flight), hands it to the pure ``ProbingController`` and, when the controller changes the limit,
sets the send limiter's ``total_tokens`` (``anyio.CapacityLimiter`` applies a lower value by
granting no new tokens until enough are released; nothing in flight is cancelled), records the
limit in the stats for the live view, and logs one ``concurrency_changed`` event.

The controller estimates throughput by Little's law, so the loop also counts the requests in
flight ``SAMPLES_PER_INTERVAL`` times per interval: counting completions per window would
swing by whole waves when the latency is as long as the window.

A window is decided on when it has a failure, or when it spans at least one interval and
holds at least ``MIN_SAMPLES`` finished attempts and as many as the limit (one generation of
requests, so a wave of completions is seen whole); until then it is left to grow.
After a change, the next ``in flight + new limit`` finished attempts stay out of the windows:
the requests that began under the old limit, then the first ones under the new limit, which
found the old queue (with 200 ms requests, discarding one 0.2 s window was not enough: the
first measure after a doubling past the knee still saw about the old latency, and the search
overshot to 4x the knee).  The first generation of the run stays out too: while connections
open and the generators fill the pipeline, fewer requests are in flight than the limit allows
(PostgreSQL's first window measured half the rate of the next).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from async_etl.core.adaptive import AdaptiveSettings, Change, Observation, ProbingController
from async_etl.core.stats import RunStats
from async_etl.log import get_logger

log = get_logger(__name__)

MIN_SAMPLES = 5
INTERVAL_S = 0.2
SAMPLES_PER_INTERVAL = 20
"""How often per interval the requests in flight are counted (for their time-average)."""


class AdaptiveLimit:
    """The controller of one run plus the history of its changes (for the summary)."""

    def __init__(self, settings: AdaptiveSettings, limiter: anyio.CapacityLimiter) -> None:
        self.controller = ProbingController(settings)
        self.limiter = limiter
        self.limiter.total_tokens = self.controller.limit
        self.history: list[dict[str, Any]] = []

    def step(
        self, stats: RunStats, elapsed_s: float, mean_in_flight: float | None = None
    ) -> Change | None:
        """Feed one window from ``stats`` to the controller; apply and log any change.

        ``mean_in_flight``: the time-average of requests in flight over the window (None: the
        controller takes the limit).
        """
        window, errors, peak = stats.take_window()
        obs = Observation(
            latency_s=window.percentile(50) / 1000.0,
            completed=window.count,
            errors=errors,
            peak_in_flight=peak,
            mean_latency_s=window.total / window.count / 1000.0 if window.count else None,
            mean_in_flight=mean_in_flight,
        )
        change = self.controller.observe(obs)
        stats.limit = self.controller.limit
        if change is not None:
            self.limiter.total_tokens = change.new
            event = {"elapsed_s": round(elapsed_s, 3), **change.as_event()}
            self.history.append(event)
            log.info("concurrency_changed", **event)
        return change

    async def run(
        self, stats: RunStats, clock: Callable[[], float], interval: float = INTERVAL_S
    ) -> None:
        """Adjust the limit every ``interval`` seconds until cancelled."""
        stats.limit = self.controller.limit
        stats.skip_window(self.controller.limit)  # the start: connections, an empty pipeline
        in_flight, ticks = 0, 0
        while True:
            for _ in range(SAMPLES_PER_INTERVAL):  # the time-average in flight (Little's law)
                await anyio.sleep(interval / SAMPLES_PER_INTERVAL)
                if stats.skipping:
                    in_flight, ticks = 0, 0
                else:
                    in_flight, ticks = in_flight + stats.in_flight, ticks + 1
            whole = ticks >= SAMPLES_PER_INTERVAL  # at least one interval after a skip
            if not stats.window_errors and not (
                whole and stats.window_ready(max(MIN_SAMPLES, self.controller.limit))
            ):
                continue
            mean = in_flight / ticks if ticks else None
            change = self.step(stats, clock() - stats.started_at, mean)
            in_flight, ticks = 0, 0
            if change is not None:  # two generations: those in flight, then the first new
                stats.skip_window(stats.in_flight + change.new)

    def summary(self) -> dict[str, Any]:
        """The ``adaptive`` entry of the run summary's ``extra``."""
        s = self.controller.settings
        return {
            "min": s.minimum,
            "max": s.maximum,
            "final": self.controller.limit,
            "changes": len(self.history),
            "history": self.history[-50:],
        }
