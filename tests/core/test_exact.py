"""Every value reaches CrateDB (JSON) and Oracle (binds) exactly, or is refused with a reason."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Context, Decimal
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from async_etl.core import scd_sql_oracle as ora
from async_etl.core.exact import (
    crate_refusal,
    crate_row_check,
    locale_text_problem,
    oracle_number_as_decimal,
    oracle_refusal,
    row_refusal,
)
from async_etl.core.specs import ScdSpec
from async_etl.jobs.coltypes import crate_value, epoch_ms, from_epoch_ms
from async_etl.jobs.oracle_driver import oracle_bind

INTS = st.one_of(
    st.sampled_from([0, -1, 2**31 - 1, -(2**31), 2**53 + 1, 2**63 - 1, -(2**63), 2**63, -(2**64)]),
    st.integers(),
)
FLOATS = st.one_of(
    st.sampled_from([0.0, -0.0, math.nan, math.inf, -math.inf, 5e-324, 1.7976931348623157e308]),
    st.floats(allow_nan=True, allow_infinity=True),
)
DECIMALS = st.one_of(
    st.sampled_from(
        [Decimal("0.1"), Decimal("19.99"), Decimal("NaN"), Decimal("Infinity"), Decimal("-0"),
         Decimal("12345678901234567890.123456789"), Decimal("1E+400"), Decimal("1E-131"),
         Decimal("9" * 38), Decimal("9" * 39), Decimal("-0.000000000000000001")]
    ),
    st.decimals(allow_nan=False, allow_infinity=False, places=None),
)  # fmt: skip
ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=11))]
)
AWARE = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=ZONES)
NAIVE = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31))
DATES = st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31))
TEXT = st.one_of(
    st.sampled_from(["", " ", "é", "😀" * 3, "x" * 5000, "\U0010ffff", "a\u0301"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")),
)
BYTES = st.binary(max_size=64)

CASES: list[tuple[str, st.SearchStrategy[Any]]] = [
    ("bigint", INTS),
    ("double precision", FLOATS),
    ("real", st.floats(width=32, allow_nan=True, allow_infinity=True)),
    ("numeric", DECIMALS),
    ("numeric(12,2)", DECIMALS),
    ("timestamp with time zone", AWARE),
    ("timestamp without time zone", NAIVE),
    ("date", DATES),
    ("text", TEXT),
    ("character varying(20)", TEXT),
    ("bytea", BYTES),
    ("boolean", st.booleans()),
    ("bigint[]", st.lists(INTS, max_size=5)),
    ("double precision[]", st.lists(FLOATS, max_size=5)),
    ("timestamp with time zone[]", st.lists(AWARE, max_size=3)),
]
VALUE = st.sampled_from(CASES).flatmap(lambda c: st.tuples(st.just(c[0]), c[1]))


def _same_float(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or (
        a == b and math.copysign(1, a) == math.copysign(1, b)
    )


def _crate_back(sent: Any, source: Any, pg_type: str) -> bool:
    """Whether what CrateDB stores (``sent`` after JSON) means exactly ``source``."""
    if isinstance(source, list):
        return len(sent) == len(source) and all(
            _crate_back(a, b, pg_type.removesuffix("[]")) for a, b in zip(sent, source, strict=True)
        )
    if isinstance(source, bool | str):
        return sent == source
    if isinstance(source, int):
        return type(sent) is int and sent == source
    if isinstance(source, float):
        if pg_type.startswith("real"):
            return bool(np.float32(sent) == np.float32(source)) or _same_float(sent, source)
        return _same_float(float(sent), source)
    if isinstance(source, Decimal):
        return Decimal(repr(sent)) == source
    if isinstance(source, datetime):
        aware = source if source.tzinfo else source.replace(tzinfo=UTC)
        return from_epoch_ms(sent) == aware
    if isinstance(source, date):
        return from_epoch_ms(sent).date() == source
    if isinstance(source, bytes):
        return bytes.fromhex(sent) == source
    raise AssertionError(f"no rule for {source!r}")


@given(VALUE)
def test_crate_value_round_trips_through_json_or_is_refused(case: tuple[str, Any]) -> None:
    """A value CrateDB's JSON would change is refused; any other travels and reads back exactly."""
    pg_type, value = case
    reason = crate_refusal(value, pg_type)
    if reason is not None:
        assert reason and "\n" not in reason
        return
    sent = crate_value([pg_type])([value])[0]
    travelled = orjson.loads(orjson.dumps(sent))
    assert travelled == sent or (isinstance(sent, float) and math.isnan(sent))
    assert _crate_back(travelled, value, pg_type)


