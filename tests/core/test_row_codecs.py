"""Encoding a host's rows: shapes, PostgreSQL binary values, CrateDB bodies and refusals."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from datetime import UTC
from decimal import Decimal, localcontext

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from async_etl.core.exact import crate_column_type, crate_row_check, json_refusal
from async_etl.core.row_codecs import (
    PG_TYPES,
    PgColumn,
    RowShape,
    encode_crate_rows,
    encode_pg_rows,
)


def _decode_numeric(data: bytes) -> Decimal:
    """PostgreSQL's numeric binary form back to a Decimal (the reference reading)."""
    ndigits, weight, sign, scale = struct.unpack(">hhHh", data[:8])
    if sign == 0xC000:
        return Decimal("NaN")
    groups = struct.unpack(f">{ndigits}H", data[8:])
    with localcontext() as ctx:
        ctx.prec = 2000  # exact: no rounding while reading back
        digits = int("".join(f"{g:04d}" for g in groups) or "0")
        value = Decimal(digits).scaleb(4 * (weight - ndigits + 1)) if groups else Decimal(0)
        value = value.quantize(Decimal(1).scaleb(-scale))
        return -value if sign == 0x4000 else value


@given(
    st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
        lambda d: d.adjusted() < 200 and d.as_tuple().exponent > -200
    )
)
def test_numeric_encoding_keeps_every_decimal_exactly(value: Decimal) -> None:
    """Decoding the numeric binary form gives back the same number and scale."""
    got = _decode_numeric(PG_TYPES["numeric"](value))
    assert got == value
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    got_exponent = got.as_tuple().exponent
    assert isinstance(got_exponent, int)
    assert -got_exponent == max(0, -exponent)  # the scale survives (1.50 stays 1.50)


@dataclass
class Point:
    x: int
    y: int


def test_shape_fits_tuples_dicts_and_dataclasses_or_says_why_not() -> None:
    """Rows are put in column order; a wrong width, unknown key or type is a reason."""
    shape = RowShape(("x", "y"))
    assert shape.normalize((1, 2)) == (1, 2)
    assert shape.normalize({"y": 2}) == (None, 2)
    assert shape.normalize(Point(3, 4)) == (3, 4)
    assert shape.normalize((1,)) == "row has 1 values for 2 columns"
    assert shape.normalize({"z": 1}) == "unknown column 'z'"
    assert shape.normalize(7) == "a row must be a tuple, dict or dataclass, got int"


def test_pg_rows_refuse_only_the_rows_that_do_not_fit() -> None:
    """Bad rows are left out of the payload with a reason naming the column; the rest stay."""
    cols = [PgColumn("id", "int4", nullable=False), PgColumn("v", "float8")]
    good = encode_pg_rows(cols, [(1, 1.5)])
    mixed = encode_pg_rows(cols, [(1, 1.5), (None, 1.0), (2**31, 0.0), (3, "x"), (4, 2**53 + 1)])
    assert mixed.kept == (0,)
    assert mixed.payload == good.payload
    assert [why for _, why in mixed.refused] == [
        "column 'id' (int4): NULL in a NOT NULL column",
        f"column 'id' (int4): {2**31} is out of range",
        "column 'v' (float8): expected a number, got str",
        f"column 'v' (float8): {2**53 + 1} has no exact float value",
    ]


def test_a_signalling_nan_is_refused_for_numeric_where_nan_goes_in() -> None:
    """Decimal('sNaN') (and '-sNaN') into numeric or numeric(5,2): refused, NaN kept."""
    for typmod in (-1, (5 << 16 | 2) + 4):
        cols = [PgColumn("id", "int4", nullable=False), PgColumn("v", "numeric", typmod=typmod)]
        rows = [(1, Decimal("NaN")), (2, Decimal("sNaN")), (3, Decimal("-sNaN123"))]
        got = encode_pg_rows(cols, rows)
        assert got.kept == (0,), got  # before: (0, 1, 2), each stored as NaN
        assert got.payload == encode_pg_rows(cols, rows[:1]).payload
        assert [why for _, why in got.refused] == [
            f"column 'v' (numeric{'' if typmod < 0 else '(5,2)'}): {v} is a signalling NaN, "
            "not NaN; numeric has no such value"
            for v in ("sNaN", "-sNaN123")
        ]


