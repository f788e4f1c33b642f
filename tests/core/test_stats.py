from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from async_etl.core.stats import REL_ERROR, LatencyHistogram, RunStats


def _nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


@settings(max_examples=200)
@given(
    values=st.lists(st.floats(min_value=1e-3, max_value=1e6), min_size=1, max_size=400),
    q=st.sampled_from([1.0, 25.0, 50.0, 90.0, 95.0, 99.0, 99.9, 100.0]),
)
def test_percentiles_match_the_reference_within_relative_error(
    values: list[float], q: float
) -> None:
    """Histogram percentiles are within REL_ERROR of the exact nearest-rank percentile."""
    hist = LatencyHistogram()
    for v in values:
        hist.add(v)
    exact = _nearest_rank(values, q)
    assert abs(hist.percentile(q) - exact) <= REL_ERROR * exact * 1.0001


def test_percentiles_agree_with_numpy_on_a_large_sample() -> None:
    """On 100k lognormal samples p50/p95/p99 agree with numpy's inverted-cdf percentile."""
    rng = np.random.default_rng(1)
    values = rng.lognormal(mean=1.0, sigma=1.0, size=100_000)
    hist = LatencyHistogram()
    for v in values.tolist():
        hist.add(v)
    for q in (50, 95, 99):
        exact = float(np.percentile(values, q, method="inverted_cdf"))
        assert abs(hist.percentile(q) - exact) <= REL_ERROR * exact


@given(
    a=st.lists(st.floats(min_value=0.01, max_value=1e4), max_size=100),
    b=st.lists(st.floats(min_value=0.01, max_value=1e4), max_size=100),
)
def test_merge_equals_adding_all_samples(a: list[float], b: list[float]) -> None:
    """Merging two histograms gives the same percentiles as one histogram of all samples."""
    left, right, both = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
    for v in a:
        left.add(v)
        both.add(v)
    for v in b:
        right.add(v)
        both.add(v)
    left.merge(right)
    assert left.count == both.count
    for q in (50, 99):
        assert left.percentile(q) == both.percentile(q)


def test_empty_histogram_reports_zero() -> None:
    """No samples: percentiles and mean are 0."""
    hist = LatencyHistogram()
    assert hist.percentile(99) == 0.0 and hist.mean == 0.0


def test_snapshot_computes_interval_and_cumulative_rates() -> None:
    """Interval rate covers rows since the last snapshot; the cumulative rate all rows."""
    stats = RunStats(started_at=100.0)
    stats.record_delivered(1000)
    stats.record_attempt(0.010)
    first = stats.snapshot(101.0)
    assert first.rows_per_s == 1000 and first.rows_per_s_total == 1000
    stats.record_delivered(3000)
    second = stats.snapshot(102.0)
    assert second.rows_per_s == 3000
    assert second.rows_per_s_total == 2000
    assert second.rows_total == 4000
    assert abs(first.p50_ms - 10.0) <= 10.0 * REL_ERROR


def test_rejections_and_give_ups_are_counted_with_reasons() -> None:
    """Rejected and undelivered rows are counted separately and keep their reasons."""
    stats = RunStats(started_at=0.0)
    stats.record_rejected(3, "duplicate key")
    stats.record_given_up(5, "503 unavailable")
    stats.record_error("503 unavailable")
    assert (stats.rejected, stats.undelivered, stats.errors) == (3, 5, 1)
    assert stats.reasons["503 unavailable"] == 5  # rows given up, not attempts
    assert stats.error_reasons["503 unavailable"] == 1  # the failed attempt, counted apart


def test_absorb_sums_counters_and_merges_latencies() -> None:
    """RunStats.absorb adds another run's counters, reasons and latency samples to these."""
    a, b = RunStats(started_at=0.0), RunStats(started_at=5.0)
    for stats, rows, lat in ((a, 10, 0.002), (b, 7, 0.2)):
        stats.record_delivered(rows)
        stats.record_batch_done()
        stats.record_attempt(lat)
        stats.record_error("boom")
        stats.record_rejected(1, "bad row")
        stats.record_given_up(2, "gave up")
    b.retries = 3
    a.absorb(b)
    assert (a.rows, a.batches, a.errors, a.retries) == (17, 2, 2, 3)
    assert (a.rejected, a.undelivered) == (2, 4)
    assert a.reasons == {"bad row": 2, "gave up": 4}
    assert a.error_reasons == {"boom": 2}
    assert a.latency.count == 2 and a.latency.max == b.latency.max
    assert a.snapshot(1.0).p99_ms == a.latency.percentile(99)


def test_skipped_attempts_stay_out_of_the_window_but_not_the_totals() -> None:
    """skip_window(2): the next two attempts count in the run's latency, not in the window."""
    stats = RunStats(started_at=0.0)
    stats.skip_window(2)
    for latency in (1.0, 1.0, 0.01):
        assert stats.skipping == (stats.latency.count < 2)
        stats.record_attempt(latency)
    stats.record_error("busy")
    window, errors, _ = stats.take_window()
    assert (window.count, stats.latency.count, errors) == (1, 3, 1)
    assert abs(window.max - 10.0) <= 1e-9 and not stats.skipping and stats.window_errors == 0
