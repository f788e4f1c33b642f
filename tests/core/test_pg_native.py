"""Which batches asyncpg may encode as they are: only those it stores as the reference does."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from async_etl.core.batching import Columns, column_total, row_size
from async_etl.core.pg_native import (
    NATIVE,
    ColumnPlan,
    _plain_column,
    encode_as,
    naive_utc,
    native_table,
    wire_rows,
)
from async_etl.core.row_codecs import PG_TYPES, PgColumn

AT = datetime(2024, 1, 1, tzinfo=UTC)


def _col(typname: str, nullable: bool = True) -> list[PgColumn]:
    return [PgColumn("v", typname, nullable)]


def _checked(cols: list[PgColumn], rows: list[tuple[Any, ...]]) -> bool:
    """The per-column check alone: ``_plain_column`` on each column's values and types."""
    columns = Columns.of(rows, len(cols))
    return all(map(_plain_column, cols, columns.values, columns.kinds))


def _plain(cols: list[PgColumn], rows: list[tuple[Any, ...]]) -> bool:
    """``ColumnPlan.plain`` of ``rows`` (no ``str`` subclass), asserted to be ``_checked``'s."""
    answer = ColumnPlan.of(cols).plain(rows)
    assert answer == _checked(cols, rows), rows
    return answer


@pytest.mark.parametrize(
    ("typname", "values"),
    [
        ("int8", [1, -(2**63), 2**63 - 1, None]),
        ("int2", [0, 5]),
        ("float8", [1.5, float("inf"), float("nan"), -0.0]),
        ("float4", [2.5]),
        ("bool", [True, False, None]),
        ("text", ["", "äöü ✓", None]),
        ("varchar", ["abc"]),
        ("timestamptz", [AT, datetime(2031, 3, 4, tzinfo=timezone(timedelta(hours=-5)))]),
        ("timestamptz", [datetime(2024, 6, 1, 12, tzinfo=ZoneInfo("Europe/Berlin"))]),
        ("date", [date(2000, 1, 1), date(9999, 12, 30)]),
        ("uuid", [uuid.UUID(int=7)]),
        ("int8", []),
    ],
)
def test_values_of_the_exact_type_are_plain(typname: str, values: list[Any]) -> None:
    """Exactly typed values (and NULL where allowed) may go to asyncpg's encoders."""
    assert _plain(_col(typname), [(v,) for v in values])


@pytest.mark.parametrize(
    ("typname", "value", "why"),
    [
        ("int8", 1.5, "asyncpg truncates a float"),
        ("int8", True, "a bool is an int to asyncpg"),
        ("int4", Decimal(3), "asyncpg calls __int__"),
        ("float8", 2**53 + 1, "asyncpg rounds an int"),
        ("float8", Decimal("0.1"), "asyncpg rounds a Decimal"),
        ("float4", 1, "asyncpg converts an int"),
        ("text", "nul\x00inside", "the server refuses the whole COPY"),
        ("text", 5, "not a str"),
        ("timestamptz", datetime(2024, 1, 1), "naive: asyncpg assumes local time"),
        ("timestamptz", date(2024, 1, 1), "a date: asyncpg assumes local midnight"),
        ("timestamptz", datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), "-> infinity"),
        ("timestamptz", datetime(1, 1, 1, tzinfo=UTC), "asyncpg writes -infinity"),
        ("date", date.max, "asyncpg writes infinity"),
        ("date", date.min, "asyncpg writes -infinity"),
        ("date", AT, "a datetime is a date to asyncpg"),
        ("uuid", "12345678-1234-5678-1234-567812345678", "asyncpg's own parser"),
        ("bool", 1, "not a bool"),
    ],
)
def test_values_asyncpg_would_change_or_fail_the_batch_on_are_not_plain(
    typname: str, value: Any, why: str
) -> None:
    """One such value sends its whole batch to the reference encoders."""
    rows = [(v,) for v in ([AT] if typname == "timestamptz" else [])] + [(value,)]
    assert not _plain(_col(typname), rows), why


def test_mixed_naive_and_aware_datetimes_are_not_plain() -> None:
    """A naive datetime among aware ones is caught (comparing them raises)."""
    assert not _plain(_col("timestamptz"), [(AT,), (datetime(2024, 1, 1),)])


def test_null_in_a_not_null_column_is_left_to_the_reference() -> None:
    """The reference refuses that row with its reason, so the batch is not plain."""
    assert _plain(_col("int8", nullable=False), [(1,)])
    assert not _plain(_col("int8", nullable=False), [(1,), (None,)])


def test_several_columns_are_checked_each_by_its_type() -> None:
    """A row is plain only when every column is."""
    cols = [PgColumn("a", "int8", False), PgColumn("b", "text"), PgColumn("c", "timestamptz")]
    assert _plain(cols, [(1, "x", AT), (2, None, None)])
    assert not _plain(cols, [(1, "x", AT), (2, 3, AT)])


