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

A host's list of rows is taken in bulk: ``row_sizes`` estimates every row's size a column at
a time (the same numbers as ``row_size``, without a Python step per value), and
``RowBuffer.add_many`` takes as many rows as the row and byte limits allow, with exactly the
outcome of ``add`` called row by row.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from operator import add, countOf, itemgetter
from typing import Any

from async_etl.typing import IdRange

ROW_OVERHEAD = 8
"""Bytes a row costs beyond its values in the size estimate (length words, separators)."""

_SIZED = (str, bytes, bytearray)


def row_size(row: tuple[Any, ...]) -> int:
    """A cheap estimate of a row's encoded size in bytes: text and bytes by length, 8 else."""
    size = ROW_OVERHEAD
    for value in row:
        if isinstance(value, _SIZED):
            size += len(value) + 4
        else:
            size += 8
    return size


@dataclass(frozen=True, slots=True)
class Columns:
    """Rows of one width seen a column at a time: each column's values and their types."""

    rows: int
    values: tuple[list[Any], ...]
    kinds: tuple[frozenset[type], ...]
    texts: tuple[str | None, ...] = ()
    """Each all-``str`` column's values joined (for its size and its NUL check), else None."""

    @classmethod
    def of(cls, rows: Sequence[tuple[Any, ...]], width: int) -> Columns:
        """``rows`` (each of ``width`` values) by column.

        One ``itemgetter`` pass a column, not ``zip(*rows)``: that allocates an iterator per
        row, and the garbage collector then keeps scanning the host's rows.  A column of
        ``str`` only is joined once here, for whoever needs its text (sizes, checks).
        """
        values = tuple(list(map(itemgetter(i), rows)) for i in range(width))
        kinds = tuple(map(kinds_of, values))
        texts = tuple("".join(v) if k == _STR else None for v, k in zip(values, kinds, strict=True))
        return cls(len(rows), values, kinds, texts)


_NONE = type(None)
_STR = frozenset((str,))


def kinds_of(column: list[Any]) -> frozenset[type]:
    """``frozenset(map(type, column))``, counted first against the first value's type.

    A column of one type (or of one type and None) is the usual case: counting with
    ``operator.countOf`` (identity first) costs about half what building the set does
    (~6 ns a value against ~12, CPython 3.11); any other column pays both.
    """
    if not column:
        return frozenset()
    first, rows = type(column[0]), len(column)
    same = countOf(map(type, column), first)
    if same == rows:
        return frozenset((first,))
    if first is not _NONE and same + countOf(map(type, column), _NONE) == rows:
        return frozenset((first, _NONE))
    return frozenset(map(type, column))


def _sized(kinds: frozenset[type]) -> bool | None:
    """Whether a column of ``kinds`` is sized by length: True all, False none, None some."""
    sized = [issubclass(k, _SIZED) for k in kinds]
    if not any(sized):
        return False
    return True if all(sized) else None


def column_sizes(columns: Columns) -> list[int]:
    """``row_size`` of each row of ``columns``, a column at a time."""
    fixed = ROW_OVERHEAD
    totals: list[int] | None = None
    for column, kinds in zip(columns.values, columns.kinds, strict=True):
        sized = _sized(kinds)
        if sized is False:
            fixed += 8
            continue
        if sized:
            sizes: list[int] = list(map(len, column))
            fixed += 4
        else:
            sizes = [len(v) + 4 if isinstance(v, _SIZED) else 8 for v in column]
        totals = sizes if totals is None else list(map(add, totals, sizes))
    if totals is None:
        return [fixed] * columns.rows
    return list(map(fixed.__add__, totals))


def column_total(columns: Columns) -> int:
    """``sum(column_sizes(columns))``: one total a column, no list of sizes a row."""
    total = ROW_OVERHEAD * columns.rows
    texts = columns.texts or (None,) * len(columns.values)
    for column, kinds, text in zip(columns.values, columns.kinds, texts, strict=True):
        total += column_bytes(column, kinds, text)
    return total


