"""The writer's pure batching and accounting: no row lost or duplicated, limits respected."""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from async_etl.core.batching import (
    BatchLimits,
    Book,
    ClosedBatch,
    Columns,
    RowBuffer,
    column_sizes,
    column_total,
    kinds_of,
    row_size,
    row_sizes,
)

# an operation: ("add", size) | ("tick", seconds) | ("flush",)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(1, 400)),
        st.tuples(st.just("tick"), st.floats(0.0, 0.2)),
        st.tuples(st.just("flush")),
    ),
    max_size=300,
)


def _drive(limits: BatchLimits, script: list[tuple[object, ...]]) -> list[ClosedBatch]:
    """Run ``script`` the way the writer does: take when full, lingered or flushed."""
    buf = RowBuffer(limits)
    now, closed, n = 0.0, [], 0
    for op in script:
        if op[0] == "add":
            if buf.full:
                batch = buf.take("full")
                assert batch is not None
                closed.append(batch)
            buf.add((n, int(op[1])), int(op[1]), now)  # type: ignore[call-overload]
            n += 1
        elif op[0] == "tick":
            now += float(op[1])  # type: ignore[arg-type]
            due = buf.due(now)
            if due is not None and due <= 0:
                batch = buf.take("linger")
                assert batch is not None
                closed.append(batch)
        else:
            batch = buf.take("flush")
            if batch is not None:
                closed.append(batch)
    last = buf.take("close")
    return [*closed, last] if last is not None else closed


@settings(max_examples=200, deadline=None)
@given(
    rows=st.integers(1, 50),
    max_bytes=st.integers(1, 5000),
    linger=st.floats(0.0, 0.5),
    script=ops,
)
def test_batches_hold_every_row_once_in_order_within_limits(
    rows: int, max_bytes: int, linger: float, script: list[tuple[object, ...]]
) -> None:
    """Every accepted row is in exactly one batch, in order; batches respect rows and bytes."""
    limits = BatchLimits(rows, max_bytes, linger)
    batches = _drive(limits, script)
    seen = [row[0] for b in batches for row in b.rows]
    added = sum(1 for op in script if op[0] == "add")
    assert seen == list(range(added))
    for b in batches:
        assert 1 <= len(b.rows) <= rows
        assert b.ids.count == len(b.rows)
        assert [r[0] + 1 for r in b.rows] == list(range(b.ids.start, b.ids.stop))
        assert sum(r[1] for r in b.rows[:-1]) < max_bytes  # only the last row may cross
    assert all(a.ids.stop == b.ids.start for a, b in itertools.pairwise(batches))


def test_a_batch_closes_at_the_row_that_reaches_the_byte_limit() -> None:
    """Bytes close a batch at the first row that reaches the limit, not before."""
    buf = RowBuffer(BatchLimits(max_rows=100, max_bytes=250, linger_s=1.0))
    buf.add((1,), 100, 0.0)
    buf.add((2,), 100, 0.0)
    assert not buf.full
    buf.add((3,), 100, 0.0)
    assert buf.full
    with pytest.raises(ValueError, match="full"):
        buf.add((4,), 1, 0.0)


def test_linger_is_counted_from_the_first_row() -> None:
    """``due`` is the linger time left since the open batch's first row; None when empty."""
    buf = RowBuffer(BatchLimits(max_rows=10, linger_s=0.05))
    assert buf.due(5.0) is None
    buf.add(("a",), 10, 1.0)
    buf.add(("b",), 10, 1.04)
    assert buf.due(1.02) == pytest.approx(0.03)
    assert buf.due(1.06) == pytest.approx(-0.01)


outcomes = st.lists(
    st.tuples(st.integers(1, 30), st.integers(0, 3), st.integers(0, 2)), max_size=40
)