def test_native_types_are_writer_types_and_tables_are_all_or_nothing() -> None:
    """Every native type is one the writer encodes; one other column keeps the table off it."""
    assert set(PG_TYPES) >= NATIVE
    assert native_table([PgColumn("a", "int8"), PgColumn("b", "text")])
    assert not native_table([PgColumn("a", "int8"), PgColumn("b", "numeric")])
    assert not native_table([])


@settings(max_examples=300, deadline=None)
@given(
    typname=st.sampled_from(["text", "varchar", "bpchar", "int8"]),
    nullable=st.booleans(),
    values=st.lists(st.one_of(st.text(max_size=5), st.just("a\x00b"), st.none(), st.integers())),
)
def test_a_text_column_joined_once_answers_as_checked_value_by_value(
    typname: str, nullable: bool, values: list[Any]
) -> None:
    """``look``'s one join of a text column answers as the per-column check of its values."""
    cols = [PgColumn("v", typname, nullable), PgColumn("w", "text")]
    rows = [(v, "x") for v in values]
    plain, size = ColumnPlan.of(cols).look(rows)
    assert plain == _checked(cols, rows)
    assert size == column_total(Columns.of(rows, 2))


EPOCH_UTC, EPOCH_NAIVE = datetime(2000, 1, 1, tzinfo=UTC), datetime(2000, 1, 1)
ZONES = [
    UTC,
    timezone(timedelta(hours=-5)),
    timezone(timedelta(hours=14)),
    ZoneInfo("Europe/Berlin"),
]


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(
        st.one_of(
            st.none(),
            st.datetimes(
                min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                timezones=st.sampled_from(ZONES), allow_imaginary=True,
            ),
        )
    )
)  # fmt: skip
def test_naive_utc_keeps_the_microseconds_the_reference_sends(values: list[Any]) -> None:
    """Each aware value becomes the naive datetime whose offset from 2000-01-01 is its own."""
    got = naive_utc(values)
    assert len(got) == len(values)
    for v, n in zip(values, got, strict=True):
        if v is None:
            assert n is None
        else:
            assert n.tzinfo is None and n - EPOCH_NAIVE == v - EPOCH_UTC


def test_naive_utc_refuses_naive_datetimes_and_other_values() -> None:
    """A naive datetime, a date or a number raises TypeError; an instant past year 9999 raises."""
    for bad in (datetime(2024, 1, 1), date(2024, 1, 1), 5):
        with pytest.raises(TypeError):
            naive_utc([AT, bad])
        with pytest.raises(TypeError):
            naive_utc([None, bad])
    late = datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5)))
    with pytest.raises(OverflowError):
        naive_utc([late])


def test_fold_picks_the_instant_in_both_directions() -> None:
    """The repeated hour of a DST change: fold 0 and fold 1 stay an hour apart."""
    first = datetime(2024, 10, 27, 2, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    second = first.replace(fold=1)
    assert naive_utc([first, second]) == [
        datetime(2024, 10, 27, 0, 30),
        datetime(2024, 10, 27, 1, 30),
    ]


def test_only_timestamptz_columns_are_sent_through_another_encoder() -> None:
    """``encode_as`` names the timestamp encoder for timestamptz only; ``wire_rows`` follows it."""
    cols = [PgColumn("a", "int8"), PgColumn("b", "timestamptz"), PgColumn("c", "text")]
    cast = encode_as(cols)
    assert cast == (None, "timestamp", None)
    assert encode_as([PgColumn("a", "int8"), PgColumn("c", "date")]) == ()
    rows = [(1, AT, "x"), (2, None, None)]
    assert list(wire_rows(rows, cast)) == [(1, datetime(2024, 1, 1), "x"), (2, None, None)]
    assert wire_rows(rows, ()) is rows


class _Name(str):
    """A ``str`` subclass, as a host's own string type."""


class _Colour(enum.StrEnum):
    RED = "red"
    NUL = "n\x00l"


_TEXTS = [st.text(max_size=4), st.text(max_size=4).map(_Name), st.sampled_from(_Colour)]
_GOOD: dict[str, list[st.SearchStrategy[Any]]] = {
    "bool": [st.booleans()],
    "int2": [st.integers(min_value=-(2**15), max_value=2**15 - 1)],
    "int4": [st.integers(min_value=-(2**31), max_value=2**31 - 1)],
    "int8": [st.integers(min_value=-(2**63), max_value=2**63 - 1)],
    "float4": [st.floats(width=32)],
    "float8": [st.floats()],
    **{name: [*_TEXTS, st.one_of(_TEXTS)] for name in ("text", "varchar", "bpchar", "jsonb")},
    "timestamptz": [st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=3))]))],
    "date": [st.dates()],
    "uuid": [st.uuids()],
    "numeric": [st.decimals(allow_nan=False, places=2)],
}
"""Per column type, what a host usually sends there (a column of one such kind is plain)."""
_NEAR: dict[str, list[Any]] = {
    **{name: [True, 1.0, 2**63, -(2**63) - 1, Decimal(1)] for name in ("int2", "int4", "int8")},
    "bool": [1, 0],
    "float8": [1, 2**53 + 1, Decimal("0.1"), True],
    "float4": [1e-45, 5e-324, 1, True],
    **{name: ["\x00", "a\x00b", _Name("\x00"), _Colour.NUL, 5, b"x"]
       for name in ("text", "varchar", "bpchar", "jsonb")},
    "timestamptz": [AT.replace(tzinfo=None), date(2024, 1, 1), datetime(1, 1, 1, tzinfo=UTC),
                    datetime.max.replace(tzinfo=UTC)],
    "date": [date.min, date.max, AT],
    "uuid": [str(uuid.UUID(int=1)), uuid.UUID(int=1).bytes],
    "numeric": [1.5, True],
}  # fmt: skip
"""Per column type, values its full check refuses though a probe might not (and NULL)."""
_ANY = st.one_of(
    st.booleans(), st.integers(min_value=-(2**64), max_value=2**64), st.floats(),
    st.binary(max_size=3), st.datetimes(), *[s for kinds in _GOOD.values() for s in kinds],
)  # fmt: skip


