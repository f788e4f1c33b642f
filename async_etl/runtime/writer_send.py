"""One closed batch of a writer, from its rows to delivered / rejected / undelivered.

Theory of operation
-------------------
``BatchSender.deliver(batch, token, plain)`` runs as one task per batch in the writer's task
group, holding one token of ``limits.in_flight`` that it releases when done::

    plain unknown? ── the sink's plain check, a slice of SLICE_VALUES values at a time
    plain ────────── RecordsBatch (the rows as they are; the driver's C encoders)
    else ─────────── encode (in a thread above ``offload_values``, under ``limits.encoding``)
                      └─ rows the encoder refuses are rejected with its reason
    send ─────────── engine.deliver: Delivery + RetryPolicy, as ``bench``

* Every row of the batch is settled in the ``Book`` exactly once, in a ``finally``: rows not
  accounted for by the delivery (cancelled or failed before or while encoding) are
  undelivered with the reason why.
* Cancelled or failed while a request was pending: the sink is asked (shielded, 10 s at most)
  whether that request landed (PostgreSQL's ledger) before the rows count delivered;
  otherwise they are undelivered ("may have landed").
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import anyio.lowlevel

from async_etl.core.batching import Book, ClosedBatch
from async_etl.core.delivery import Delivery
from async_etl.core.pg_native import SLICE_VALUES
from async_etl.core.retry import RetryPolicy
from async_etl.core.row_codecs import Encoded
from async_etl.core.stats import RunStats
from async_etl.errors import AsyncEtlError
from async_etl.runtime.engine import deliver
from async_etl.runtime.writer_report import BatchOutcome, Refusals, WriterLimits
from async_etl.sinks.rows import RowsSink
from async_etl.sinks.rows_common import RecordsBatch
from async_etl.typing import EncodedBatch

CANCELLED_EARLY = "writer cancelled before delivery"
CANCELLED = "cancelled in flight; may have landed"


class BatchSender:
    """Delivers a writer's closed batches and settles their rows; see the module docstring."""

    def __init__(
        self,
        sink: RowsSink,
        *,
        width: int,
        stats: RunStats,
        policy: RetryPolicy,
        jitter: random.Random,
        book: Book,
        refusals: Refusals,
        limits: WriterLimits,
        offload_values: int,
        on_settled: Callable[[], None],
    ) -> None:
        self._sink = sink
        self._width = max(1, width)
        self._stats = stats
        self._policy = policy
        self._random = jitter
        self._book = book
        self._refusals = refusals
        self._limits = limits
        self._offload = offload_values
        self._on_settled = on_settled

    async def deliver(self, batch: ClosedBatch, token: object, plain: bool | None) -> None:
        """Send ``batch`` (``plain``: passes the sink's check; None: not known yet).

        Settles every row of it and releases ``token`` of ``limits.in_flight``.  Raises the
        sink's fatal ``AsyncEtlError``; cancellation passes through (after settling).
        """
        out = BatchOutcome()
        unsent = CANCELLED_EARLY
        try:
            if plain is None:
                plain = await self._plain(batch.rows)
            if plain:
                await self._send(batch, None, out)
                return
            try:
                encoded = await self._encode(batch.rows)
            except Exception as exc:  # an encoder's bug: the rows never left, say so
                unsent = f"not sent: encoding failed: {type(exc).__name__}: {exc}"
                return
            for pos, why in encoded.refused:
                out.rejected[why] += 1
                self._refusals.reject((batch.rows[pos],), why)
            if encoded.kept:
                await self._send(batch, encoded, out)
        finally:
            missing = batch.ids.count - out.total
            if missing > 0:  # cancelled or failed while encoding: nothing was sent
                out.undelivered[unsent] += missing
                self._refusals.undeliver(batch.rows[-missing:], unsent)
            self._book.settle(
                batch.ids,
                delivered=out.delivered,
                rejected=out.rejected,
                undelivered=out.undelivered,
            )
            self._limits.in_flight.release_on_behalf_of(token)
            self._on_settled()

    async def _plain(self, rows: Sequence[tuple[Any, ...]]) -> bool:
        """The sink's ``plain`` check over ``rows``, a slice at a time, yielding in between."""
        every = max(1, SLICE_VALUES // self._width)
        for start in range(0, len(rows), every):
            if start:
                await anyio.lowlevel.checkpoint()
            if not self._sink.plain(rows[start : start + every]):
                return False
        return True

    async def _encode(self, rows: Sequence[tuple[Any, ...]]) -> Encoded:
        if len(rows) * self._width < self._offload:
            return self._sink.encode(rows)
        return await anyio.to_thread.run_sync(
            self._sink.encode, rows, _let_go, limiter=self._limits.encoding
        )

    async def _send(self, batch: ClosedBatch, encoded: Encoded | None, out: BatchOutcome) -> None:
        """Deliver the rows (``encoded``, or, when None, ``batch.rows`` as they are).

        Accounts each row in ``out``, also when cancelled or failed.
        """
        wire: EncodedBatch
        if encoded is None:
            wire = RecordsBatch(batch.ids, b"", self._sink.wire, records=batch.rows)
        else:
            ids, kept = batch.ids, encoded.kept
            keys: tuple[int, ...] | range = range(ids.start, ids.stop)  # every row kept
            if len(kept) != ids.count:
                keys = tuple(map(ids.start.__add__, kept))
            wire = EncodedBatch(ids, encoded.payload, self._sink.wire, keys=keys)
        d = Delivery(wire, self._stats, self._policy)
        self._stats.started_request()
        try:
            await deliver(self._sink, wire, self._stats, self._policy, self._random.random, d)
        except BaseException as exc:
            pending = d.pending
            if pending is not None:
                with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                    if pending is wire and await self._sink.landed(pending):
                        d.delivered += pending.row_count
                        d.pending = None
                if d.pending is not None:
                    why = exc.message if isinstance(exc, AsyncEtlError) else CANCELLED
                    d.given_up = (d.pending, why)
            raise
        finally:
            self._stats.in_flight -= 1
            self._tally(batch, d, out)

    def _tally(self, batch: ClosedBatch, d: Delivery, out: BatchOutcome) -> None:
        start = batch.ids.start
        out.delivered += d.delivered
        for err in d.rejected:
            out.rejected[err.reason] += 1
            if err.row_id is not None:
                self._refusals.reject((batch.rows[err.row_id - start],), err.reason)
        if d.given_up is not None:
            pending, why = d.given_up
            out.undelivered[why] += pending.row_count
            self._refusals.undeliver([batch.rows[i - start] for i in pending.row_ids()], why)


def _let_go() -> None:
    """Release the GIL for a moment, so the event loop's thread can take it (encoding)."""
    time.sleep(0)


__all__ = ["CANCELLED", "CANCELLED_EARLY", "BatchSender"]
