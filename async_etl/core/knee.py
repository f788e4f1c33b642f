"""Finding the saturation knee: which concurrency to measure next, and where the knee is.

Theory of operation
-------------------
Throughput against concurrency rises about linearly, bends, and goes flat when the database is
saturated; past that point more concurrency only adds queueing (latency).  The **knee** is the
level with the highest *power*, throughput divided by median latency (Kleinrock, "Power and
deterministic rules of thumb for probabilistic problems in computer communications", ICC
1979): below the knee power grows with concurrency (more rows, same latency), past it it falls
(same rows, more latency), so its peak is the concurrency at which the server just saturates.
Only levels whose p99 meets the SLO (when one is given) count.

``KneeSearch`` decides what to measure, one level at a time (the runner measures):

1. **double** from ``start`` (1, 2, 4, ...) until throughput stops growing — a level that does
   not beat the best before it by more than ``threshold`` — or p99 passes the SLO, or
   ``maximum`` is reached;
2. **bisect** around the peak: between it and its measured neighbour below, then above, until
   each is at most ``max(1, knee / 8)`` away, so a knee at 24 is not reported as 32.

``RateSearch`` does the same for open-loop rates (``sweep --by rate``): double the rate until
the achieved rate falls short of the target by more than the threshold or the p99 from the
due time passes the SLO, then bisect; the knee is the highest rate held.

Everything here is pure: points in, decisions out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

THRESHOLD = 0.05
"""Default: a level that adds less than 5 % throughput ends the doubling."""


@dataclass(frozen=True, slots=True)
class Point:
    """One measured level: ``rows_per_s``, ``p50_ms`` and ``p99_ms`` at ``concurrency``."""

    concurrency: int
    rows_per_s: float
    p50_ms: float
    p99_ms: float

    @property
    def power(self) -> float:
        """Throughput over median latency (rows/s per ms)."""
        return self.rows_per_s / self.p50_ms if self.p50_ms > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Knee:
    """The knee found, and why the search stopped stepping up."""

    concurrency: int
    rows_per_s: float
    p50_ms: float
    p99_ms: float
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return asdict(self)


class KneeSearch:
    """Chooses the levels to measure and reports the knee (see the module docstring).

    Raises ``ValueError`` for ``start < 1``, ``maximum < start`` or a threshold outside (0, 1).
    """

    def __init__(
        self,
        *,
        start: int = 1,
        maximum: int = 256,
        threshold: float = THRESHOLD,
        slo_p99_ms: float | None = None,
    ) -> None:
        if not 1 <= start <= maximum:
            raise ValueError(f"need 1 <= start <= maximum, got {start}..{maximum}")
        if not 0 < threshold < 1:
            raise ValueError(f"threshold must be within (0, 1), got {threshold}")
        self.start, self.maximum = start, maximum
        self.threshold, self.slo_p99_ms = threshold, slo_p99_ms
        self.points: dict[int, Point] = {}
        self.stop_reason = ""

    def _ok(self, point: Point) -> bool:
        return self.slo_p99_ms is None or point.p99_ms <= self.slo_p99_ms

    def record(self, point: Point) -> None:
        """Add a measured level; decides whether the doubling phase is over."""
        best = max((p.rows_per_s for p in self.points.values() if self._ok(p)), default=0.0)
        doubling = not self.stop_reason
        self.points[point.concurrency] = point
        if not doubling:
            return
        if not self._ok(point):
            self.stop_reason = f"p99 {point.p99_ms:,.1f} ms over the SLO at {point.concurrency}"
        elif best > 0 and point.rows_per_s <= best * (1 + self.threshold):
            self.stop_reason = (
                f"throughput stopped growing at {point.concurrency} "
                f"(less than {self.threshold:.0%} more)"
            )
        elif point.concurrency >= self.maximum:
            self.stop_reason = f"reached the maximum concurrency {self.maximum}"

    def next_level(self) -> int | None:
        """The next concurrency to measure, or None when the knee is known."""
        if not self.points:
            return self.start
        if not self.stop_reason:
            return min(self.maximum, max(self.points) * 2)
        knee = self.knee()
        if knee is None:
            return None
        peak, gap = knee.concurrency, max(1, knee.concurrency // 8)
        below = [c for c in self.points if c < peak]
        above = [c for c in self.points if c > peak]
        if below and peak - max(below) > gap:
            return (max(below) + peak) // 2
        if above and min(above) - peak > gap:
            return (peak + min(above)) // 2
        return None

    def knee(self) -> Knee | None:
        """The knee among the measured levels (None: no level met the SLO)."""
        eligible = sorted((p for p in self.points.values() if self._ok(p)), key=_level)
        if not eligible:
            return None
        point = max(eligible, key=lambda p: p.power)  # the first of equals: the lowest level
        reason = self.stop_reason or "not finished"
        return Knee(point.concurrency, point.rows_per_s, point.p50_ms, point.p99_ms, reason)

    def curve(self) -> list[Point]:
        """Every measured point, by concurrency."""
        return sorted(self.points.values(), key=_level)


def _level(point: Point) -> int:
    return point.concurrency


@dataclass(frozen=True, slots=True)
class RatePoint:
    """One measured open-loop rate: ``target`` and ``achieved`` rows/s, latency from due.

    ``p50_ms`` / ``p99_ms`` are measured from each batch's due time (corrected for
    coordinated omission).
    """

    target: float
    achieved: float
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True, slots=True)
class RateKnee:
    """The highest rate held, and why the rates above it were not."""

    target: float
    achieved: float
    p50_ms: float
    p99_ms: float
    reason: str

    def as_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return asdict(self)


class RateSearch:
    """Chooses the open-loop rates to measure and reports the highest one the sink holds.

    A rate is **held** when the achieved rate is within ``threshold`` of the target (the same
    5 % as bench's own verdict) and, with an SLO, the p99 from the due time meets it.  Double
    from ``start`` until a rate is not held or ``maximum`` is reached (halving instead when
    ``start`` itself is not held), then bisect between the highest rate held and the lowest
    one not held until they are within ``resolution`` of each other.

    Raises ``ValueError`` for ``start <= 0``, ``maximum < start``, a threshold outside (0, 1)
    or a resolution outside (0, 1).
    """

    def __init__(
        self,
        *,
        start: float = 1000.0,
        maximum: float = 10_000_000.0,
        threshold: float = THRESHOLD,
        slo_p99_ms: float | None = None,
        resolution: float = 1 / 8,
    ) -> None:
        if not 0 < start <= maximum:
            raise ValueError(f"need 0 < start rate <= maximum rate, got {start}..{maximum}")
        if not 0 < threshold < 1:
            raise ValueError(f"threshold must be within (0, 1), got {threshold}")
        if not 0 < resolution < 1:
            raise ValueError(f"resolution must be within (0, 1), got {resolution}")
        self.start, self.maximum = start, maximum
        self.threshold, self.slo_p99_ms, self.resolution = threshold, slo_p99_ms, resolution
        self.points: dict[float, RatePoint] = {}

    def held(self, point: RatePoint) -> bool:
        """True when ``point`` reached its target (within the threshold) and met the SLO."""
        reached = point.achieved >= (1 - self.threshold) * point.target
        return reached and (self.slo_p99_ms is None or point.p99_ms <= self.slo_p99_ms)

    def record(self, point: RatePoint) -> None:
        """Add a measured rate."""
        self.points[point.target] = point

    def next_rate(self) -> float | None:
        """The next rate to measure (rows/s), or None when the knee is known."""
        if not self.points:
            return self.start
        held = [t for t, p in self.points.items() if self.held(p)]
        missed = [t for t, p in self.points.items() if not self.held(p)]
        if not held:
            lowest = min(missed)
            return lowest / 2 if lowest / 2 >= self.start / 64 else None
        top = max(held)
        above = [t for t in missed if t > top]
        if not above:
            return None if top >= self.maximum else min(self.maximum, top * 2)
        if min(above) - top <= top * self.resolution:
            return None
        return (top + min(above)) / 2

    def knee(self) -> RateKnee | None:
        """The highest rate held (None: none was)."""
        held = [p for p in self.points.values() if self.held(p)]
        if not held:
            return None
        best = max(held, key=_target)
        above = sorted((p for p in self.points.values() if p.target > best.target), key=_target)
        return RateKnee(best.target, best.achieved, best.p50_ms, best.p99_ms, self._why(above))

    def _why(self, above: list[RatePoint]) -> str:
        if not above:
            return f"reached the maximum rate {self.maximum:,.0f} rows/s"
        first = above[0]
        if first.achieved < (1 - self.threshold) * first.target:
            return (
                f"at {first.target:,.0f} rows/s only {first.achieved:,.0f} were achieved "
                f"(short by more than {self.threshold:.0%})"
            )
        return f"p99 {first.p99_ms:,.1f} ms over the SLO at {first.target:,.0f} rows/s"

    def curve(self) -> list[RatePoint]:
        """Every measured rate, lowest first."""
        return sorted(self.points.values(), key=_target)


def _target(point: RatePoint) -> float:
    return point.target
