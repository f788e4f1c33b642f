"""PostgreSQL dates, timestamps and keys read exactly: infinities, BC and far-future years kept."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from async_etl.core.exact import crate_refusal, crate_row_check, oracle_refusal, row_refusal
from async_etl.core.pg_values import (
    PgMoment,
    decode_date,
    decode_timestamp,
    decode_timestamptz,
    encode_date,
    encode_timestamp,
    encode_timestamptz,
)
from async_etl.jobs.coltypes import crate_value
from async_etl.jobs.context import key_json

PG_DAYS = st.one_of(
    st.sampled_from([2**31 - 1, -(2**31)]),
    st.integers(-2_451_545, 2_145_031_948),  # 4713-11-24 BC .. 5874897-12-31, from 2000-01-01
)
PG_MICROS = st.one_of(
    st.sampled_from([2**63 - 1, -(2**63)]),
    st.integers(-211_813_488_000_000_000, 9_223_371_331_200_000_000 - 1),
)


@given(PG_DAYS)
def test_every_postgres_date_decodes_and_binds_back_unchanged(days: int) -> None:
    """decode then encode gives the same days: infinities and BC dates included."""
    assert encode_date(decode_date((days,))) == (days,)


@given(PG_MICROS)
def test_every_postgres_timestamp_decodes_and_binds_back_unchanged(micros: int) -> None:
    """timestamp and timestamptz: decode then encode gives the same microseconds."""
    assert encode_timestamp(decode_timestamp((micros,))) == (micros,)
    assert encode_timestamptz(decode_timestamptz((micros,))) == (micros,)


@given(st.dates())
def test_a_date_python_holds_stays_a_date(value: date) -> None:
    """Years 1-9999 decode to the very date (never to a PgMoment)."""
    assert decode_date(encode_date(value)) == value


def test_infinity_and_bc_dates_have_postgres_text() -> None:
    """'infinity' is not 9999-12-31; BC and far-future dates carry PostgreSQL's text."""
    assert decode_date((2**31 - 1,)) == PgMoment("date", None, "infinity")
    assert decode_date((-(2**31),)) == PgMoment("date", None, "-infinity")
    assert str(decode_date(encode_date(PgMoment("date", -63517824000000000, "")))) == (
        "0044-03-15 BC"
    )
    far = decode_timestamptz((327403382400000000 - 946684800000000 + 3_723_000_001,))
    assert str(far) == "12345-01-01 01:02:03.000001+00"
    assert decode_timestamptz((0,)) == datetime(2000, 1, 1, tzinfo=UTC)


def test_crate_stores_finite_moments_and_refuses_infinity() -> None:
    """A BC date goes to CrateDB as epoch ms; an infinity or lost microseconds are refused."""
    bc = PgMoment("date", -63517824000000000, "0044-03-15 BC")
    assert crate_refusal(bc, "date") is None
    assert crate_value(["date"])([bc]) == [-63517824000000]
    inf = PgMoment("timestamptz", None, "infinity")
    assert crate_refusal(inf, "timestamp with time zone") == (
        "timestamptz 'infinity' has no CrateDB TIMESTAMP form (no infinity)"
    )
    assert crate_value(["timestamp with time zone"])([inf]) == ["infinity"]  # never a NULL key
    fine = PgMoment("timestamp", -63517780799999999, "0044-03-15 12:00:00.000001 BC")
    assert "has microseconds" in (crate_refusal(fine, "timestamp without time zone") or "")
    assert "outside the years 1-9999" in (oracle_refusal(bc, "date") or "")
    assert "no infinity" in (oracle_refusal(inf, "timestamp with time zone") or "")


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_non_finite_key_parts_become_json_strings(value: float) -> None:
    """A key with NaN or an infinity is valid JSON (PostgreSQL's spelling, as a string)."""
    text = key_json({"k": value, "n": [1.5, value]})
    spelled = {"inf": "Infinity", "-inf": "-Infinity", "nan": "NaN"}[repr(value)]
    assert json.loads(text) == {"k": spelled, "n": [1.5, spelled]}
    assert "Infinity" not in text.replace('"Infinity"', "").replace('"-Infinity"', "")