def test_crate_body_carries_rows_and_refuses_what_json_would_change() -> None:
    """NaN / infinity and values orjson cannot write refuse their row; others go in the body."""
    stmt = "INSERT INTO t (a, b) VALUES (?, ?)"
    enc = encode_crate_rows(stmt, [(1, 2.5), (2, math.nan), (3, b"raw"), (4, None)])
    assert enc.kept == (0, 3)
    assert orjson.loads(enc.payload) == {"stmt": stmt, "bulk_args": [[1, 2.5], [4, None]]}
    assert [pos for pos, _ in enc.refused] == [1, 2]
    nan = "column #2: nan cannot travel in CrateDB's JSON (it would arrive as NULL)"
    assert enc.refused[0][1] == nan
    assert "not JSON serializable: bytes" in enc.refused[1][1]


def test_fast_and_reference_encoders_agree_on_every_row() -> None:
    """The fast path writes the reference bytes, and leaves unusual values to the reference."""
    from datetime import UTC, datetime

    from async_etl.core.row_codecs import _reference_row, pg_row_encoder

    cols = [
        PgColumn("a", "int8", nullable=False), PgColumn("b", "text"), PgColumn("c", "float8"),
        PgColumn("d", "timestamptz"), PgColumn("e", "bool"), PgColumn("f", "numeric"),
        PgColumn("g", "float4"),
    ]  # fmt: skip
    rows = [
        (1, "x", 1.5, datetime(2024, 1, 1, tzinfo=UTC), True, Decimal("1.50"), 2.5),
        (2, None, None, None, None, None, None),
        (3, "", 3, datetime(1900, 1, 1, tzinfo=UTC), False, 7, -1.0),  # int for float8
    ]
    fast = pg_row_encoder(cols)
    assert encode_pg_rows(cols, rows).payload == encode_pg_rows(cols, rows, fast).payload
    assert fast(rows[0]) == _reference_row(cols, rows[0])
    bad = [(True, "x", 1.0, None, None, None, None), (4, "x", 1.0, None, None, None, 1e300)]
    refused = encode_pg_rows(cols, bad, fast).refused
    assert refused == (
        (0, "column 'a' (int8): expected an integer, got bool"),
        (1, "column 'g' (float4): 1e+300 is out of range"),
    )


shape_rows = st.lists(
    st.one_of(
        st.tuples(st.integers(), st.text(max_size=3)),
        st.lists(st.integers(), min_size=1, max_size=3),
        st.dictionaries(st.sampled_from(["x", "y", "z"]), st.integers(), max_size=3),
        st.integers(),
    ),
    min_size=1,
    max_size=20,
)


@given(rows=shape_rows)
def test_normalize_many_agrees_with_normalize_or_declines(rows: list[object]) -> None:
    """The bulk shape is the row-by-row shape, and declines whenever some row does not fit."""
    shape = RowShape(("x", "y"))
    one_by_one = [shape.normalize(r) for r in rows]
    bulk = shape.normalize_many(rows)
    if any(isinstance(s, str) for s in one_by_one):
        assert bulk is None
    elif bulk is not None:
        assert bulk == one_by_one


def test_normalize_many_takes_uniform_tuples_lists_and_dicts() -> None:
    """Lists of same-width tuples, lists, or dicts with exactly the columns are shaped at once."""
    shape = RowShape(("x", "y"))
    assert shape.normalize_many([(1, 2), (3, 4)]) == [(1, 2), (3, 4)]
    assert shape.normalize_many([[1, 2], [3, 4]]) == [(1, 2), (3, 4)]
    assert shape.normalize_many([{"y": 2, "x": 1}, {"x": 3, "y": 4}]) == [(1, 2), (3, 4)]
    assert RowShape(("x",)).normalize_many([{"x": 1}]) == [(1,)]
    assert shape.normalize_many([{"x": 1}, {"x": 3, "y": 4}]) is None  # row by row: y is NULL
    assert shape.normalize_many([{"x": 1, "q": 2}]) is None
    assert RowShape(()).normalize_many([(1,), (1, 2)]) == [(1,), (1, 2)]  # null: any width


