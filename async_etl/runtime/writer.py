"""The writer: a host's own rows, batched and delivered with the engine's bounds and retries.

Theory of operation
-------------------
``open_writer(url, table=...)`` returns a ``Writer``; ``async with`` opens it (connects, reads
the table's columns, creates it when declared) and closes it (flush, wait, report).  One
background task per writer (started on open, awaited on close) owns a task group::

    write(row) ──normalize──> RowBuffer (open batch; pure: core.batching)
        └─ waits while the open batch is full                     ← backpressure
    shipper: takes the batch when full / lingered / flushed / closing,
        after taking one token of ``limits.in_flight``           ← bounded in flight
        └─ one delivery task per batch: encode (a thread above ``offload_values``, under
           ``limits.encoding``), then ``engine.deliver`` (Delivery + RetryPolicy, as bench)

* Rows get consecutive sequence numbers; a batch is a contiguous range.  PostgreSQL ledgers
  it under the writer's own key (exactly once across retries); CrateDB resends with
  ``ON CONFLICT (pk) DO NOTHING``.
* ``Book`` (pure) accounts every row: delivered, rejected (the sink's or the encoder's
  reason; the rows themselves kept up to ``keep_rows``) or undelivered (retries ran out, a
  fatal error, ``abort()``, cancellation).  ``report`` is built from it.
* ``abort()`` and cancelling the task inside ``async with``: buffered rows are undelivered;
  deliveries in flight are cancelled, and a cancelled batch is asked whether it committed
  (PostgreSQL's ledger, shielded) before it is counted delivered or undelivered.
* A fatal error (bad credentials, a dropped table) stops the writer: later ``write`` calls
  and ``aclose`` raise it; the report still accounts for every row.
* The limits are ``anyio.CapacityLimiter`` objects: change ``total_tokens`` while it runs.
* ``write_many`` takes a list a slice at a time (as many rows as the open batch has room
  for): rows shaped, sized and counted a column at a time (``RowShape.normalize_many``,
  ``row_sizes``, ``RowBuffer.add_many``); a slice with a row that does not fit goes row by row,
  so that row is rejected with its reason and the others are taken.
* PostgreSQL: a batch that ``core.pg_native.plain`` passes is handed to asyncpg as rows
  (``RecordsBatch``; C encoders, exact by that check); any other batch is encoded by the
  reference encoders, which refuse a bad row with its reason.
* The host loop stays responsive: ``write`` yields at least every millisecond even when it
  need not wait; the ``plain`` check and asyncpg's encoding run in slices of
  ``SLICE_VALUES`` values with a yield between; batches the reference encoders take are
  encoded in a thread above ``offload_values`` (``limits.encoding``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Iterable, Sequence
from itertools import islice
from types import TracebackType
from typing import Any

import anyio
import anyio.lowlevel

from async_etl.core.batching import (
    BatchLimits,
    Book,
    ClosedBatch,
    Columns,
    RowBuffer,
    column_sizes,
    row_size,
    row_sizes,
)
from async_etl.core.delivery import Delivery
from async_etl.core.pg_native import SLICE_VALUES
from async_etl.core.retry import RetryPolicy
from async_etl.core.row_codecs import Encoded, RowShape
from async_etl.core.stats import RunStats
from async_etl.errors import AsyncEtlError, ConfigError, LoadError, first_etl_error
from async_etl.runtime.engine import deliver
from async_etl.runtime.retrying import retrying
from async_etl.runtime.writer_report import (
    BatchOutcome,
    RefusedRow,
    SnapshotCallback,
    WriterLimits,
    WriterReport,
    WriterSnapshot,
)
from async_etl.sinks import sink_scheme
from async_etl.sinks.rows import (
    CrateRowsSink,
    Declared,
    NullRowsSink,
    PostgresRowsSink,
    RecordsBatch,
    RowsSink,
)
from async_etl.typing import EncodedBatch

ABORTED = "writer aborted before delivery"
CANCELLED_EARLY = "writer cancelled before delivery"
CANCELLED = "cancelled in flight; may have landed"
YIELD_EVERY_S = 0.001
"""``write`` yields to the event loop at least this often, even when it need not wait."""


class Writer:
    """Streams a host's rows into one table; see the module docstring.  Not thread-safe."""

    def __init__(
        self,
        sink: RowsSink,
        *,
        columns: Declared = None,
        primary_key: Sequence[str] = (),
        batch: BatchLimits,
        max_in_flight: int = 4,
        retry: RetryPolicy | None = None,
        on_snapshot: SnapshotCallback | None = None,
        snapshot_interval: float = 1.0,
        offload_values: int = 20_000,
        keep_rows: int = 1000,
    ) -> None:
        if max_in_flight < 1:
            raise ConfigError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self._sink = sink
        self._declared = columns
        self._primary_key = tuple(primary_key)
        self.limits = WriterLimits(
            in_flight=anyio.CapacityLimiter(max_in_flight),
            encoding=anyio.CapacityLimiter(1),
        )
        self._policy = retry or RetryPolicy()
        self._on_snapshot = on_snapshot
        self._interval = snapshot_interval
        self._offload = offload_values
        self._keep = keep_rows
        self._buffer = RowBuffer(batch)
        self._book = Book()
        self._stats = RunStats(started_at=time.perf_counter())
        self._random = random.Random()
        self._shape = RowShape(())
        self._wake = anyio.Event()
        self._room = anyio.Event()
        self._changed = anyio.Event()
        self._flush_mark = 0
        self._closing = False
        self._aborted = False
        self._error: AsyncEtlError | None = None
        self._runner: asyncio.Task[None] | None = None
        self._deliveries: anyio.CancelScope | None = None
        self._rejected_rows: list[RefusedRow] = []
        self._undelivered_rows: list[RefusedRow] = []
        self._report: WriterReport | None = None
        self._yielded = time.monotonic()
        self._open_plain: bool | None = False  # the open batch passes the sink's plain check

    # -- life cycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Writer:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None and not issubclass(exc_type, Exception):
            with anyio.CancelScope(shield=True):  # cancelled: account, then let it through
                await self.abort(CANCELLED_EARLY)
            return
        if exc is not None:  # the host's body failed: deliver what it wrote, keep its error
            with contextlib.suppress(AsyncEtlError):
                await self.aclose()
            return
        await self.aclose()

    async def open(self) -> None:
        """Connect and read (or create) the table; start the background task.

        Raises ``ConfigError`` (missing table or column, a type the writer cannot encode, a
        CrateDB table without a primary key), ``LoadError`` when the server refuses us, or
        ``TransientLoadError`` when it stays unreachable through the retries.  On failure the
        sink is closed (its connections with it) before the error is raised.
        """
        try:
            names = await retrying(
                lambda: self._sink.open(self._declared, self._primary_key),
                self._policy,
                self._random.random,
            )
        except BaseException:  # close what the sink opened: no unclosed session or pool
            with anyio.CancelScope(shield=True):
                await self._sink.aclose()
            raise
        self._shape = RowShape(names)
        self._open_plain = self._sink.native
        self._stats = RunStats(started_at=time.perf_counter())
        self._runner = asyncio.get_running_loop().create_task(self._run())

    async def aclose(self) -> WriterReport:
        """Flush, wait for every batch, close the connections; return the report.

        Raises the writer's fatal ``AsyncEtlError`` if it had one (``report`` still holds the
        accounting).  Safe to call twice.
        """
        if self._report is None:
            self._closing = True
            self._wake.set()
            if self._runner is not None:
                await self._runner
            await self._finish()
        if self._error is not None:
            raise self._error
        return self.report

    async def abort(self, reason: str = ABORTED) -> WriterReport:
        """Stop now: buffered rows are undelivered, deliveries in flight are cancelled.

        A cancelled batch counts delivered only when the sink can tell it committed.
        Never raises the writer's error; returns the report.
        """
        if self._report is not None:
            return self._report
        self._aborted = True
        self._closing = True
        dropped = self._buffer.take("abort")
        if dropped is not None:
            self._book.abandon(dropped.ids.count, reason)
            self._keep_rows(self._undelivered_rows, dropped.rows, reason)
        if self._deliveries is not None:
            self._deliveries.cancel()
        self._wake.set()
        self._room.set()
        if self._runner is not None:
            with anyio.CancelScope(shield=True):
                await self._runner
        await self._finish()
        return self.report

    async def _finish(self) -> None:
        leftover = self._buffer.take("closed")  # only after a fatal error: never shipped
        if leftover is not None:
            reason = self._error.message if self._error else ABORTED
            self._book.abandon(leftover.ids.count, reason)
            self._keep_rows(self._undelivered_rows, leftover.rows, reason)
        with anyio.CancelScope(shield=True):
            await self._sink.aclose()
        self._report = self._make_report()
        self._signal()

    # -- writing ---------------------------------------------------------------------------

    async def write(self, row: Any) -> None:
        """Accept one row (tuple, dict by column name, or dataclass); waits when full.

        A row that does not fit the table's columns is rejected (see ``report``), not raised.
        Raises the writer's fatal ``AsyncEtlError`` after a failure, ``LoadError`` when it is
        closed.
        """
        shaped = self._shaped(row)
        if shaped is None:
            return
        if self._buffer.full:
            await self._wait_for_room()
        if self._add(shaped):
            await anyio.lowlevel.checkpoint()

    async def write_many(self, rows: Iterable[Any]) -> None:
        """``write`` each row in turn, taking them a slice at a time (one coroutine for all).

        Raises like ``write``; a row that does not fit is rejected, the others are taken.
        """
        if isinstance(rows, list | tuple):
            await self._write_list(rows)
            return
        it = iter(rows)
        while chunk := list(islice(it, self._buffer.limits.max_rows)):
            await self._write_list(chunk)

    async def _write_list(self, rows: Sequence[Any]) -> None:
        buffer = self._buffer
        most = max(1, SLICE_VALUES // max(1, len(self._shape.columns)))  # a slice's work
        pos = 0
        while pos < len(rows):
            self._check_usable()
            if buffer.full:
                await self._wait_for_room()
            room = buffer.limits.max_rows - len(buffer.rows)
            chunk = rows[pos : pos + min(room, most)]
            shaped = self._shape.normalize_many(chunk)
            if shaped is None:  # some row may not fit: row by row, for its reason
                for row in chunk:
                    await self.write(row)
                pos += len(chunk)
                continue
            pos += self._add_many(shaped)
            now = time.monotonic()
            if now - self._yielded >= YIELD_EVERY_S:
                self._yielded = now
                await anyio.lowlevel.checkpoint()

    def _shaped(self, row: Any) -> tuple[Any, ...] | None:
        """``row`` fitted to the columns; None (and counted rejected) when it does not fit."""
        self._check_usable()
        shaped = self._shape.normalize(row)
        if not isinstance(shaped, str):
            return shaped
        self._book.accept()
        self._book.rejected += 1
        self._book.reasons[shaped] += 1
        self._keep_rows(self._rejected_rows, (row,), shaped)
        return None

    async def _wait_for_room(self) -> None:
        while self._buffer.full:
            await self._room.wait()
            self._check_usable()

    def _add(self, shaped: tuple[Any, ...]) -> bool:
        """Put a row in the open batch; True when it is time to yield to the loop."""
        buffer = self._buffer
        now = time.monotonic()
        buffer.add(shaped, row_size(shaped), now)
        self._book.accept()
        if self._open_plain:
            self._open_plain = None  # not known: checked when the batch is sent
        if len(buffer.rows) == 1 or buffer.full:
            self._wake.set()
        if now - self._yielded < YIELD_EVERY_S:
            return False
        self._yielded = now  # a producer that never waits still lets the loop run
        return True

    def _add_many(self, shaped: Sequence[tuple[Any, ...]]) -> int:
        """Put the leading rows that fit in the open batch; return how many it took.

        The rows are seen by column once, for their sizes and for the sink's ``plain`` check
        (made on all of ``shaped``: a row left for the next batch only makes it stricter).
        """
        buffer = self._buffer
        was_empty = not buffer.rows
        width = len(self._shape.columns)
        if width:
            columns = Columns.of(shaped, width)
            sizes = column_sizes(columns)
            if self._open_plain:
                self._open_plain = self._sink.plain_columns(columns)
        else:  # a null writer without columns: rows of any width
            sizes = row_sizes(shaped)
        taken = buffer.add_many(shaped, sizes, time.monotonic())
        self._book.accept(taken)
        if was_empty or buffer.full:
            self._wake.set()
        return taken

    async def flush(self) -> None:
        """Ship the open batch and wait until every row written before this call is settled.

        Raises the writer's fatal ``AsyncEtlError`` if it fails meanwhile.
        """
        mark = self._buffer.next_seq
        self._flush_mark = max(self._flush_mark, mark)
        self._wake.set()
        while not self._book.flushed(mark, self._buffer.start):
            if self._error is not None:
                raise self._error
            if self._runner is None or self._runner.done():
                break
            await self._changed.wait()

    @property
    def report(self) -> WriterReport:
        """The accounting so far (final once closed)."""
        return self._report or self._make_report()

    def snapshot(self) -> WriterSnapshot:
        """The figures now (also what ``on_snapshot`` receives every interval)."""
        now = time.perf_counter()
        s = self._stats.snapshot(now)
        b = self._book
        return WriterSnapshot(
            elapsed_s=s.elapsed_s,
            accepted=b.accepted,
            delivered=b.delivered,
            rejected=b.rejected,
            undelivered=b.undelivered,
            buffered=b.buffered,
            in_flight_rows=b.in_flight,
            in_flight_batches=s.in_flight,
            rows_per_s=s.rows_per_s,
            retries=s.retries,
            p50_ms=s.p50_ms,
            p95_ms=s.p95_ms,
            p99_ms=s.p99_ms,
        )

    def _check_usable(self) -> None:
        if self._error is not None:
            raise self._error
        if self._closing or self._runner is None:
            raise LoadError("the writer is not open (use `async with open_writer(...)`)")

    # -- the background task ----------------------------------------------------------------

    async def _run(self) -> None:
        try:
            async with anyio.create_task_group() as outer:
                if self._on_snapshot is not None:
                    outer.start_soon(self._report_every)
                with anyio.CancelScope() as self._deliveries:
                    async with anyio.create_task_group() as tg:
                        await self._ship(tg)
                outer.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            err = first_etl_error(group)
            if err is None:
                raise
            self._error = err
        except AsyncEtlError as err:
            self._error = err
        finally:
            self._room.set()
            self._signal()

    async def _ship(self, tg: anyio.abc.TaskGroup) -> None:
        while True:
            buffer = self._buffer
            due = buffer.due(time.monotonic())
            reason = self._ship_reason(due)
            if reason is not None:
                token = object()
                await self.limits.in_flight.acquire_on_behalf_of(token)
                batch = buffer.take(reason)
                if batch is None:
                    self.limits.in_flight.release_on_behalf_of(token)
                    continue
                self._book.ship(batch.ids)
                plain, self._open_plain = self._open_plain, self._sink.native
                self._room.set()
                self._room = anyio.Event()
                tg.start_soon(self._deliver, batch, token, plain)
                continue
            if self._closing:
                return
            with anyio.move_on_after(math.inf if due is None else max(due, 0.0)):
                await self._wake.wait()
            self._wake = anyio.Event()

    def _ship_reason(self, due: float | None) -> str | None:
        buffer = self._buffer
        if not buffer.rows or self._aborted:
            return None
        if buffer.full:
            return "full"
        if self._closing:
            return "close"
        if self._flush_mark > buffer.start:
            return "flush"
        if due is not None and due <= 0:
            return "linger"
        return None

    async def _plain(self, rows: Sequence[tuple[Any, ...]]) -> bool:
        """The sink's ``plain`` check over ``rows``, a slice at a time, yielding in between."""
        every = max(1, SLICE_VALUES // max(1, len(self._shape.columns)))
        for start in range(0, len(rows), every):
            if start:
                await anyio.lowlevel.checkpoint()
            if not self._sink.plain(rows[start : start + every]):
                return False
        return True

    async def _encode(self, rows: Sequence[tuple[Any, ...]]) -> Encoded:
        if len(rows) * max(1, len(self._shape.columns)) < self._offload:
            return self._sink.encode(rows)
        return await anyio.to_thread.run_sync(
            self._sink.encode, rows, _let_go, limiter=self.limits.encoding
        )

    async def _deliver(self, batch: ClosedBatch, token: object, plain: bool | None) -> None:
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
                self._keep_rows(self._rejected_rows, (batch.rows[pos],), why)
            if encoded.kept:
                await self._send(batch, encoded, out)
        finally:
            missing = batch.ids.count - out.total
            if missing > 0:  # cancelled or failed while encoding: nothing was sent
                out.undelivered[unsent] += missing
                self._keep_rows(self._undelivered_rows, batch.rows[-missing:], unsent)
            self._book.settle(
                batch.ids,
                delivered=out.delivered,
                rejected=out.rejected,
                undelivered=out.undelivered,
            )
            self.limits.in_flight.release_on_behalf_of(token)
            self._signal()

    async def _send(self, batch: ClosedBatch, encoded: Encoded | None, out: BatchOutcome) -> None:
        """Deliver the rows (``encoded``, or, when None, ``batch.rows`` as they are).

        Accounts each row in ``out``, also when cancelled or failed.
        """
        wire: EncodedBatch
        if encoded is None:
            wire = RecordsBatch(batch.ids, b"", self._sink.wire, records=batch.rows)
        else:
            ids, kept = batch.ids, encoded.kept
            if len(kept) == ids.count:  # every row kept (the usual case)
                keys = tuple(range(ids.start, ids.stop))
            else:
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
                self._keep_rows(self._rejected_rows, (batch.rows[err.row_id - start],), err.reason)
        if d.given_up is not None:
            pending, why = d.given_up
            out.undelivered[why] += pending.row_count
            rows = [batch.rows[i - start] for i in pending.row_ids()]
            self._keep_rows(self._undelivered_rows, rows, why)

    async def _report_every(self) -> None:
        assert self._on_snapshot is not None
        while True:
            await anyio.sleep(self._interval)
            self._on_snapshot(self.snapshot())

    # -- accounting ------------------------------------------------------------------------

    def _signal(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def _keep_rows(self, into: list[RefusedRow], rows: Iterable[Any], reason: str) -> None:
        for row in rows:
            if len(into) >= self._keep:
                return
            into.append(RefusedRow(row, reason))

    def _make_report(self) -> WriterReport:
        b = self._book
        return WriterReport(
            accepted=b.accepted,
            delivered=b.delivered,
            rejected=b.rejected,
            undelivered=b.undelivered,
            batches=b.batches,
            retries=self._stats.retries,
            elapsed_s=time.perf_counter() - self._stats.started_at,
            reasons=dict(b.reasons),
            rejected_rows=tuple(self._rejected_rows),
            undelivered_rows=tuple(self._undelivered_rows),
        )


def _let_go() -> None:
    """Release the GIL for a moment, so the event loop's thread can take it (encoding)."""
    time.sleep(0)


def open_writer(
    url: str,
    *,
    table: str,
    columns: Declared = None,
    primary_key: Sequence[str] = (),
    batch_rows: int = 5000,
    batch_bytes: int = 8 * 1024 * 1024,
    linger_ms: float = 50.0,
    max_in_flight: int = 4,
    retry: RetryPolicy | None = None,
    on_snapshot: SnapshotCallback | None = None,
    snapshot_interval: float = 1.0,
    connections: int | None = None,
    gzip_threshold: int | None = None,
) -> Writer:
    """A ``Writer`` into ``table`` at ``url`` (PostgreSQL, CrateDB ``http(s)://``, ``null://``).

    Use it as ``async with open_writer(...) as writer:``.  ``columns``: a mapping name ->
    SQL type creates the table when missing (with ``primary_key``); a sequence of names
    fills only those; None fills every column.  A batch closes at ``batch_rows`` rows,
    ``batch_bytes`` (estimated) bytes or ``linger_ms`` after its first row; at most
    ``max_in_flight`` batches are delivered at once (``connections`` defaults to that).
    ``gzip_threshold`` (CrateDB only): request bodies of at least this many bytes are sent
    gzipped, 0 never (default 8192, as ``bench``; on a fast local link gzip costs more CPU
    than it saves).  Raises ``ConfigError`` in one line for a bad URL, table name or limit,
    and for ``gzip_threshold`` with a URL that is not CrateDB's.
    """
    scheme = sink_scheme(url)
    try:
        limits = BatchLimits(batch_rows, batch_bytes, linger_ms / 1000.0)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if max_in_flight < 1:
        raise ConfigError(f"max_in_flight must be at least 1, got {max_in_flight}")
    pool = connections or max_in_flight
    if pool < 1:
        raise ConfigError(f"connections must be at least 1, got {pool}")
    crate = scheme not in ("null", "postgresql", "postgres")
    if gzip_threshold is not None and not crate:
        raise ConfigError(f"gzip_threshold applies to CrateDB URLs only, not {scheme}://")
    if gzip_threshold is not None and gzip_threshold < 0:
        raise ConfigError(f"gzip_threshold must be 0 (never) or more, got {gzip_threshold}")
    sink: RowsSink
    if scheme == "null":
        sink = NullRowsSink()
    elif not crate:
        sink = PostgresRowsSink(url, table=table, concurrency=pool)
    elif gzip_threshold is None:
        sink = CrateRowsSink(url, table=table, concurrency=pool)
    else:
        sink = CrateRowsSink(url, table=table, concurrency=pool, gzip_threshold=gzip_threshold)
    return Writer(
        sink,
        columns=columns,
        primary_key=primary_key,
        batch=limits,
        max_in_flight=max_in_flight,
        retry=retry,
        on_snapshot=on_snapshot,
        snapshot_interval=snapshot_interval,
    )


__all__ = [
    "RefusedRow",
    "Writer",
    "WriterLimits",
    "WriterReport",
    "WriterSnapshot",
    "open_writer",
]