def test_crate_real_refuses_a_float_it_would_store_as_zero() -> None:
    """1e-50 into a REAL column underflows to 0: refused; the smallest float32 is kept."""
    why = "1e-50 underflows CrateDB's REAL (it would be stored as 0)"
    assert crate_refusal(1e-50, "real") == why
    assert crate_refusal(1.401298464324817e-45, "real") is None
    assert crate_refusal(1e-50, "double precision") is None


@given(
    st.tuples(
        st.one_of(st.none(), st.floats(), st.integers(), st.text(max_size=2)),
        st.one_of(st.none(), st.lists(st.one_of(st.none(), st.floats()), max_size=3)),
        st.one_of(st.none(), st.datetimes(), st.booleans(), st.decimals()),
    )
)
def test_the_row_check_is_row_refusal_with_crate_refusal(row: tuple[object, ...]) -> None:
    """crate_row_check (types parsed once, plain values skipped) decides as row_refusal does."""
    names, types = ["a", "b", "c"], ["real", "double precision[]", "numeric(12,2)"]
    check = crate_row_check(names, types)
    assert check(row) == row_refusal(row, names, types, crate_refusal)


def test_ranges_and_hstores_reach_crate_as_postgres_text_not_a_repr() -> None:
    """asyncpg's Range and an hstore dict become PostgreSQL's text, never '<Range ...>'."""
    from asyncpg import Range

    convert = crate_value(["int4range", "tsrange", "daterange", "hstore"])
    row = [Range(1, 5), Range(datetime(2024, 1, 1), None, upper_inc=True),
           Range(empty=True), {"a": "1", 'q"': None}]  # fmt: skip
    assert convert(row) == ["[1,5)", '["2024-01-01 00:00:00",)', "empty", '"a"=>"1", "q\\""=>NULL']


def test_exact_codecs_bind_9999_12_31_as_itself_not_infinity() -> None:
    """date.max / datetime.max bind as 9999-12-31 (asyncpg's own: infinity); infinity reads back."""
    from async_etl.core.pg_values import TUPLE_CODECS, PgMoment

    days = date.max.toordinal() - date(2000, 1, 1).toordinal()
    assert TUPLE_CODECS["date"][0](date.max) == (days,)
    assert TUPLE_CODECS["date"][0](date.min) == (
        date.min.toordinal() - date(2000, 1, 1).toordinal(),
    )
    micros = TUPLE_CODECS["timestamptz"][0](datetime.max.replace(tzinfo=UTC))
    assert micros != (2**63 - 1,) and TUPLE_CODECS["timestamp"][0](datetime.min) != (-(2**63),)
    assert isinstance(TUPLE_CODECS["date"][1]((2**31 - 1,)), PgMoment)


def test_time_24_00_decodes_as_its_text_and_binds_back() -> None:
    """time / timetz 24:00:00 read as '24:00:00' / '24:00:00+05:30', not a ValueError."""
    from datetime import time, timedelta, timezone

    from async_etl.core.pg_values import TUPLE_CODECS

    enc_t, dec_t = TUPLE_CODECS["time"]
    enc_tz, dec_tz = TUPLE_CODECS["timetz"]
    assert dec_t((86_400_000_000,)) == "24:00:00"
    assert dec_t((43_200_500_000,)) == time(12, 0, 0, 500_000)
    assert dec_tz((86_400_000_000, -19_800)) == "24:00:00+05:30"
    assert dec_tz((86_400_000_000, 57_540)) == "24:00:00-15:59"
    minus = timezone(-timedelta(hours=15, minutes=59))
    assert dec_tz((43_200_000_000, 57_540)) == time(12, tzinfo=minus)
    assert str(dec_tz((43_200_000_000, 57_540))) == "12:00:00-15:59"
    for raw in [(0,), (86_399_999_999,), (86_400_000_000,)]:
        assert enc_t(dec_t(raw)) == raw
    for raw2 in [(0, 0), (86_400_000_000, -19_815), (1, 57_540), (86_400_000_000, 0)]:
        assert enc_tz(dec_tz(raw2)) == raw2
    assert enc_tz(time(1)) == (3_600_000_000, 0)  # naive: UTC
    with pytest.raises(TypeError):
        enc_t("25:00:00")
