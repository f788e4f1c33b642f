"""A writer's open batch: rows fitted to the table's columns, sized, counted; no I/O.

``Intake`` is the synchronous half of ``Writer.write`` / ``write_many``: it shapes rows
(``RowShape``), puts them in the ``RowBuffer`` with their estimated sizes, counts them in the
``Book``, rejects a row that does not fit (with its reason), and keeps track of whether the
open batch passes the sink's ``plain`` check (True: known to pass, None: not known, checked
when the batch is sent, False: known not to).  The waiting (for room, for the loop) is the
writer's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from async_etl.core.batching import BatchLimits, Book, ClosedBatch, RowBuffer, row_size, row_sizes
from async_etl.core.pg_native import SLICE_VALUES
from async_etl.core.row_codecs import RowShape
from async_etl.runtime.writer_report import Refusals
from async_etl.sinks.rows import RowsSink

YIELD_EVERY_S = 0.001
"""``write`` yields to the event loop at least this often, even when it need not wait."""


class Intake:
    """The open batch of one writer; ``wake`` is called when the shipper should look at it."""

    def __init__(
        self,
        limits: BatchLimits,
        sink: RowsSink,
        book: Book,
        refusals: Refusals,
        wake: Callable[[], None],
    ) -> None:
        self.buffer = RowBuffer(limits)
        self.shape = RowShape(())
        self._sink = sink
        self._book = book
        self._refusals = refusals
        self._wake = wake
        self._yielded = time.monotonic()
        self._open_plain: bool | None = False

    def start(self, names: tuple[str, ...]) -> None:
        """Take the table's column names (the writer is open)."""
        self.shape = RowShape(names)
        self._open_plain = self._sink.native

    @property
    def slice_rows(self) -> int:
        """How many rows make a slice of ``SLICE_VALUES`` values (the work between yields)."""
        return max(1, SLICE_VALUES // max(1, len(self.shape.columns)))

    def shaped(self, row: Any) -> tuple[Any, ...] | None:
        """``row`` fitted to the columns; None (and counted rejected) when it does not fit."""
        shaped = self.shape.normalize(row)
        if not isinstance(shaped, str):
            return shaped
        self._book.accept()
        self._book.rejected += 1
        self._book.reasons[shaped] += 1
        self._refusals.reject((row,), shaped)
        return None

    def add(self, shaped: tuple[Any, ...]) -> bool:
        """Put a row in the open batch; True when it is time to yield to the loop."""
        buffer = self.buffer
        now = time.monotonic()
        buffer.add(shaped, row_size(shaped), now)
        self._book.accept()
        if self._open_plain:
            self._open_plain = None  # not known: checked when the batch is sent
        if len(buffer.rows) == 1 or buffer.full:
            self._wake()
        return self.time_to_yield(now)

    def add_many(self, shaped: Sequence[tuple[Any, ...]]) -> int:
        """Put the leading rows that fit in the open batch; return how many it took.

        The sink looks at the rows once, by column (``look``), for their size and for its
        ``plain`` check (made on all of ``shaped``: a row left for the next batch only makes it
        stricter).  Sizes are one total while the rows stay clear of the batch's limits
        (``RowBuffer.add_all``); a size a row only for the slice that closes the batch.
        """
        buffer = self.buffer
        was_empty = not buffer.rows
        now = time.monotonic()
        if self.shape.columns:
            plain, total = self._sink.look(shaped, bool(self._open_plain))
            if self._open_plain:
                self._open_plain = plain
            if buffer.add_all(shaped, total, now):
                taken = len(shaped)
            else:
                taken = buffer.add_many(shaped, row_sizes(shaped), now)
        else:  # a null writer without columns: rows of any width
            taken = buffer.add_many(shaped, row_sizes(shaped), now)
        self._book.accept(taken)
        if was_empty or buffer.full:
            self._wake()
        return taken

    def time_to_yield(self, now: float) -> bool:
        """True (and the clock restarted) when ``YIELD_EVERY_S`` passed since the last yield."""
        if now - self._yielded < YIELD_EVERY_S:
            return False
        self._yielded = now  # a producer that never waits still lets the loop run
        return True

    def take(self, reason: str) -> tuple[ClosedBatch, bool | None] | None:
        """Close the open batch (None when empty) and say whether it passes ``plain``."""
        batch = self.buffer.take(reason)
        if batch is None:
            return None
        plain, self._open_plain = self._open_plain, self._sink.native
        return batch, plain

    def drop(self, reason: str) -> ClosedBatch | None:
        """Take the open batch's rows as undelivered for ``reason`` (None when empty)."""
        dropped = self.buffer.take("closed")
        if dropped is not None:
            self._book.abandon(dropped.ids.count, reason)
            self._refusals.undeliver(dropped.rows, reason)
        return dropped


__all__ = ["YIELD_EVERY_S", "Intake"]
