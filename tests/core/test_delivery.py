"""Delivery (core.delivery): one batch's attempts, retries and accounting, driven by hand."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from async_etl.core.delivery import Delivery
from async_etl.core.retry import RetryPolicy
from async_etl.core.stats import RunStats
from async_etl.errors import TransientLoadError, network
from async_etl.typing import EncodedBatch, IdRange, RowError, SendResult

POLICY = RetryPolicy(max_retries=2, base=1.0, cap=10.0, connect_base=4.0)


def batch(start: int = 1, count: int = 10, rows: int = -1) -> EncodedBatch:
    return EncodedBatch(IdRange(start, count), b"payload", "crate_json", rows=rows)


def test_a_clean_send_delivers_the_batch_on_the_first_attempt() -> None:
    """One answer with every row delivered: done, no retry, no delay."""
    stats = RunStats(started_at=0.0)
    d = Delivery(batch(), stats, POLICY)
    assert d.pending == batch() and d.attempt == 1
    assert d.sent(SendResult(delivered=10), 0.01, jitter=0.5) == 0.0
    assert d.pending is None and d.delivered == 10 and d.given_up is None
    assert (stats.rows, stats.batches, stats.errors, stats.retries) == (10, 1, 0, 0)


def test_a_transient_failure_is_retried_after_the_policys_delay() -> None:
    """A transient error: same batch again on attempt 2, after jitter times the ceiling."""
    stats = RunStats(started_at=0.0)
    d = Delivery(batch(), stats, POLICY)
    delay = d.failed(TransientLoadError("503"), 0.01, jitter=0.5)
    assert delay == 0.5 and d.attempt == 2 and d.pending == batch()
    assert (stats.errors, stats.retries, stats.batches) == (1, 1, 0)
    assert stats.error_reasons["503"] == 1


def test_a_network_failure_waits_on_the_slower_connect_clock() -> None:
    """A refused connection is paced from connect_base with equal jitter (at least half)."""
    d = Delivery(batch(), RunStats(started_at=0.0), POLICY)
    assert d.failed(network("refused"), 0.0, jitter=0.0) == 2.0  # ceiling 4 s, half of it


def test_retry_after_is_a_lower_bound_on_the_delay() -> None:
    """A sink's Retry-After raises the delay (capped by the policy's cap)."""
    d = Delivery(batch(), RunStats(started_at=0.0), POLICY)
    assert d.failed(TransientLoadError("429", retry_after=3.0), 0.0, jitter=0.0) == 3.0


def test_a_partial_answer_resends_only_the_rows_the_sink_asked_for() -> None:
    """Delivered and rejected rows count once; the retry subset is what goes next."""
    stats = RunStats(started_at=0.0)
    d = Delivery(batch(), stats, POLICY)
    subset = batch(rows=3)
    result = SendResult(6, (RowError(4, "too long"),), retry=subset, retry_reason="shard busy")
    assert d.sent(result, 0.0, jitter=0.0) == 0.0
    assert d.pending == subset and d.attempt == 2
    assert d.sent(SendResult(delivered=3), 0.0, jitter=0.0) == 0.0
    assert d.pending is None and d.delivered == 9 and d.rejected == [RowError(4, "too long")]
    assert (stats.rows, stats.rejected, stats.errors, stats.batches) == (9, 1, 1, 1)
    assert stats.reasons["too long"] == 1 and stats.error_reasons["shard busy"] == 1


def test_retries_running_out_give_the_pending_rows_up_with_the_reason() -> None:
    """After 1 + max_retries failed attempts the pending rows are given up, counted once."""
    stats = RunStats(started_at=0.0)
    d = Delivery(batch(), stats, POLICY)
    delays = [d.failed(TransientLoadError("503"), 0.0, jitter=1.0) for _ in range(3)]
    assert delays == [1.0, 2.0, 0.0] and d.attempt == 3
    assert d.pending is None and d.given_up == (batch(), "503")
    assert (stats.undelivered, stats.errors, stats.retries, stats.batches) == (10, 3, 2, 1)
    assert stats.reasons["503"] == 10


@given(
    st.lists(
        st.tuples(st.sampled_from(["fail", "answer"]), st.integers(0, 10), st.integers(0, 10)),
        min_size=1,
        max_size=6,
    )
)
def test_every_row_ends_delivered_rejected_or_given_up_exactly_once(
    script: list[tuple[str, int, int]],
) -> None:
    """Any script of answers and failures: delivered + rejected + given up == the batch's rows."""
    stats = RunStats(started_at=0.0)
    d = Delivery(batch(count=10), stats, POLICY)
    steps = iter(script)
    while (current := d.pending) is not None:
        kind, ok, bad = next(steps, ("answer", 10, 0))
        rows = current.row_count
        if kind == "fail":
            d.failed(TransientLoadError("503"), 0.0, jitter=0.0)
            continue
        ok, bad = min(ok, rows), min(bad, rows - min(ok, rows))
        rest = rows - ok - bad
        retry = batch(count=10, rows=rest) if rest else None
        rejected = tuple(RowError(None, "bad") for _ in range(bad))
        d.sent(SendResult(ok, rejected, retry=retry), 0.0, jitter=0.0)
    given_up = d.given_up[0].row_count if d.given_up else 0
    assert d.delivered + len(d.rejected) + given_up == 10
    assert (stats.rows, stats.rejected, stats.undelivered) == (
        d.delivered,
        len(d.rejected),
        given_up,
    )
    assert stats.batches == 1 and d.attempt <= 1 + POLICY.max_retries
