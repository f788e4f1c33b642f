"""The writer stores a host's value exactly or refuses its row naming the column: never rounds."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiohttp
import asyncpg

from async_etl import open_writer
from async_etl.core.exact import crate_refusal, row_refusal
from async_etl.testing.crate import CrateStandIn
from async_etl.testing.crate.probe import post_sql


async def _pg_rows(dsn: str, sql: str) -> list[tuple[Any, ...]]:
    conn = await asyncpg.connect(dsn)
    try:
        return [tuple(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


async def test_numeric_scale_and_precision_are_refused_not_rounded(pg_dsn: str) -> None:
    """numeric(10,2): 1.005 and 123456789.5 are refused naming the column; 1.50 and 7 land."""
    async with open_writer(pg_dsn, table="n", columns={"k": "int", "v": "numeric(10,2)"}) as w:
        await w.write_many([(1, Decimal("1.005")), (2, Decimal("1.50")), (3, 7),
                            (4, Decimal("123456789.5")), (5, Decimal("2.10000"))])  # fmt: skip
    report = w.report
    assert (report.delivered, report.rejected, report.undelivered) == (3, 2, 0)
    refused = {r.row[0]: r.reason for r in report.rejected_rows}
    assert refused == {
        1: "column 'v' (numeric(10,2)): 1.005 has more than 2 decimal places; "
        "numeric(10,2) would round it",
        4: "column 'v' (numeric(10,2)): 123456789.5 does not fit numeric(10,2)",
    }
    rows = await _pg_rows(pg_dsn, "SELECT k, v::text FROM n ORDER BY k")
    assert rows == [(2, "1.50"), (3, "7.00"), (5, "2.10")]


async def test_timestamp_precision_is_refused_not_rounded(pg_dsn: str) -> None:
    """timestamptz(0) refuses a datetime with microseconds; timestamp(3) keeps whole ms."""
    cols = {"k": "int", "a": "timestamptz(0)", "b": "timestamp(3)"}
    async with open_writer(pg_dsn, table="t", columns=cols) as w:
        await w.write_many([
            (1, datetime(2024, 1, 1, 0, 0, 1, 500000, tzinfo=UTC), None),
            (2, datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, 0, 0, 0, 123000)),
            (3, None, datetime(2024, 1, 1, 0, 0, 0, 123456)),
        ])  # fmt: skip
    refused = {r.row[0]: r.reason for r in w.report.rejected_rows}
    assert set(refused) == {1, 3}
    assert refused[1].startswith("column 'a' (timestamptz(0)): 2024-01-01T00:00:01.500000+00:00")
    assert refused[3].startswith("column 'b' (timestamp(3)): 2024-01-01T00:00:00.123456 has a")
    rows = await _pg_rows(pg_dsn, "SELECT k, b FROM t ORDER BY k")
    assert rows == [(2, datetime(2024, 1, 1, 0, 0, 0, 123000))]


async def test_nan_inside_json_is_refused_not_nulled(pg_dsn: str) -> None:
    """{"a": nan} and [inf] into jsonb / json are refused naming the column; {"a": 1.5} lands."""
    cols = {"k": "int", "j": "jsonb", "t": "json"}
    async with open_writer(pg_dsn, table="j", columns=cols) as w:
        await w.write_many([(1, {"a": math.nan}, None), (2, None, [1, [math.inf]]),
                            (3, {"a": 1.5}, {"b": -0.0})])  # fmt: skip
    refused = {r.row[0]: r.reason for r in w.report.rejected_rows}
    assert refused == {
        1: "column 'j' (jsonb): nan has no JSON form (it would be null)",
        2: "column 't' (json): inf has no JSON form (it would be null)",
    }
    rows = await _pg_rows(pg_dsn, "SELECT k, j::text, t::text FROM j ORDER BY k")
    assert rows == [(3, '{"a": 1.5}', '{"b":-0.0}')]


async def test_an_int_beyond_every_float_is_a_row_reject_not_a_crash(pg_dsn: str) -> None:
    """10**400 into double precision: one reject naming the column; the other rows land."""
    cols = {"k": "int", "f": "double precision", "r": "real"}
    async with open_writer(pg_dsn, table="f", columns=cols) as w:
        await w.write_many([(1, 10**400, None), (2, 2.5, 16_777_217), (3, 1, 2)])
    report = w.report
    assert (report.delivered, report.rejected, report.undelivered) == (1, 2, 0), report.reasons
    refused = {r.row[0]: r.reason for r in report.rejected_rows}
    assert refused[1].startswith("column 'f' (float8): 1000000000") and "out of range" in refused[1]
    assert refused[2] == "column 'r' (float4): 16777217 has no exact float value"
    assert await _pg_rows(pg_dsn, "SELECT k, f, r FROM f") == [(3, 1.0, 2.0)]


async def test_crate_writer_refuses_what_the_mapper_refuses(crate_standin: CrateStandIn) -> None:
    """Microseconds and {"a": inf} in an object: refused with core.exact's reason; ms land."""
    crate = crate_standin
    cols = {"id": "BIGINT", "ts": "TIMESTAMP WITH TIME ZONE", "o": "OBJECT", "d": "DOUBLE"}
    rows = [
        (1, datetime(2024, 1, 1, 0, 0, 0, 123456, tzinfo=UTC), None, None),
        (2, None, {"a": math.inf}, None),
        (3, datetime(2024, 1, 1, 0, 0, 0, 123000, tzinfo=UTC), {"a": 1.5}, None),
        (4, None, None, 2**53 + 1),
    ]
    async with open_writer(crate.url, table="ev", columns=cols, primary_key=["id"]) as w:
        await w.write_many(rows)
    refused = {r.row[0]: r.reason for r in w.report.rejected_rows}
    names = list(cols)
    types = ["bigint", "timestamp with time zone", "json", "double precision"]
    mapper = {r[0]: row_refusal(r, names, types, crate_refusal) for r in rows}
    assert refused == {k: why for k, why in mapper.items() if why is not None}
    assert set(refused) == {1, 2, 4}
    assert refused[1] == ("column ts: timestamp 2024-01-01T00:00:00.123456+00:00 has "
                          "microseconds; CrateDB stores milliseconds")  # fmt: skip
    async with aiohttp.ClientSession() as session:
        await post_sql(session, crate.url, "REFRESH TABLE ev")
        _, body = await post_sql(session, crate.url, "SELECT id, ts, o FROM ev ORDER BY id")
    assert body["rows"] == [[3, 1704067200123, {"a": 1.5}]]