def test_crate_body_refuses_non_finite_floats_among_other_kinds() -> None:
    """NaN / infinity is found in a float column and in a column that mixes kinds."""
    stmt = "INSERT INTO t (a, b) VALUES (?, ?)"
    enc = encode_crate_rows(stmt, [(1, 2.5), (2, None), (3, math.inf), (4, 1)])
    assert [pos for pos, _ in enc.refused] == [2]
    enc = encode_crate_rows(stmt, [(1.0, 2.5), (-math.inf, 1.0)])
    assert [pos for pos, _ in enc.refused] == [1]
    assert encode_crate_rows(stmt, [(1, 2.5), (2, 3.5)]).refused == ()


def test_crate_rows_with_a_lone_surrogate_are_refused_naming_the_column() -> None:
    """A str with a lone surrogate (no UTF-8 form) is refused as 'column t: ...', the rest kept."""
    stmt = "INSERT INTO t (id, t, u) VALUES (?, ?, ?)"
    rows = [(1, "ok", "x"), (2, "a\ud800b", "x"), (3, "ok", ["\udfff"])]
    enc = encode_crate_rows(stmt, rows, ("id", "t", "u"), ("bigint", "text", "text[]"))
    assert enc.kept == (0,)
    assert orjson.loads(enc.payload)["bulk_args"] == [[1, "ok", "x"]]
    assert [(pos, why.split(":")[0]) for pos, why in enc.refused] == [
        (1, "column t"),
        (2, "column u"),
    ]
    assert all("surrogates not allowed" in why for _, why in enc.refused)


def test_json_refusal_finds_non_finite_floats_at_any_depth() -> None:
    """NaN / infinity anywhere in a JSON value is refused; finite values and text pass."""
    assert json_refusal({"a": [1, {"b": math.nan}]}) == "nan has no JSON form (it would be null)"
    assert json_refusal((1, -math.inf)) == "-inf has no JSON form (it would be null)"
    assert json_refusal({"a": [1.5, None, "NaN", -0.0]}) is None


@pytest.mark.parametrize(
    ("crate", "pg"),
    [("double", "double precision"), ("real_array", "real[]"), ("array(double)",
     "double precision[]"), ("text", "text"), ("timestamp with time zone",
     "timestamp with time zone"), ("bigint", "bigint")],
)  # fmt: skip
def test_crate_column_types_map_to_postgres_names(crate: str, pg: str) -> None:
    """information_schema's CrateDB type names become the names crate_refusal decides by."""
    assert crate_column_type(crate) == pg


CRATE_VALUES = st.one_of(
    st.none(), st.booleans(), st.text(max_size=3), st.integers(), st.floats(), st.dates(),
    st.datetimes(timezones=st.sampled_from([None, UTC])),
    st.dictionaries(st.text(max_size=2), st.floats(), max_size=2),
)  # fmt: skip
CRATE_TYPES = [
    "double precision", "real", "bigint", "text", "timestamp with time zone",
    "timestamp without time zone", "",
]  # fmt: skip


@given(
    rows=st.lists(st.tuples(CRATE_VALUES, CRATE_VALUES), min_size=1, max_size=12),
    types=st.tuples(st.sampled_from(CRATE_TYPES), st.sampled_from(CRATE_TYPES)),
)
def test_crate_column_check_agrees_with_the_row_check(
    rows: list[tuple[object, object]], types: tuple[str, str]
) -> None:
    """The column-at-a-time check refuses a batch whenever core.exact refuses one of its rows."""
    enc = encode_crate_rows("INSERT INTO t (a, b) VALUES (?, ?)", rows, ("a", "b"), types)
    check = crate_row_check(("a", "b"), types, zones=True)
    assert dict(enc.refused) == {
        pos: why for pos, row in enumerate(rows) if (why := check(row)) is not None
    }