@pytest.mark.parametrize(
    ("pg_type", "value", "why"),
    [
        ("double precision", math.nan, "would arrive as NULL"),
        ("double precision", -math.inf, "would arrive as NULL"),
        ("numeric", Decimal("NaN"), "cannot travel"),
        ("numeric", Decimal("12345678901234567890.5"), "not exact as CrateDB's DOUBLE PRECISION"),
        ("numeric", Decimal("1E+400"), "not exact"),
        ("bigint", 2**63, "beyond CrateDB's BIGINT"),
        ("integer", 2**40, "out of range for CrateDB's INTEGER"),
        ("integer", -(2**31) - 1, "out of range for CrateDB's INTEGER"),
        ("smallint", 70_000, "out of range for CrateDB's SMALLINT"),
        ("byte", 128, "out of range for CrateDB's BYTE"),
        ("integer[]", [1, 2**31], "array element"),
        ("numeric", 2**53 + 1, "not exact as CrateDB's DOUBLE PRECISION"),
        ("real", 2**24 + 1, "not exact as CrateDB's REAL"),
        ("real[]", [1, -(2**24) - 1], "array element"),
        ("timestamp with time zone", datetime(2024, 1, 1, 0, 0, 0, 123, tzinfo=UTC), "microsec"),
        ("timestamp without time zone", datetime(2024, 1, 1, 0, 0, 0, 1500), "milliseconds"),
        ("double precision[]", [1.0, math.nan], "array element"),
    ],
)  # fmt: skip
def test_crate_refuses_what_json_or_crate_would_change(pg_type: str, value: Any, why: str) -> None:
    """NaN/inf, big integers, inexact numerics and sub-millisecond timestamps are refused."""
    reason = crate_refusal(value, pg_type)
    assert reason is not None and why in reason


@pytest.mark.parametrize(
    ("pg_type", "value"),
    [("numeric", Decimal("19.99")), ("numeric", Decimal("-0")), ("double precision", -0.0),
     ("real", 0.10000000149011612), ("timestamp with time zone", datetime(1, 1, 1, tzinfo=UTC)),
     ("date", date(9999, 12, 31)), ("text", ""), ("text", "😀" * 10_000), ("bigint", -(2**63)),
     ("integer", 2**31 - 1), ("integer", -(2**31)), ("smallint", -(2**15)), ("byte", -128)],
)  # fmt: skip
def test_crate_accepts_what_it_stores_exactly(pg_type: str, value: Any) -> None:
    """Ordinary edge values are not refused (refusing them would be a loss too)."""
    assert crate_refusal(value, pg_type) is None


def test_crate_real_travels_as_its_float32_shortest_form() -> None:
    """A real read from PostgreSQL (0.1 as float4) is sent as 0.1, what CrateDB hands back."""
    assert crate_value(["integer", "real"])([1, float(np.float32(0.1))]) == [1, 0.1]
    assert crate_value(["real[]"])([[float(np.float32(2.2)), None]]) == [[2.2, None]]


ORACLE_CONTEXT = Context(prec=38)


