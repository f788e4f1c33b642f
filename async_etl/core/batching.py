"""The writer's batching and accounting decisions, as pure code (no clock, no I/O).

Theory of operation
-------------------
Rows a host hands to a writer get consecutive sequence numbers (1, 2, 3, ...) in the order
they are accepted, and wait in one open batch (``RowBuffer``).  The batch closes on whichever
comes first:

* ``rows``: it holds ``max_rows`` rows;
* ``bytes``: its estimated size (``row_size``) reached ``max_bytes`` (the row that crossed the
  line is the batch's last, so a batch is never larger than ``max_bytes`` plus one row);
* ``linger``: ``linger_s`` passed since its first row was accepted (``due``);
* ``flush``: the host asked.

A closed batch is the contiguous sequence range ``[start, start + n)`` plus its rows.  The
``Book`` follows each row from accepted to exactly one of delivered / rejected (with the sink's
reason) / undelivered (retries ran out, the writer was aborted or cancelled), with the
invariant ``accepted == buffered + in_flight + delivered + rejected + undelivered`` after every
step, and answers ``flushed(mark)``: is every row accepted before ``mark`` settled?
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from async_etl.typing import IdRange

ROW_OVERHEAD = 8
"""Bytes a row costs beyond its values in the size estimate (length words, separators)."""


def row_size(row: tuple[Any, ...]) -> int:
    """A cheap estimate of a row's encoded size in bytes: text and bytes by length, 8 else."""
    size = ROW_OVERHEAD
    for value in row:
        if isinstance(value, str | bytes | bytearray):
            size += len(value) + 4
        else:
            size += 8
    return size


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """When an open batch closes: ``max_rows`` rows, ``max_bytes`` bytes or ``linger_s`` age.

    Raises ``ValueError`` for a limit below 1 row, 1 byte, or a negative linger.
    """

    max_rows: int = 5000
    max_bytes: int = 8 * 1024 * 1024
    linger_s: float = 0.05

    def __post_init__(self) -> None:
        if self.max_rows < 1:
            raise ValueError(f"batch_rows must be at least 1, got {self.max_rows}")
        if self.max_bytes < 1:
            raise ValueError(f"batch_bytes must be at least 1, got {self.max_bytes}")
        if self.linger_s < 0:
            raise ValueError(f"linger_ms must be >= 0, got {self.linger_s * 1000:g}")


@dataclass(frozen=True, slots=True)
class ClosedBatch:
    """A closed batch: rows with sequence numbers ``ids.start ..`` in order, and why it closed."""

    ids: IdRange
    rows: tuple[tuple[Any, ...], ...]
    reason: str


class RowBuffer:
    """The open batch.  ``add`` rows while not ``full``; ``take`` closes it."""

    __slots__ = ("bytes", "limits", "next_seq", "opened_at", "rows")

    def __init__(self, limits: BatchLimits, first_seq: int = 1) -> None:
        self.limits = limits
        self.rows: list[tuple[Any, ...]] = []
        self.bytes = 0
        self.opened_at: float | None = None
        self.next_seq = first_seq

    @property
    def full(self) -> bool:
        """True when the batch reached its row or byte limit (take it before adding more)."""
        return len(self.rows) >= self.limits.max_rows or self.bytes >= self.limits.max_bytes

    @property
    def start(self) -> int:
        """The sequence number of the open batch's first row (the next row's when empty)."""
        return self.next_seq - len(self.rows)

    def add(self, row: tuple[Any, ...], size: int, now: float) -> int:
        """Accept ``row`` (estimated ``size`` bytes) at time ``now``; return its sequence number.

        Raises ``ValueError`` when the batch is ``full``.
        """
        if self.full:
            raise ValueError("the open batch is full: take it first")
        if not self.rows:
            self.opened_at = now
        self.rows.append(row)
        self.bytes += size
        seq = self.next_seq
        self.next_seq += 1
        return seq

    def due(self, now: float) -> float | None:
        """Seconds until linger closes the batch (<= 0: now); None when it is empty."""
        if self.opened_at is None:
            return None
        return self.opened_at + self.limits.linger_s - now

    def take(self, reason: str) -> ClosedBatch | None:
        """Close the open batch and return it (None when empty)."""
        if not self.rows:
            return None
        rows, self.rows = self.rows, []
        self.bytes = 0
        self.opened_at = None
        return ClosedBatch(IdRange(self.next_seq - len(rows), len(rows)), tuple(rows), reason)


@dataclass(slots=True)
class Book:
    """Where every accepted row is: buffered, in flight, delivered, rejected or undelivered."""

    accepted: int = 0
    in_flight: int = 0
    delivered: int = 0
    rejected: int = 0
    undelivered: int = 0
    batches: int = 0
    reasons: Counter[str] = field(default_factory=Counter)  # rejected / undelivered, by why
    _open: dict[int, int] = field(default_factory=dict)  # batch start -> rows in flight

    @property
    def buffered(self) -> int:
        """Rows accepted but in no closed batch yet."""
        return self.accepted - self.in_flight - self.settled

    @property
    def settled(self) -> int:
        """Rows with a final outcome."""
        return self.delivered + self.rejected + self.undelivered

    def accept(self, rows: int = 1) -> None:
        """Rows entered the open batch."""
        self.accepted += rows

    def ship(self, ids: IdRange) -> None:
        """A closed batch left the buffer for delivery; ``ValueError`` when shipped twice."""
        if ids.start in self._open:
            raise ValueError(f"batch {ids.start} is already in flight")
        if ids.count > self.buffered:
            raise ValueError(f"batch {ids.start} has more rows than are buffered")
        self._open[ids.start] = ids.count
        self.in_flight += ids.count

    def settle(
        self,
        ids: IdRange,
        *,
        delivered: int,
        rejected: Counter[str] | None = None,
        undelivered: Counter[str] | None = None,
    ) -> None:
        """A shipped batch ended; its rows are delivered, rejected or undelivered (by reason).

        Raises ``ValueError`` when the outcome does not cover the batch's rows exactly.
        """
        rejected = rejected or Counter()
        undelivered = undelivered or Counter()
        count = self._open.get(ids.start)
        total = delivered + rejected.total() + undelivered.total()
        if count is None or total != count:
            raise ValueError(f"batch {ids.start}: outcome of {total} rows for {count} in flight")
        del self._open[ids.start]
        self.in_flight -= count
        self.delivered += delivered
        self.rejected += rejected.total()
        self.undelivered += undelivered.total()
        self.reasons.update(rejected)
        self.reasons.update(undelivered)
        self.batches += 1

    def abandon(self, rows: int, reason: str) -> None:
        """Buffered rows that will never be shipped (abort): count them undelivered."""
        rows = min(rows, self.buffered)
        self.undelivered += rows
        self.reasons[reason] += rows

    def flushed(self, mark: int, buffer_start: int) -> bool:
        """True when every row with a sequence number below ``mark`` is settled.

        ``buffer_start`` is the first sequence number still in the open batch.
        """
        if buffer_start < mark and self.buffered:
            return False
        return all(start >= mark for start in self._open)
