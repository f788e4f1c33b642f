"""Rate mode's pacer: hold each batch until the open-loop schedule says it is due.

The schedule (``core.schedule.RateSchedule``) decides when; the pacer keeps the origin (the
moment the first batch was ready), the rows handed out so far and the last completion, and
sleeps.  It never waits for the server: a batch that cannot go out on time (every send slot
busy) goes out as soon as one frees, and the lag is measured by the runner.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio

from async_etl.core.schedule import RateFigures, RateSchedule
from async_etl.core.stats import RunStats


class Pacer:
    """Due times for the batches of one run, in ``clock`` seconds."""

    def __init__(
        self, schedule: RateSchedule, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.schedule = schedule
        self.clock = clock
        self.origin: float | None = None
        self.rows = 0
        self.last_done = 0.0
        self.unscheduled = 0
        """Rows handed out after a stop, outside the schedule (not in the achieved rate)."""

    async def wait(self, rows: int, stop: anyio.Event | None = None) -> float | None:
        """Sleep until the next batch of ``rows`` is due; its due time.

        None: past the end, or ``stop`` was set before the batch came due.  A stop ends the
        wait at once: the batches already generated go out now, not at their due times (with
        ``-R 100 -b 5000`` those were 50 s apart, and a first SIGINT took minutes to end the
        run); they count neither in the schedule's rows nor in the achieved rate.
        """
        if self.origin is None:
            self.origin = self.clock()
        due = self.schedule.due_at(self.rows)
        if due is None:
            return None
        at = self.origin + due
        delay = at - self.clock()
        if delay > 0:
            if stop is None:
                await anyio.sleep(delay)
            else:
                with anyio.move_on_after(delay):
                    await stop.wait()
        if stop is not None and stop.is_set():
            self.unscheduled += rows
            return None
        self.rows += rows
        return at

    def done(self, at: float) -> None:
        """A batch was fully accounted for at ``at``."""
        self.last_done = max(self.last_done, at)

    def figures(self, stats: RunStats) -> RateFigures:
        """The run's rate figures: target over the schedule, achieved up to the last completion.

        The achieved rate's span is at least the schedule's span of the rows handed out
        (``RateSchedule.span_of``): rows sent early with their batch do not count as a rate.
        """
        origin = self.origin if self.origin is not None else self.last_done
        return RateFigures(
            target_rows_per_s=self.schedule.mean_rows_per_s,
            rows=max(stats.rows - self.unscheduled, 0),
            span_s=max(self.last_done - origin, self.schedule.span_of(self.rows)),
            batches=stats.lag.count,
            late_batches=stats.late,
            lag_p99_ms=stats.lag.percentile(99),
            lag_max_ms=stats.lag.max,
        )
