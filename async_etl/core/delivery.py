"""Delivery of one batch as a sans-I/O state machine, shared by the async and thread runners.

The driver loop is the same in both runners::

    d = Delivery(batch, stats, policy)
    while (current := d.pending) is not None:
        t0 = clock()
        try:
            result = sink.send(current, d.attempt)        # await-ed in the async runner
        except TransientError as exc:
            delay = d.failed(exc, clock() - t0, jitter())
        else:
            delay = d.sent(result, clock() - t0, jitter())
        sleep(delay)                                       # anyio.sleep / time.sleep

``Delivery`` decides: it counts delivered and rejected rows, asks the ``RetryPolicy`` whether
a failure (or the subset of rows a sink wants resent) gets another attempt and after how
long, and gives the rows up with their reason when retries run out.  Every row of the batch
ends in exactly one of delivered / rejected / given up.
"""

from __future__ import annotations

from async_etl.core.retry import RetryPolicy
from async_etl.core.stats import RunStats
from async_etl.errors import ErrorKind, TransientError
from async_etl.typing import EncodedBatch, RowError, SendResult


class Delivery:
    """The state of one batch's delivery: what to send next, and on which attempt."""

    __slots__ = (
        "abandoned",
        "attempt",
        "batch",
        "delivered",
        "given_up",
        "pending",
        "policy",
        "rejected",
        "stats",
    )

    def __init__(self, batch: EncodedBatch, stats: RunStats, policy: RetryPolicy) -> None:
        self.batch = batch
        self.stats = stats
        self.policy = policy
        self.attempt = 1
        self.pending: EncodedBatch | None = batch
        self.delivered = 0
        self.rejected: list[RowError] = []  # every row refused for good, with the reason
        self.given_up: tuple[EncodedBatch, str] | None = None  # rows retries ran out on, why
        self.abandoned = False  # see abandon

    def sent(self, result: SendResult, latency_s: float, jitter: float) -> float:
        """Account for an attempt that got an answer; return the delay before the next one."""
        stats = self.stats
        stats.record_attempt(latency_s)
        stats.record_delivered(result.delivered)
        self.delivered += result.delivered
        self.rejected.extend(result.rejected)
        for rejected in result.rejected:
            stats.record_rejected(1, rejected.reason)
        if result.retry is None:
            return self._finish()
        self.pending = result.retry
        reason = result.retry_reason or "partial failure"
        stats.record_error(reason)
        return self._again(reason, jitter, result.retry_after)

    def failed(self, exc: TransientError, latency_s: float, jitter: float) -> float:
        """Account for an attempt that failed transiently; return the delay before the next one."""
        self.stats.record_attempt(latency_s)
        self.stats.record_error(exc.message)
        network = exc.kind is ErrorKind.NETWORK
        return self._again(exc.message, jitter, exc.retry_after, network=network)

    def _again(
        self, reason: str, jitter: float, retry_after: float | None, *, network: bool = False
    ) -> float:
        decision = self.policy.decide(
            self.attempt, retryable=True, jitter=jitter, retry_after=retry_after, network=network
        )
        if not decision.retry:
            assert self.pending is not None
            self.stats.record_given_up(self.pending.row_count, reason)
            self.given_up = (self.pending, reason)
            return self._finish()
        self.stats.retries += 1
        self.attempt += 1
        return decision.delay

    def abandon(self) -> None:
        """The run stops waiting for this batch (an abort): its pending rows stay unanswered.

        Records which of the batch's ids did get an answer in earlier attempts when the run
        keeps ids (``RunStats.ids``); ``pending`` and the counts are left as they are (a
        writer still looks the pending rows up).  Only the first call records.
        """
        if self.pending is not None and self.stats.ids is not None and not self.abandoned:
            self.stats.ids.abandoned(self.batch, self.pending)
        self.abandoned = True

    def _finish(self) -> float:
        self.pending = None
        stats = self.stats
        stats.record_batch_done()
        if stats.ids is not None:
            stats.ids.finished(self.batch, None if self.given_up is None else self.given_up[0])
        return 0.0
