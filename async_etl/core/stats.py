"""Run statistics: counters, a log-bucketed latency histogram, and throughput snapshots.

Theory of operation: the runners call ``RunStats.record_*`` from their hot paths (cheap,
O(1), no allocation beyond a dict slot per new bucket); the reporter calls ``snapshot(now)``
once per interval.  Latencies go into a histogram whose buckets grow geometrically by
``1 + 2 * REL_ERROR``: any percentile it reports is within ``REL_ERROR`` (relative) of the
exact nearest-rank percentile of the samples, and memory stays bounded however long a run
lasts.  Times are passed in (``now``), so everything here is deterministic under test.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from async_etl.core.reckoning import IdOutcomes

REL_ERROR = 0.01
_GROWTH = 1.0 + 2.0 * REL_ERROR
_LOG_GROWTH = math.log(_GROWTH)
_MIN_VALUE = 1e-6  # values below this share bucket 0


class LatencyHistogram:
    """Latency samples (any unit) in geometric buckets; percentiles within 1 % relative error."""

    __slots__ = ("_buckets", "count", "max", "min", "total")

    def __init__(self) -> None:
        self._buckets: Counter[int] = Counter()
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = 0.0

    @staticmethod
    def _index(value: float) -> int:
        if value <= _MIN_VALUE:
            return 0
        return 1 + int(math.log(value / _MIN_VALUE) / _LOG_GROWTH)

    @staticmethod
    def _value(index: int) -> float:
        if index == 0:
            return _MIN_VALUE
        low = _MIN_VALUE * _GROWTH ** (index - 1)
        return low * (1.0 + REL_ERROR)  # inside [low, low * growth): within REL_ERROR of both ends

    def add(self, value: float) -> None:
        """Record one sample (negative values count as zero)."""
        value = max(0.0, value)
        self._buckets[self._index(value)] += 1
        self.count += 1
        self.total += value
        self.min = min(self.min, value)
        self.max = max(self.max, value)

    def merge(self, other: LatencyHistogram) -> None:
        """Add every sample of ``other`` to this histogram."""
        self._buckets.update(other._buckets)
        self.count += other.count
        self.total += other.total
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def percentile(self, q: float) -> float:
        """The nearest-rank ``q``-th percentile (0 < q <= 100); 0.0 when empty."""
        if self.count == 0:
            return 0.0
        rank = max(1, math.ceil(q / 100.0 * self.count))
        seen = 0
        for index in sorted(self._buckets):
            seen += self._buckets[index]
            if seen >= rank:
                return min(max(self._value(index), self.min), self.max)
        return self.max  # pragma: no cover - ranks never exceed count

    def counts_at_most(self, bounds: list[float]) -> list[int]:
        """Cumulative sample counts at or below each of the ascending ``bounds``.

        Judged by each bucket's representative value (within ``REL_ERROR`` of its samples).
        """
        buckets = sorted(dict(self._buckets).items())  # dict() copies atomically under the GIL
        out, seen, i = [], 0, 0
        for bound in bounds:
            while i < len(buckets) and self._value(buckets[i][0]) <= bound:
                seen += buckets[i][1]
                i += 1
            out.append(seen)
        return out

    @property
    def mean(self) -> float:
        """The arithmetic mean; 0.0 when empty."""
        return self.total / self.count if self.count else 0.0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the reporter emits for one interval."""

    elapsed_s: float
    rows_total: int
    rows_per_s: float
    rows_per_s_total: float
    batches: int
    in_flight: int
    errors: int
    retries: int
    rejected: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    limit: int = 0  # the adaptive concurrency limit now (0: fixed concurrency)

    def as_event(self) -> dict[str, float | int]:
        """The fields of the structlog ``throughput`` event (``limit`` when adaptive)."""
        extra = {"limit": self.limit} if self.limit else {}
        return {
            **extra,
            "elapsed_s": round(self.elapsed_s, 3),
            "rows_total": self.rows_total,
            "rows_per_s": round(self.rows_per_s, 1),
            "rows_per_s_total": round(self.rows_per_s_total, 1),
            "batches": self.batches,
            "in_flight": self.in_flight,
            "errors": self.errors,
            "retries": self.retries,
            "rejected": self.rejected,
            "p50_ms": round(self.p50_ms, 3),
            "p95_ms": round(self.p95_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
        }


@dataclass(slots=True)
class RunStats:
    """Counters of one run.  Not thread-safe: the thread runner guards it with a lock."""

    started_at: float
    rows: int = 0
    batches: int = 0
    errors: int = 0
    retries: int = 0
    rejected: int = 0
    undelivered: int = 0
    in_flight: int = 0
    reasons: Counter[str] = field(default_factory=Counter)  # rows rejected / given up, by why
    error_reasons: Counter[str] = field(default_factory=Counter)  # failed attempts, by why
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    interval: LatencyHistogram = field(default_factory=LatencyHistogram)
    window: LatencyHistogram = field(default_factory=LatencyHistogram)  # see take_window
    peak_in_flight: int = 0
    limit: int = 0
    from_due: LatencyHistogram = field(default_factory=LatencyHistogram)  # rate mode, ms
    lag: LatencyHistogram = field(default_factory=LatencyHistogram)  # rate mode: sent - due, ms
    late: int = 0
    ids: IdOutcomes | None = None  # per id, answered or given up (bench runs; ``core.reckoning``)
    _window_errors: int = 0
    _window_skip: int = 0
    _last_rows: int = 0
    _last_at: float = 0.0

    def __post_init__(self) -> None:
        self._last_at = self.started_at

    def record_attempt(self, latency_s: float) -> None:
        """One request finished (successfully or not) after ``latency_s`` seconds."""
        ms = latency_s * 1000.0
        self.latency.add(ms)
        self.interval.add(ms)
        if self._window_skip > 0:
            self._window_skip -= 1
        else:
            self.window.add(ms)

    def record_sent_at(self, lag_s: float, late_after_s: float) -> None:
        """Rate mode: a batch went out ``lag_s`` after its due time (late past the threshold)."""
        self.lag.add(lag_s * 1000.0)
        if lag_s > late_after_s:
            self.late += 1

    def record_from_due(self, latency_s: float) -> None:
        """Rate mode: a batch was done ``latency_s`` after its due time (corrected latency)."""
        self.from_due.add(latency_s * 1000.0)

    def started_request(self) -> None:
        """A request went out: count it in flight and keep the window's peak."""
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def window_ready(self, min_samples: int) -> bool:
        """True when the window holds ``min_samples`` attempts or a new failure."""
        return self.window.count >= min_samples or self.errors > self._window_errors

    def skip_window(self, attempts: int) -> None:
        """Leave the next ``attempts`` finished attempts out of the window (not of the totals)."""
        self._window_skip = max(0, attempts)

    @property
    def window_errors(self) -> int:
        """Failed attempts since the last ``take_window``."""
        return self.errors - self._window_errors

    @property
    def skipping(self) -> bool:
        """True while finished attempts are being left out of the window (see skip_window)."""
        return self._window_skip > 0

    def take_window(self) -> tuple[LatencyHistogram, int, int]:
        """(latencies in ms, failed attempts, peak in flight) since the last call; resets them."""
        window, self.window = self.window, LatencyHistogram()
        errors, self._window_errors = self.errors - self._window_errors, self.errors
        peak, self.peak_in_flight = self.peak_in_flight, self.in_flight
        return window, errors, peak

    def record_delivered(self, rows: int) -> None:
        """Rows durably written by the sink."""
        self.rows += rows

    def record_batch_done(self) -> None:
        """A batch is fully accounted for (delivered, rejected or given up)."""
        self.batches += 1

    def record_error(self, reason: str) -> None:
        """A failed attempt (it may still be retried)."""
        self.errors += 1
        self.error_reasons[reason[:200]] += 1

    def record_rejected(self, rows: int, reason: str) -> None:
        """Rows the sink refused for good."""
        self.rejected += rows
        self.reasons[reason[:200]] += rows

    def record_given_up(self, rows: int, reason: str) -> None:
        """Rows not delivered because retries ran out."""
        self.undelivered += rows
        self.reasons[reason[:200]] += rows

    def absorb(self, other: RunStats) -> None:
        """Add another run's counters and latencies (e.g. one remote unit's) to these."""
        self.rows += other.rows
        self.batches += other.batches
        self.errors += other.errors
        self.retries += other.retries
        self.rejected += other.rejected
        self.undelivered += other.undelivered
        self.reasons.update(other.reasons)
        self.error_reasons.update(other.error_reasons)
        if self.ids is not None and other.ids is not None:
            self.ids.absorb(other.ids)
        for mine, theirs in (
            (self.latency, other.latency),
            (self.interval, other.latency),
            (self.window, other.latency),
        ):
            mine.merge(theirs)

    def snapshot(self, now: float) -> Snapshot:
        """Figures since the start and since the previous snapshot; resets the interval."""
        window = max(now - self._last_at, 1e-9)
        elapsed = max(now - self.started_at, 1e-9)
        lat = self.interval if self.interval.count else self.latency
        snap = Snapshot(
            elapsed_s=elapsed,
            rows_total=self.rows,
            rows_per_s=(self.rows - self._last_rows) / window,
            rows_per_s_total=self.rows / elapsed,
            batches=self.batches,
            in_flight=self.in_flight,
            errors=self.errors,
            retries=self.retries,
            rejected=self.rejected,
            p50_ms=lat.percentile(50),
            p95_ms=lat.percentile(95),
            p99_ms=lat.percentile(99),
            limit=self.limit,
        )
        self._last_rows = self.rows
        self._last_at = now
        self.interval = LatencyHistogram()
        return snap


class Warmup:
    """Remembers where the warm-up ended, so the figures exclude it."""

    __slots__ = ("at", "done", "rows", "until")

    def __init__(self, seconds: float, started: float) -> None:
        self.until = started + seconds
        self.done = seconds <= 0
        self.rows = 0
        self.at = started

    def check(self, stats: RunStats, now: float) -> None:
        """End the warm-up at ``now`` if it is due: remember the rows, reset the latencies."""
        if not self.done and now >= self.until:
            self.done, self.rows, self.at = True, stats.rows, now
            stats.latency = LatencyHistogram()

    def baseline(self) -> tuple[float, int]:
        """(time, rows) from which the figures are measured."""
        return self.at, self.rows if self.done else 0
