"""One change rule for every column type: the model's ``same`` and the SQL of each dialect."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from async_etl.core import scd_sql_oracle as ora
from async_etl.core import scd_sql_pg as pg
from async_etl.core.chunks import Chunk
from async_etl.core.compare import (
    base_type,
    chunk_key_problem,
    is_exact,
    key_problem,
    oracle_lob,
    pg_compared,
    same,
)
from async_etl.core.scd import apply_plan, diff
from async_etl.core.scd_sql_common import check_type
from async_etl.core.specs import ScdColumns, ScdSpec
from async_etl.jobs.coltypes import oracle_type

NAN = float("nan")
TYPES = {"id": "integer", "j": "json", "p": "point", "n": "numeric(12,2)", "pts": "point[]"}


def _cols(kind: int) -> ScdColumns:
    spec = ScdSpec(type=kind, business_key=("id",))  # type: ignore[arg-type]
    return spec.resolve(list(TYPES), list(TYPES.values()))


def test_nan_and_nested_values_are_the_same_as_themselves() -> None:
    """NaN = NaN, also inside lists, tuples, dicts and as Decimal NaN."""
    assert same(NAN, float("nan"))
    assert same([NAN, {"a": [NAN]}], [float("nan"), {"a": [float("nan")]}])
    assert same((1.5, NAN), [1.5, float("nan")])
    assert same(Decimal("NaN"), Decimal("NaN"))
    assert not same(NAN, 1.0)
    assert not same(NAN, None)
    assert not same([NAN], [NAN, NAN])


def test_json_booleans_differ_from_numbers() -> None:
    """{"a": true} is not {"a": 1}, and nested changes are changes."""
    assert not same({"a": True}, {"a": 1})
    assert not same([0], [False])
    assert not same({"a": [1, 2]}, {"a": [1, 3]})
    assert not same({"a": 1}, {"a": 1, "b": None})
    assert same(True, True) and same(None, None) and not same(None, 0)


@given(st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(),
                    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner)))  # fmt: skip
def test_every_value_is_the_same_as_a_copy_of_itself(value: object) -> None:
    """same(v, copy of v) for any nested JSON-like value, NaN included."""
    copied = _copy(value)
    assert same(value, copied)


def _copy(value: object) -> object:
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return float("nan")
    return value


@pytest.mark.parametrize("kind", [2, 1])
def test_model_unchanged_nan_and_nested_rows_plan_nothing(kind: int) -> None:
    """The pure model: an unchanged NaN / nested row plans nothing; a nested change plans one."""
    cols = ScdSpec(type=kind, business_key=("id",)).resolve(["id", "f", "doc"])  # type: ignore[arg-type]
    rows = [{"id": 1, "f": NAN, "doc": {"a": [NAN, 1]}}, {"id": 2, "f": 1.0, "doc": [True]}]
    target = apply_plan([], diff(cols, [], rows, 1))
    again = [{"id": 1, "f": float("nan"), "doc": {"a": [float("nan"), 1]}},
             {"id": 2, "f": 1.0, "doc": [True]}]  # fmt: skip
    assert diff(cols, target, again, 2).actions == ()
    again[1]["doc"] = [1]
    counts = diff(cols, target, again, 2).counts()
    expected = {"inserted": 1, "expired": 1} if kind == 2 else {"updated": 1}
    assert {k: v for k, v in counts.items() if v} == expected


def test_type_names_and_exactness() -> None:
    """format_type names with modifiers, arrays and user types map to the right rule."""
    assert base_type("timestamp(3) with time zone") == ("timestamp with time zone", False)
    assert base_type("numeric(12,2)[]") == ("numeric", True)
    assert all(is_exact(t) for t in ("bigint", "numeric(12,2)", "text[]", "", "uuid"))
    inexact = ("json", "xml", "point", "box", "path", "interval", "json[]", "src.pair", "citext",
               "jsonb", "real", "double precision[]")  # fmt: skip
    assert not any(is_exact(t) for t in inexact)
    assert all(oracle_lob(t) for t in ("json", "jsonb", "xml", "integer[]"))
    assert not any(oracle_lob(t) for t in ("text", "point", "bigint"))
    assert [oracle_type(t) for t in ("json", "xml", "point[]")] == ["CLOB"] * 3
    assert check_type("src.pair") == "src.pair" and check_type('"char"') == '"char"'
    with pytest.raises(ValueError):
        check_type("int); DROP TABLE x; --")


@pytest.mark.parametrize("kind", [2, 1])
def test_pg_merge_compares_types_without_equality_as_text(kind: int) -> None:
    """PostgreSQL: json / point / point[] compared as ::text, numeric by =; floats print exact."""
    sql = [
        s.text
        for s in pg.merge_statements("dw.t", "stg", _cols(kind), ("id",), Chunk(0, None, None))
    ]
    assert sql[1] == "SET LOCAL extra_float_digits = 3"
    compared = [s for s in sql if "IS DISTINCT FROM" in s]
    assert compared
    for text in compared:
        for alias in ("t", "EXCLUDED" if kind == 1 else "s"):
            assert (
                f'ROW({alias}."j"::text, {alias}."p"::text, {alias}."n", {alias}."pts"::text)'
                in text
            )


@pytest.mark.parametrize("kind", [2, 1])
def test_pg_merge_compares_arrays_through_the_targets_type(kind: int) -> None:
    """An existing target's posint[] (read as integer[]) and numeric[] are cast on both sides."""
    spec = ScdSpec(type=kind, business_key=("id",))  # type: ignore[arg-type]
    cols = spec.resolve(["id", "p", "r", "w"], ["integer", "integer", "integer[]", "integer[]"])
    cols = cols.with_target([("id", "integer"), ("p", "integer"), ("r", "integer[]"),
                             ("w", "numeric(12,2)[]")])  # fmt: skip
    sql = [s.text for s in pg.merge_statements("dw.t", "stg", cols, ("id",), Chunk(0, None, None))]
    compared = [s for s in sql if "IS DISTINCT FROM" in s]
    assert compared
    for text in compared:
        for alias in ("t", "EXCLUDED" if kind == 1 else "s"):
            assert f'ROW({alias}."p", {alias}."r"::integer[], {alias}."w"::numeric[])' in text
    assert cols.with_target(None) == cols and cols.target_type_of("nope") == ""