def _oracle_stores(bound: Any, pg_type: str) -> Any:
    """What Oracle keeps of a bound value (a model of its storage rules)."""
    if bound == "":
        return None  # Oracle: '' is NULL
    if isinstance(bound, str):
        return bound if len(bound.encode()) <= 4000 else bound.encode()[:4000]
    if isinstance(bound, Decimal | int) and not isinstance(bound, bool):
        if pg_type.startswith(("double", "real")):
            return bound
        stored = ORACLE_CONTEXT.plus(Decimal(bound))
        return stored if stored.adjusted() >= -130 else Decimal(0)
    if isinstance(bound, float) and bound == 0:
        return 0.0  # BINARY_DOUBLE / BINARY_FLOAT: "-0 is converted to +0"
    return bound


def _oracle_means(stored: Any, source: Any) -> bool:
    if isinstance(source, bool):
        return stored == int(source)
    if isinstance(source, datetime) and source.tzinfo is not None:
        return stored.replace(tzinfo=UTC) == source
    if isinstance(source, float):
        return _same_float(stored, source)
    if isinstance(source, Decimal | int):
        return stored == source
    return bool(stored == source)


@given(VALUE)
def test_oracle_bind_is_stored_exactly_or_refused(case: tuple[str, Any]) -> None:
    """What the bind conversion produces is what Oracle keeps, unless the value is refused."""
    pg_type, value = case
    if pg_type.endswith("[]"):
        return  # arrays travel as CLOB text
    reason = oracle_refusal(value, pg_type)
    if reason is not None:
        assert reason and "\n" not in reason
        return
    assert _oracle_means(_oracle_stores(oracle_bind(value), pg_type), value)


@pytest.mark.parametrize(
    ("pg_type", "value", "why"),
    [
        ("text", "", "Oracle stores '' as NULL"),
        ("character varying(10)", "", "as NULL"),
        ("numeric", Decimal("1" * 39), "39 significant digits"),
        ("numeric", Decimal("1E-131"), "outside Oracle NUMBER's range"),
        ("numeric", Decimal("NaN"), "no Oracle NUMBER form"),
        ("numeric", 10**40 + 1, "41 significant digits"),
        ("text", "é" * 2001, "4002 bytes exceeds Oracle VARCHAR2"),
        ("double precision", -0.0, "-0.0: Oracle BINARY_DOUBLE stores -0 as 0"),
        ("real", -0.0, "-0.0: Oracle BINARY_FLOAT stores -0 as 0"),
    ],
)
def test_oracle_refuses_what_it_would_change(pg_type: str, value: Any, why: str) -> None:
    """'', over-precise or out-of-range numbers, over-long text and a float -0 are refused."""
    reason = oracle_refusal(value, pg_type)
    assert reason is not None and why in reason


@pytest.mark.parametrize(
    ("pg_type", "value"),
    [("numeric", Decimal("9" * 38)), ("double precision", math.nan), ("real", 0.0),
     ("double precision", math.inf), ("double precision", -math.inf), ("numeric", Decimal("-0")),
     ("date", date(1, 1, 1)), ("text", "x" * 4000),
     ("json", ""), ("timestamp with time zone", datetime(2024, 1, 1, 0, 0, 0, 1, tzinfo=UTC))],
)  # fmt: skip
def test_oracle_accepts_what_it_stores_exactly(pg_type: str, value: Any) -> None:
    """BINARY_DOUBLE keeps NaN/inf/0.0, TIMESTAMP keeps microseconds, CLOB keeps ''."""
    assert oracle_refusal(value, pg_type) is None


def test_oracle_numbers_that_need_decimal() -> None:
    """Only integer NUMBER columns may be fetched as int; every other NUMBER as Decimal."""
    assert not oracle_number_as_decimal(10, 0)
    assert oracle_number_as_decimal(12, 2)
    assert oracle_number_as_decimal(0, -127)  # NUMBER without precision
    assert oracle_number_as_decimal(None, None)


