"""Turning a finished run's counters into a ``Summary``: the same for both runners."""

from __future__ import annotations

from typing import Any

from async_etl.config import BenchSettings
from async_etl.core.stats import RunStats, Warmup
from async_etl.core.summary import Summary, settle
from async_etl.runtime.recount import Found
from async_etl.runtime.resources import ResourceMeter, peak_rss_mb
from async_etl.typing import IdRange


def describe(sink: Any) -> str:
    """A sink's own description, or its class name."""
    fn = getattr(sink, "describe", None)
    return str(fn()) if callable(fn) else type(sink).__name__


def summarize(
    settings: BenchSettings,
    *,
    mode: str,
    sink: str,
    issued: IdRange,
    stats: RunStats,
    meter: ResourceMeter,
    warm: Warmup,
    finished: float,
    reconciled: int | None,
    found: Found,
    stopped_by: str,
    uvloop: bool,
    extra: dict[str, Any] | None = None,
) -> Summary:
    """The summary of a run that ended at ``finished`` (warm-up excluded from the figures).

    ``found``: how many of the run's unanswered ids and of its given-up ids the target holds,
    and how many it did not count before its limit (``runtime.recount``).  Rows an abort left
    without an answer are delivered when found, else undelivered; given-up rows found landed
    after all and are delivered (``core.summary.settle``): every generated row has an outcome.
    """
    warm.check(stats, finished)
    measured_from, rows_before = warm.baseline()
    lat = stats.latency
    landed, unconfirmed, recovered = settle(
        issued.count,
        stats.rows,
        stats.rejected,
        stats.undelivered,
        found.unanswered,
        found.given_up,
    )
    confirmed = landed + recovered
    return Summary(
        sink=sink,
        mode=mode,
        records=stats.rows + confirmed,
        generated=issued.count,
        measured_records=stats.rows + confirmed - rows_before,
        seconds=finished - measured_from,
        batches=stats.batches,
        batch_size=settings.batch_size,
        concurrency=settings.concurrency,
        generators=settings.generators,
        errors=stats.errors,
        retries=stats.retries,
        rejected=stats.rejected,
        undelivered=stats.undelivered - recovered + unconfirmed,
        interrupted=unconfirmed,
        confirmed=confirmed,
        uncounted=found.uncounted,
        latency_ms={
            q: round(lat.percentile(v), 3) for q, v in (("p50", 50), ("p95", 95), ("p99", 99))
        },
        cpu_percent=round(meter.cpu_percent(), 1),
        peak_rss_mb=round(peak_rss_mb(), 1),
        reconciled=reconciled,
        stopped_by=stopped_by,
        uvloop=uvloop,
        seed=settings.seed,
        id_range=(issued.start, issued.stop),
        reasons=dict(stats.reasons.most_common(10)),
        error_reasons=dict(stats.error_reasons.most_common(10)),
        warmup_seconds=settings.warmup,
        warmup_reached=warm.done,
        extra={
            "workers_rss_mb": round(meter.workers_rss_mb(), 1),
            "parent_cpu_percent": round(meter.own_cpu_percent(), 1),
            **(extra or {}),
        },
    )