def test_pg_merge_compares_bounded_arrays_without_a_length_of_one() -> None:
    """character(3)[] and bit(4)[] are cast to bpchar[] / bit varying[], never to length 1."""
    c = ' COLLATE "C"'  # text of any collation compared byte for byte (the test below)
    assert pg_compared('t."c"', "character(3)[]", "character(3)[]") == 't."c"::bpchar[]' + c
    assert pg_compared('s."c"', "text[]", "character(5)[]") == 's."c"::bpchar[]' + c
    assert pg_compared('t."b"', "bit(4)[]", "bit(4)[]") == 't."b"::bit varying[]'
    assert pg_compared('t."v"', "character varying(4)[]", "text[]") == 't."v"::text[]' + c


def test_pg_compares_values_equal_by_their_own_equality_exactly() -> None:
    """-0 vs 0 (float), 1.0 vs 1.00 (numeric of free scale), 1 vs 1.0 in jsonb: all differ."""
    zero = 't."f", CASE WHEN t."f" = 0 THEN t."f"::text END'
    assert pg_compared('t."f"', "double precision", "") == zero
    assert pg_compared('t."f"', "real", "double precision") == zero
    assert pg_compared('t."a"', "real[]", "double precision[]") == 't."a"::double precision[]::text'
    assert pg_compared('t."a"', "double precision[]", "") == 't."a"::text'
    assert pg_compared('t."n"', "numeric", "") == 't."n", scale(t."n")'
    assert pg_compared('t."n"', "numeric", "numeric") == 't."n", scale(t."n")'
    assert pg_compared('t."n"', "numeric[]", "") == 't."n"::numeric[]::text'
    assert pg_compared('t."n"', "numeric", "numeric(12,2)") == 't."n"'
    assert pg_compared('t."n"', "numeric(12,2)", "") == 't."n"'
    assert pg_compared('t."j"', "jsonb", "jsonb") == 't."j"::text'
    assert not same(-0.0, 0.0) and same(-0.0, -0.0) and same(0.0, 0)
    assert not same([0.0], [-0.0])