def test_row_refusal_names_the_column() -> None:
    """A row's refusal names the first refused column; NULLs are never refused."""
    row = (1, None, math.nan, "")
    names, types = ["id", "a", "b", "c"], ["bigint", "double precision"] * 2
    assert row_refusal(row, names, types, crate_refusal) == (
        "column b: nan cannot travel in CrateDB's JSON (it would arrive as NULL)"
    )
    assert row_refusal((1, None, 1.0, "x"), names, types, crate_refusal) is None


@pytest.mark.parametrize("kind", [2, 1])
def test_oracle_stages_a_refused_keys_current_row(kind: int) -> None:
    """Oracle: a refused key's current target row is staged as it is, bound by the key."""
    cols = ScdSpec(type=kind, business_key=("a", "b")).resolve(["a", "b", "v"])  # type: ignore[arg-type]
    st = ora.stage_current_sql("dw.t_stg", "dw.t", cols)
    current = ' AND t."IS_CURRENT" = 1' if kind == 2 else ""
    assert st.text == (
        'INSERT INTO "DW"."T_STG" ("A", "B", "V") SELECT t."A", t."B", t."V" FROM "DW"."T" t '
        f'WHERE t."A" = :1 AND t."B" = :2{current} AND NOT EXISTS (SELECT 1 FROM "DW"."T_STG" x '
        'WHERE x."A" = t."A" AND x."B" = t."B")'
    )
    assert st.args({"a": 1, "b": "x"}) == [1, "x"]


def test_numeric_reasons_show_the_number_not_a_python_repr() -> None:
    """A refused numeric reads '12345678901234567890.1' in its reason, not "Decimal('...')"."""
    value = Decimal("12345678901234567890.1")
    for reason in (crate_refusal(value, "numeric"), crate_refusal([value], "numeric[]")):
        assert reason is not None and "numeric 12345678901234567890.1 is not exact" in reason
        assert "Decimal(" not in reason
    oracle = oracle_refusal(Decimal("1E-131"), "numeric")
    assert oracle is not None and "Decimal(" not in oracle and oracle.startswith("1E-131 ")


def test_money_is_refused_for_targets_that_would_store_its_locale_text() -> None:
    """money / money[] into CrateDB or Oracle: one line naming it and the cast; PostgreSQL: None."""
    columns = [("id", "integer"), ("amount", "money"), ("hist", "money[]")]
    crate = locale_text_problem(columns, "cratedb")
    assert crate is not None and crate.startswith("column 'amount' is money: ")
    assert "amount::numeric AS amount" in crate and "DOUBLE PRECISION" in crate
    oracle = locale_text_problem(columns[2:], "oracle")
    assert oracle is not None and "hist::numeric[] AS hist" in oracle and "NUMBER" in oracle
    assert locale_text_problem(columns, "postgresql") is None
    assert locale_text_problem([("n", "numeric(19,2)")], "cratedb") is None


_ODD = datetime(2024, 1, 1, 12, tzinfo=timezone(timedelta(hours=-5, minutes=-30, seconds=-30)))


@pytest.mark.parametrize("pg_type", ["jsonb", "text", ""])
def test_the_crate_check_refuses_an_offset_of_seconds_json_would_carry(pg_type: str) -> None:
    """A datetime that goes as JSON text with an offset JSON rounds (to HH:MM) is refused."""
    value = {"at": _ODD} if pg_type == "jsonb" else _ODD
    reason = crate_refusal(value, pg_type) if pg_type else crate_row_check(["v"], [])((value,))
    assert reason is not None and "not a whole number of minutes" in reason
    assert crate_refusal(_ODD.astimezone(UTC), pg_type or "timestamptz") is None


def test_a_jobs_timestamp_with_an_offset_of_seconds_goes_as_exact_epoch_ms() -> None:
    """A job's timestamptz value is sent as epoch ms (exact for any offset): not refused."""
    assert crate_refusal(_ODD, "timestamptz") is None
    assert epoch_ms(_ODD) == epoch_ms(_ODD.astimezone(UTC)) == 1704130230000
