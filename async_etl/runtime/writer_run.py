"""``Writer``: its life cycle, the open batch it fills, and the task that ships batches.

The theory of operation is in ``async_etl.runtime.writer`` (the public module, with
``open_writer``); one batch's delivery is ``writer_send.BatchSender``.
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

from async_etl.core.batching import BatchLimits, Book
from async_etl.core.retry import RetryPolicy
from async_etl.core.stats import RunStats
from async_etl.errors import AsyncEtlError, ConfigError, LoadError, first_etl_error
from async_etl.runtime.retrying import retrying
from async_etl.runtime.writer_intake import Intake
from async_etl.runtime.writer_report import (
    Refusals,
    SnapshotCallback,
    WriterLimits,
    WriterReport,
    WriterSnapshot,
)
from async_etl.runtime.writer_send import CANCELLED_EARLY, BatchSender
from async_etl.sinks.rows import RowsSink
from async_etl.sinks.rows_common import Declared

ABORTED = "writer aborted before delivery"


class Writer:
    """Streams a host's rows into one table; see ``async_etl.runtime.writer``.  Not thread-safe."""

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
        if not snapshot_interval > 0:  # 0 would call ``on_snapshot`` without pause; NaN too
            raise ConfigError(f"snapshot_interval must be > 0 seconds, got {snapshot_interval:g}")
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
        self._book = Book()
        self._refusals = Refusals(keep_rows)
        self._intake = Intake(batch, sink, self._book, self._refusals, self._poke)
        self._buffer = self._intake.buffer
        self._stats = RunStats(started_at=time.perf_counter())
        self._random = random.Random()
        self._wake = anyio.Event()
        self._room = anyio.Event()
        self._changed = anyio.Event()
        self._flush_mark = 0
        self._closing = False
        self._aborted = False
        self._error: AsyncEtlError | None = None
        self._runner: asyncio.Task[None] | None = None
        self._deliveries: anyio.CancelScope | None = None
        self._sender = self._new_sender(0)
        self._report: WriterReport | None = None

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
        self._intake.start(names)
        self._stats = RunStats(started_at=time.perf_counter())
        self._sender = self._new_sender(len(names))
        self._runner = asyncio.get_running_loop().create_task(self._run())

    async def aclose(self) -> WriterReport:
        """Flush, wait for every batch, close the connections; return the report.

        Raises the writer's fatal ``AsyncEtlError`` if it had one (``report`` still holds the
        accounting).  Safe to call twice.  Cancelled while it waits for the batches, it aborts
        (what is left is counted, the connections are closed) and lets the cancel through.
        """
        if self._report is None:
            self._closing = True
            self._wake.set()
            if self._runner is not None:
                try:  # shielded: a cancel here must not end the runner before ``abort``
                    await asyncio.shield(self._runner)
                except asyncio.CancelledError:
                    with anyio.CancelScope(shield=True):
                        await self.abort(CANCELLED_EARLY)
                    raise
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
        self._intake.drop(reason)
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
        # rows left only after a fatal error: never shipped
        self._intake.drop(self._error.message if self._error else ABORTED)
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
        self._check_usable()
        shaped = self._intake.shaped(row)
        if shaped is None:
            return
        if self._buffer.full:
            await self._wait_for_room()
        if self._intake.add(shaped):
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
        intake, buffer = self._intake, self._buffer
        most = intake.slice_rows
        pos = 0
        while pos < len(rows):
            self._check_usable()
            if buffer.full:
                await self._wait_for_room()
            room = buffer.limits.max_rows - len(buffer.rows)
            chunk = rows[pos : pos + min(room, most)]
            shaped = intake.shape.normalize_many(chunk)
            if shaped is None:  # some row may not fit: row by row, for its reason
                for row in chunk:
                    await self.write(row)
                pos += len(chunk)
                continue
            pos += intake.add_many(shaped)
            if intake.time_to_yield(time.monotonic()):
                await anyio.lowlevel.checkpoint()

    async def _wait_for_room(self) -> None:
        while self._buffer.full:
            await self._room.wait()
            self._check_usable()

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
                taken = self._intake.take(reason)
                if taken is None:
                    self.limits.in_flight.release_on_behalf_of(token)
                    continue
                batch, plain = taken
                self._book.ship(batch.ids)
                self._room.set()
                self._room = anyio.Event()
                tg.start_soon(self._sender.deliver, batch, token, plain)
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

    def _poke(self) -> None:
        self._wake.set()

    def _new_sender(self, width: int) -> BatchSender:
        return BatchSender(
            self._sink,
            width=width,
            stats=self._stats,
            policy=self._policy,
            jitter=self._random,
            book=self._book,
            refusals=self._refusals,
            limits=self.limits,
            offload_values=self._offload,
            on_settled=self._signal,
        )

    async def _report_every(self) -> None:
        assert self._on_snapshot is not None
        while True:
            await anyio.sleep(self._interval)
            self._on_snapshot(self.snapshot())

    # -- accounting ------------------------------------------------------------------------

    def _signal(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

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
            rejected_rows=tuple(self._refusals.rejected),
            undelivered_rows=tuple(self._refusals.undelivered),
        )


__all__ = ["ABORTED", "Writer"]