@settings(max_examples=200, deadline=None)
@given(plan=outcomes, abandon=st.integers(0, 20))
def test_book_accounts_every_row_exactly_once(
    plan: list[tuple[int, int, int]], abandon: int
) -> None:
    """accepted == buffered + in flight + delivered + rejected + undelivered at every step."""
    book, buf = Book(), RowBuffer(BatchLimits(max_rows=1000))

    def balanced() -> bool:
        return book.accepted == book.buffered + book.in_flight + book.settled

    shipped: list[tuple[ClosedBatch, int, int]] = []
    for size, bad, lost in plan:
        for i in range(size):
            buf.add((i,), 1, 0.0)
            book.accept()
        batch = buf.take("full")
        assert batch is not None
        book.ship(batch.ids)
        shipped.append((batch, min(bad, size), min(lost, size - min(bad, size))))
        assert balanced()
    for batch, bad, lost in shipped:
        assert not book.flushed(batch.ids.stop, buf.start)
        good = batch.ids.count - bad - lost
        book.settle(
            batch.ids,
            delivered=good,
            rejected=Counter({"bad": bad}) if bad else None,
            undelivered=Counter({"lost": lost}) if lost else None,
        )
        assert balanced()
    for i in range(abandon):
        buf.add((i,), 1, 0.0)
        book.accept()
    mark = buf.next_seq
    assert book.flushed(mark, buf.start) == (abandon == 0)
    book.abandon(buf.take("abort").ids.count if abandon else 0, "aborted")
    assert book.flushed(mark, buf.next_seq)
    assert balanced() and book.buffered == 0 and book.in_flight == 0
    assert book.delivered == sum(b.ids.count - bad - lost for b, bad, lost in shipped)
    assert book.rejected + book.undelivered == sum(bad + lost for _, bad, lost in shipped) + abandon


def test_book_refuses_an_outcome_that_does_not_cover_the_batch() -> None:
    """Settling with more or fewer rows than were shipped is a ValueError."""
    book, buf = Book(), RowBuffer(BatchLimits())
    for i in range(3):
        buf.add((i,), 1, 0.0)
        book.accept()
    batch = buf.take("flush")
    assert batch is not None
    book.ship(batch.ids)
    with pytest.raises(ValueError, match="outcome of 2 rows for 3"):
        book.settle(batch.ids, delivered=2)


def test_row_size_counts_text_by_length() -> None:
    """Text and bytes count their length; other values a fixed 8 bytes."""
    assert row_size(("abcd", b"xy", 1, None)) - row_size(()) == (4 + 4) + (2 + 4) + 8 + 8


def test_limits_refuse_nonsense_in_one_line() -> None:
    """A batch of zero rows or a negative linger is a ValueError naming the setting."""
    with pytest.raises(ValueError, match="batch_rows"):
        BatchLimits(max_rows=0)
    with pytest.raises(ValueError, match="linger_ms"):
        BatchLimits(linger_s=-0.001)


values = st.one_of(
    st.integers(), st.text(max_size=20), st.binary(max_size=20), st.none(), st.floats(),
    st.builds(bytearray, st.binary(max_size=5)),
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(width=st.integers(0, 5), data=st.data())
def test_row_sizes_by_column_match_row_size(width: int, data: st.DataObject) -> None:
    """The column-at-a-time sizes are ``row_size`` of each row, for any mix of values."""
    rows = data.draw(st.lists(st.tuples(*[values] * width), max_size=30))
    assert row_sizes(rows) == [row_size(r) for r in rows]
    if rows:
        assert column_sizes(Columns.of(rows, width)) == [row_size(r) for r in rows]


@settings(max_examples=300, deadline=None)
@given(width=st.integers(0, 5), data=st.data())
def test_counted_kinds_and_totals_match_the_sets_and_sums(width: int, data: st.DataObject) -> None:
    """Each column's kinds are the set of its types, and ``column_total`` the sum of the sizes."""
    mostly = data.draw(st.one_of(values, st.just(None), st.just(1), st.just("x"), st.just(True)))
    cell = st.one_of(st.just(mostly), values)  # columns of one type, one type and None, mixed
    rows = data.draw(st.lists(st.tuples(*[cell] * width), max_size=30))
    columns = Columns.of(rows, width)
    assert columns.kinds == tuple(frozenset(map(type, c)) for c in columns.values)
    assert all(kinds_of(list(c)) == frozenset(map(type, c)) for c in columns.values)
    assert column_total(columns) == sum(column_sizes(columns)) == sum(map(row_size, rows))
    assert column_total(dataclasses.replace(columns, texts=())) == column_total(columns)
    assert columns.texts == tuple(
        "".join(c) if k == frozenset((str,)) else None
        for c, k in zip(columns.values, columns.kinds, strict=True)
    )


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(st.lists(values, max_size=4).map(tuple), max_size=30))
def test_row_sizes_of_ragged_rows_match_row_size(rows: list[tuple[object, ...]]) -> None:
    """Rows of different widths (a null writer) are sized row by row, with the same numbers."""
    assert row_sizes(rows) == [row_size(r) for r in rows]