async def test_a_float_that_real_flushes_to_zero_is_refused(pg_dsn: str) -> None:
    """1e-50 into real would become 0 (PostgreSQL's own input refuses it): rejected by name."""
    async with open_writer(pg_dsn, table="r", columns={"k": "int", "r": "real"}) as w:
        await w.write_many([(1, 1e-50), (2, 1.5), (3, -1e-46)])
    refused = {r.row[0]: r.reason for r in w.report.rejected_rows}
    assert refused == {1: "column 'r' (float4): 1e-50 is out of range (underflow)",
                       3: "column 'r' (float4): -1e-46 is out of range (underflow)"}  # fmt: skip
    assert await _pg_rows(pg_dsn, "SELECT k, r FROM r") == [(2, 1.5)]
    async with open_writer(pg_dsn, table="r") as w:  # a batch the C encoders would take
        await w.write_many([(4, 2.5), (5, 1e-40), (6, 1e-300)])
    assert {r.row[0] for r in w.report.rejected_rows} == {6}
    assert await _pg_rows(pg_dsn, "SELECT k FROM r ORDER BY k") == [(2,), (4,), (5,)]


async def test_crate_writer_takes_a_decimal_the_mapper_takes(crate_standin: CrateStandIn) -> None:
    """A Decimal exact as a double lands in CrateDB, as a job's does; an inexact one is refused."""
    crate = crate_standin
    cols = {"id": "BIGINT", "d": "DOUBLE", "o": "OBJECT"}
    inexact = Decimal("0.1000000000000000000001")
    rows = [
        (1, Decimal("12.34"), None),
        (2, inexact, None),
        (3, None, {"a": Decimal("-0.5")}),
    ]
    async with open_writer(crate.url, table="dec", columns=cols, primary_key=["id"]) as w:
        await w.write_many(rows)
    refused = {r.row[0]: r.reason for r in w.report.rejected_rows}
    assert refused == {2: "column d: " + str(crate_refusal(inexact, "double precision"))}
    assert (w.report.delivered, w.report.undelivered) == (2, 0)
    async with aiohttp.ClientSession() as session:
        await post_sql(session, crate.url, "REFRESH TABLE dec")
        _, body = await post_sql(session, crate.url, "SELECT id, d, o FROM dec ORDER BY id")
    assert body["rows"] == [[1, 12.34, None], [3, None, {"a": -0.5}]]
