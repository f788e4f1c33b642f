"""Driving the adaptive concurrency controller: measure a window, decide, set the limiter.

Theory of operation
-------------------
One task per run, beside the reporter.  Every ``interval`` seconds it takes the window the
runner's ``RunStats`` collected (latencies of finished attempts, failed attempts, peak in
flight), hands it to the pure ``VegasController`` and, when the controller changes the limit,
sets the send limiter's ``total_tokens`` (``anyio.CapacityLimiter`` applies a lower value by
granting no new tokens until enough are released; nothing in flight is cancelled), records the
limit in the stats for the live view, and logs one ``concurrency_changed`` event.

A window with fewer than ``MIN_SAMPLES`` finished attempts and no failure is left to grow; the
window right after a change is discarded, because its requests ran under the old limit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import structlog

from async_etl.core.adaptive import AdaptiveSettings, Change, Observation, VegasController
from async_etl.core.stats import RunStats

log = structlog.get_logger(__name__)

MIN_SAMPLES = 5
INTERVAL_S = 0.2


class AdaptiveLimit:
    """The controller of one run plus the history of its changes (for the summary)."""

    def __init__(self, settings: AdaptiveSettings, limiter: anyio.CapacityLimiter) -> None:
        self.controller = VegasController(settings)
        self.limiter = limiter
        self.limiter.total_tokens = self.controller.limit
        self.history: list[dict[str, Any]] = []

    def step(self, stats: RunStats, elapsed_s: float) -> Change | None:
        """Feed one window from ``stats`` to the controller; apply and log any change."""
        window, errors, peak = stats.take_window()
        obs = Observation(
            latency_s=window.percentile(50) / 1000.0,
            completed=window.count,
            errors=errors,
            peak_in_flight=peak,
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
        settle = False
        while True:
            await anyio.sleep(interval)
            if settle:  # this window ran under the previous limit
                stats.take_window()
                settle = False
                continue
            if not stats.window_ready(MIN_SAMPLES):
                continue
            settle = self.step(stats, clock() - stats.started_at) is not None

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