_OPEN_BATCH = {
    "max_rows": st.integers(1, 40),
    "max_bytes": st.integers(1, 3000),
    "already": st.lists(st.integers(1, 200), max_size=10),
}  # the limits of an open batch and the sizes of the rows it holds already


def _two_buffers(limits: BatchLimits, already: list[int]) -> tuple[RowBuffer, RowBuffer]:
    """Two open batches holding the same rows of sizes ``already`` (until one is full)."""
    one, two = RowBuffer(limits), RowBuffer(limits)
    for i, size in enumerate(already):
        if one.full:
            break
        one.add((-i,), size, 0.0)
        two.add((-i,), size, 0.0)
    return one, two


@settings(max_examples=300, deadline=None)
@given(**_OPEN_BATCH, sizes=st.lists(st.integers(1, 400), min_size=1, max_size=60))
def test_add_many_takes_what_add_row_by_row_would(
    max_rows: int, max_bytes: int, already: list[int], sizes: list[int]
) -> None:
    """``add_many`` leaves the buffer as ``add`` would, stopping where the batch turns full."""
    bulk, single = _two_buffers(BatchLimits(max_rows, max_bytes, 1.0), already)
    rows = [(i,) for i in range(len(sizes))]
    if bulk.full:
        with pytest.raises(ValueError, match="full"):
            bulk.add_many(rows, sizes, 1.0)
        return
    taken = bulk.add_many(rows, sizes, 1.0)
    expected = 0
    for row, size in zip(rows, sizes, strict=True):
        if single.full:
            break
        single.add(row, size, 1.0)
        expected += 1
    assert taken == expected >= 1
    assert (bulk.rows, bulk.bytes, bulk.next_seq, bulk.full, bulk.opened_at) == (
        single.rows, single.bytes, single.next_seq, single.full, single.opened_at,
    )  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(**_OPEN_BATCH, sizes=st.lists(st.integers(1, 400), max_size=60))
def test_add_all_takes_everything_as_add_many_would_or_nothing(
    max_rows: int, max_bytes: int, already: list[int], sizes: list[int]
) -> None:
    """``add_all`` leaves the buffer as ``add_many`` would when it takes, untouched otherwise."""
    whole, bulk = _two_buffers(BatchLimits(max_rows, max_bytes, 1.0), already)
    rows = [(i,) for i in range(len(sizes))]
    if whole.full:
        with pytest.raises(ValueError, match="full"):
            whole.add_all(rows, sum(sizes), 1.0)
        return
    before = (list(whole.rows), whole.bytes, whole.next_seq, whole.opened_at)
    if not whole.add_all(rows, sum(sizes), 1.0):
        assert (whole.rows, whole.bytes, whole.next_seq, whole.opened_at) == before
        assert bulk.add_many(rows, sizes, 1.0) < len(rows) or bulk.bytes >= max_bytes
        return
    assert bulk.add_many(rows, sizes, 1.0) == len(rows)
    assert (whole.rows, whole.bytes, whole.next_seq, whole.full, whole.opened_at) == (
        bulk.rows, bulk.bytes, bulk.next_seq, bulk.full, bulk.opened_at,
    )  # fmt: skip