def column_bytes(column: Sequence[Any], kinds: frozenset[type], text: str | None = None) -> int:
    """What one column's values add to ``row_size`` over its rows, summed (no ``ROW_OVERHEAD``).

    ``kinds``: the values' types (``kinds_of``); ``text``: the values joined, when all ``str``.
    """
    sized = _sized(kinds)
    if sized is False:
        return 8 * len(column)
    if kinds == _STR:  # one join: about a third of the cost of a ``len`` a value
        return len("".join(column) if text is None else text) + 4 * len(column)
    if sized:
        return sum(map(len, column)) + 4 * len(column)
    return sum(len(v) + 4 if isinstance(v, _SIZED) else 8 for v in column)


def row_sizes(rows: Sequence[tuple[Any, ...]]) -> list[int]:
    """``[row_size(r) for r in rows]``, worked out a column at a time when they are as wide."""
    if not rows:
        return []
    width = len(rows[0])
    if set(map(len, rows)) != {width}:  # ragged (a null writer takes any width)
        return [row_size(r) for r in rows]
    return column_sizes(Columns.of(rows, width))


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """When an open batch closes: ``max_rows`` rows, ``max_bytes`` bytes or ``linger_s`` age.

    Raises ``ValueError`` for a limit below 1 row, 1 byte, or a negative (or NaN) linger.
    """

    max_rows: int = 5000
    max_bytes: int = 8 * 1024 * 1024
    linger_s: float = 0.05

    def __post_init__(self) -> None:
        if self.max_rows < 1:
            raise ValueError(f"batch_rows must be at least 1, got {self.max_rows}")
        if self.max_bytes < 1:
            raise ValueError(f"batch_bytes must be at least 1, got {self.max_bytes}")
        if not self.linger_s >= 0:  # NaN too: it passes every comparison
            raise ValueError(f"linger_ms must be >= 0, got {self.linger_s * 1000:g}")


@dataclass(frozen=True, slots=True)
class ClosedBatch:
    """A closed batch: rows with sequence numbers ``ids.start ..`` in order, and why it closed."""

    ids: IdRange
    rows: Sequence[tuple[Any, ...]]
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

    def add_many(self, rows: Sequence[tuple[Any, ...]], sizes: Sequence[int], now: float) -> int:
        """Accept the leading rows of ``rows`` that fit; return how many were taken.

        ``sizes[i]`` is ``rows[i]``'s estimated size.  The outcome is that of ``add`` row by row
        until the batch is full: it stops at the row limit, or after the row that reached the
        byte limit.  Raises ``ValueError`` when the batch is ``full`` (and takes nothing).
        """
        if self.full:
            raise ValueError("the open batch is full: take it first")
        take = min(self.limits.max_rows - len(self.rows), len(rows))
        if take <= 0:
            return 0
        running = list(accumulate(sizes[:take], initial=self.bytes))
        crossed = bisect_left(running, self.limits.max_bytes, lo=1)  # sizes are positive
        take = min(take, crossed)
        if not self.rows:
            self.opened_at = now
        self.rows.extend(rows[:take])
        self.bytes = running[take]
        self.next_seq += take
        return take

    def add_all(self, rows: Sequence[tuple[Any, ...]], total: int, now: float) -> bool:
        """Accept all of ``rows`` when none of them can reach a limit; True when taken.

        ``total`` is the sum of the rows' estimated sizes.  When the rows fit under both
        limits (the batch then holds at most ``max_rows`` rows and fewer than ``max_bytes``
        bytes), the outcome is that of ``add_many``, without a size a row; otherwise nothing
        is taken and False returned (ask ``add_many`` with each row's size).  Raises
        ``ValueError`` when the batch is ``full``.
        """
        if self.full:
            raise ValueError("the open batch is full: take it first")
        limits = self.limits
        if len(self.rows) + len(rows) > limits.max_rows or self.bytes + total >= limits.max_bytes:
            return False
        if not rows:
            return True
        if not self.rows:
            self.opened_at = now
        self.rows.extend(rows)
        self.bytes += total
        self.next_seq += len(rows)
        return True

    def due(self, now: float) -> float | None:
        """Seconds until linger closes the batch (<= 0: now); None when it is empty."""
        if self.opened_at is None:
            return None
        return self.opened_at + self.limits.linger_s - now

    def take(self, reason: str) -> ClosedBatch | None:
        """Close the open batch and return it (None when empty)."""
        if not self.rows:
            return None
        rows, self.rows = self.rows, []  # the list is the batch's from here: no copy
        self.bytes = 0
        self.opened_at = None
        return ClosedBatch(IdRange(self.next_seq - len(rows), len(rows)), rows, reason)


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