def test_pg_compares_text_byte_for_byte_whatever_its_collation() -> None:
    """Text under a nondeterministic collation, citext, unbounded bpchar's blanks: all differ."""
    c = ' COLLATE "C"'
    assert pg_compared('t."v"', "text", "") == 't."v"' + c
    assert pg_compared('t."v"', "character varying(9)", "text") == 't."v"' + c
    assert pg_compared('t."v"', "character(3)", "character(3)") == 't."v"' + c
    assert pg_compared('t."v"', "name", "name") == 't."v"' + c
    assert pg_compared('t."v"', "text[]", "text[]") == 't."v"::text[]' + c
    assert pg_compared('t."v"', "citext", "") == 't."v"::text' + c
    assert pg_compared('t."v"', "src.pair", "") == 't."v"::text' + c
    assert pg_compared('t."v"', "bpchar", "") == 't."v"' + c + ', octet_length(t."v")'
    assert pg_compared('t."v"', "bpchar", "bpchar") == 't."v"' + c + ', octet_length(t."v")'
    assert pg_compared('t."v"', "bpchar", "character(5)") == 't."v"::text' + c  # char(5) pads all
    assert pg_compared('t."v"', "bpchar[]", "") == 't."v"::text' + c
    assert pg_compared('t."v"', "interval", "") == 't."v"::text'  # '1 day' = '24 hours' by =
    assert pg_compared('t."v"', "json", "") == 't."v"::text'
    assert pg_compared('t."v"', "bigint", "") == 't."v"' and pg_compared('t."v"', "", "") == 't."v"'


def test_pg_merge_without_inexact_types_is_unchanged() -> None:
    """Only exact types: no ::text casts and no SET LOCAL."""
    cols = ScdSpec(business_key=("id",)).resolve(["id", "v"], ["integer", "text"])
    sql = [s.text for s in pg.merge_statements("dw.t", "stg", cols, ("id",), Chunk(0, None, None))]
    assert not any("::text" in s or "extra_float_digits" in s for s in sql)


@pytest.mark.parametrize("kind", [2, 1])
def test_oracle_merge_compares_clobs_with_dbms_lob(kind: int) -> None:
    """Oracle: CLOB columns (json, arrays) with DBMS_LOB.COMPARE, the rest with DECODE."""
    sql = " ".join(s.text for s in ora.merge_statements("dw.t", "stg", _cols(kind), ("id",),
                                                         Chunk(0, None, None)))  # fmt: skip
    for col in ("J", "PTS"):
        assert f'DBMS_LOB.COMPARE(t."{col}", s."{col}") = 0' in sql
        assert f'DECODE(t."{col}"' not in sql
        assert f'WHEN t."{col}" IS NULL AND s."{col}" IS NULL THEN 0' in sql
    for col in ("P", "N"):
        assert f'DECODE(t."{col}", s."{col}", 0, 1) = 1' in sql
        assert f'DBMS_LOB.COMPARE(t."{col}"' not in sql


def test_keys_need_equality_and_order() -> None:
    """json, xml, geometric types and their arrays cannot be keys; others (even citext) can."""
    for bad in ("json", "xml", "point", "box", "polygon", "json[]", "circle"):
        assert key_problem(bad) is not None and bad in (key_problem(bad) or "")
    assert all(key_problem(t) is None for t in ("bigint", "text", "jsonb", "uuid", "src.pair"))


def test_chunk_keys_need_storable_bounds():
    """Ranges, bit strings and text-search types are no chunk keys; interval, inet, arrays are."""
    for bad in ("int4range", "tstzrange", "datemultirange", "bit(8)", "bit varying(4)", "json"):
        assert chunk_key_problem(bad) is not None
    for good in ("interval", "inet", "cidr", "integer[]", "text", "numeric(12,2)"):
        assert chunk_key_problem(good) is None