def _column(data: st.DataObject, col: PgColumn, count: int, misfits: int = 0) -> list[Any]:
    """``count`` values a host usually sends to ``col`` (NULLs if it takes them), and misfits."""
    good = data.draw(st.sampled_from(_GOOD[col.typname]))
    if col.nullable and data.draw(st.booleans()):
        good = st.one_of(good, st.none())
    values = data.draw(st.lists(good, min_size=count, max_size=count))
    misfit = st.one_of(st.sampled_from([None, *_NEAR[col.typname]]), _ANY)
    for _ in range(misfits if count else 0):
        values[data.draw(st.integers(0, count - 1))] = data.draw(misfit)
    return values


def _as_str(row: tuple[Any, ...], cols: list[PgColumn]) -> tuple[Any, ...]:
    """``row`` with each ``str`` (subclass) value of a text column as a plain ``str``."""
    text = ("text", "varchar", "bpchar")
    return tuple(
        str.__str__(v) if isinstance(v, str) and c.typname in text else v
        for v, c in zip(row, cols, strict=True)
    )


_COLUMN = st.builds(
    PgColumn, st.just("c"), st.sampled_from(sorted(_GOOD)), st.booleans(),
    st.sampled_from([-1, -1, -1, 3]),
)  # fmt: skip


@pytest.mark.parametrize("typname", sorted(_GOOD))
@settings(max_examples=150, deadline=None)
@given(data=st.data(), count=st.integers(min_value=0, max_value=25))
def test_the_column_plan_answers_as_the_full_check_and_sizes_as_row_size(
    typname: str, data: st.DataObject, count: int
) -> None:
    """``look`` is plain where the full check is, and beyond it for ``str`` subclasses alone."""
    # the column of ``typname`` (with misfits or not) among others of usual values
    tested = PgColumn("t", typname, data.draw(st.booleans()), data.draw(st.sampled_from([-1, 3])))
    cols = data.draw(st.lists(_COLUMN, max_size=2))
    at = data.draw(st.integers(0, len(cols)))
    cols.insert(at, tested)
    misfits = data.draw(st.sampled_from([0, 1, 1, 2]))
    columns = [_column(data, c, count, misfits if i == at else 0) for i, c in enumerate(cols)]
    rows = list(zip(*columns, strict=True))
    width = len(cols)
    plan = ColumnPlan.of(cols)
    plain_now, size = plan.look(rows)
    full = native_table(cols) and _checked(cols, rows)
    assert size == column_total(Columns.of(rows, width)) == sum(map(row_size, rows))
    assert plan.look(rows, check=False) == (False, size)
    assert plan.plain(rows) == plain_now
    if full:
        assert plain_now  # never stricter
    if plain_now and not full:  # looser only where the reference stores the same characters
        exact = [_as_str(r, cols) for r in rows]
        assert _checked(cols, exact)
        for row, same in zip(rows, exact, strict=True):
            for col, v, w in zip(cols, row, same, strict=True):
                if v is not w:  # a str subclass: the reference sends its characters
                    assert PG_TYPES[col.typname](v) == PG_TYPES[col.typname](w)


def test_the_plan_takes_str_subclasses_and_refuses_what_the_full_check_refuses() -> None:
    """An enum's values in a text column are plain; a bool, a NUL, a NULL where none: not."""
    cols = [PgColumn("a", "int8", False), PgColumn("b", "text"), PgColumn("c", "float8")]
    plan = ColumnPlan.of(cols)
    assert plan.plain([(1, _Colour.RED, 0.5), (2, _Name("x"), 1.5)])
    assert not _checked(cols, [(1, _Colour.RED, 0.5)])
    for bad in [(True, "x", 0.5), (1, _Colour.NUL, 0.5), (None, "x", 0.5), (1, "x", 1),
                (1, b"x", 0.5), (1, "x", None)]:  # fmt: skip
        rows = [(1, "x", 0.5), bad]
        assert plan.plain(rows) == _checked(cols, rows) == (bad == (1, "x", None)), bad
    assert plan.look([], check=True) == (True, 0)
    assert ColumnPlan.of([PgColumn("n", "numeric")]).look([(1,)]) == (False, 16)
