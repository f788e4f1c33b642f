"""Open-loop send schedules: when each row is due, whatever the server does.

Theory of operation
-------------------
A closed-loop load generator sends the next batch when a previous one comes back, so when the
server stalls it stops sending, and the requests it *would* have sent never measure the stall
("coordinated omission", Gil Tene; the reason for ``wrk2`` and ``pgbench -R``).  An open-loop
schedule fixes the arrival times up front: a constant rate (``--rate``) or a ramp of steps
(``--ramp 10000:30s,50000:30s``).  ``RateSchedule.due_at(rows)`` is the time, in seconds after
the schedule's origin, at which the row with that offset is due; a batch is due when its first
row is.  The runner sends each batch at its due time (or as soon as it can, when late), and
measures latency from the due time as well as from the actual send, so a stall shows in the
first figure and not in the second.

``RateFigures.judge`` turns the counters of a run into the verdict the summary prints: target
and achieved rate, schedule lag, late batches, and whether the target was met.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

LATE_AFTER_S = 0.010
"""A batch sent more than this after its due time counts as late."""

MET_FRACTION = 0.95
"""The target rate counts as met when at least this fraction of it was achieved."""

_STEP = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*:\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}


@dataclass(frozen=True, slots=True)
class RateStep:
    """``rows_per_s`` for ``seconds`` (None: with no end)."""

    rows_per_s: float
    seconds: float | None


@dataclass(frozen=True, slots=True)
class RateSchedule:
    """A sequence of constant-rate steps; raises ``ValueError`` for a rate or length <= 0."""

    steps: tuple[RateStep, ...]

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError("a schedule needs at least one step")
        for i, step in enumerate(self.steps):
            if not step.rows_per_s > 0:
                raise ValueError(f"step {i + 1}: the rate must be > 0, got {step.rows_per_s}")
            if step.seconds is not None and not step.seconds > 0:
                raise ValueError(f"step {i + 1}: the length must be > 0, got {step.seconds}")
            if step.seconds is None and i != len(self.steps) - 1:
                raise ValueError(f"step {i + 1}: only the last step may have no end")

    @classmethod
    def constant(cls, rows_per_s: float, seconds: float | None = None) -> RateSchedule:
        """One step at ``rows_per_s`` (for ``seconds``, or with no end)."""
        return cls((RateStep(rows_per_s, seconds),))

    @classmethod
    def parse_ramp(cls, text: str) -> RateSchedule:
        """``"10000:30s,50000:30s"`` (units ms, s, m; s by default); ``ValueError`` if malformed."""
        steps = []
        for part in text.split(","):
            match = _STEP.match(part)
            if match is None:
                raise ValueError(f"expected RATE:LENGTH like 10000:30s, got {part.strip()!r}")
            steps.append(RateStep(float(match[1]), float(match[2]) * _UNIT[match[3]]))
        return cls(tuple(steps))

    @property
    def seconds(self) -> float | None:
        """The schedule's length (None: it has no end)."""
        if self.steps[-1].seconds is None:
            return None
        return sum(step.seconds or 0.0 for step in self.steps)

    @property
    def total_rows(self) -> int | None:
        """Rows the schedule sends in all (None: no end)."""
        if self.seconds is None:
            return None
        return math.floor(sum(s.rows_per_s * (s.seconds or 0.0) for s in self.steps) + 1e-9)

    @property
    def mean_rows_per_s(self) -> float:
        """The target rate over the whole schedule (the first step's when it has no end)."""
        total, seconds = self.total_rows, self.seconds
        if total is None or not seconds:
            return self.steps[0].rows_per_s
        return total / seconds

    def due_at(self, rows: int) -> float | None:
        """Seconds after the origin when the row at offset ``rows`` is due (None: past the end)."""
        start_s, start_rows = 0.0, 0.0
        for step in self.steps:
            if step.seconds is None:
                return start_s + (rows - start_rows) / step.rows_per_s
            step_rows = step.rows_per_s * step.seconds
            if rows < start_rows + step_rows - 1e-9:
                return start_s + (rows - start_rows) / step.rows_per_s
            start_s += step.seconds
            start_rows += step_rows
        return None

    def span_of(self, rows: int) -> float:
        """Seconds the schedule takes to send ``rows`` rows: when the next row would be due.

        A batch goes out when its first row is due, so its other rows leave early; measured
        only to the last completion, a run whose batch outlasts the schedule (``--rate 1
        -T 2 -b 5000``: both rows sent at once) would "achieve" thousands of times its target.
        An achieved rate is measured over at least this span.  Past the end: the whole length.
        """
        due = self.due_at(rows)
        if due is not None:
            return due
        return self.seconds or 0.0


@dataclass(frozen=True, slots=True)
class RateFigures:
    """What a rate-mode run measured (times in seconds, latencies in milliseconds)."""

    target_rows_per_s: float
    rows: int
    span_s: float
    batches: int
    late_batches: int
    lag_p99_ms: float
    lag_max_ms: float

    @property
    def achieved_rows_per_s(self) -> float:
        """Rows delivered per second from the schedule's origin to the last completion."""
        return self.rows / self.span_s if self.span_s > 0 else 0.0

    @property
    def met(self) -> bool:
        """True when the achieved rate reached ``MET_FRACTION`` of the target."""
        return self.achieved_rows_per_s >= MET_FRACTION * self.target_rows_per_s

    def verdict(self) -> str:
        """One plain line: the target met, or by how much it was missed and why it shows.

        Uses the achieved rate at the precision the summary reports (0.1 rows/s), so the line
        and the JSON figure never disagree in their last digit.
        """
        achieved, target = round(self.achieved_rows_per_s, 1), self.target_rows_per_s
        share = achieved / target * 100.0 if target else 0.0
        if self.met:
            return f"target {target:,.0f} rows/s met: {achieved:,.0f} rows/s ({share:.1f} %)"
        return (
            f"target {target:,.0f} rows/s not met: achieved {achieved:,.0f} rows/s "
            f"({share:.0f} % of it); {self.late_batches:,} of {self.batches:,} batches sent late, "
            f"schedule lag up to {self.lag_max_ms / 1000.0:,.2f} s"
        )
