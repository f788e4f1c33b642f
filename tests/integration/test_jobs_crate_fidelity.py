"""PostgreSQL -> CrateDB values Python cannot hold: stored exactly, or rejected naming a column."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest
from structlog.testing import capture_logs

from async_etl.errors import ConfigError
from async_etl.jobs.api import JobOptions
from async_etl.jobs.coltypes import epoch_ms
from async_etl.jobs.runner import run_job
from async_etl.testing.crate import CrateStandIn, StandInConfig
from tests.integration.jobs_helpers import at, crate_rows, fetchval, spec_of, table_rows


async def _source(dsn: str, columns: str, rows: list[str]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DROP TABLE IF EXISTS src")
        await conn.execute(f"CREATE TABLE src (id int PRIMARY KEY, {columns})")
        for row in rows:
            await conn.execute(f"INSERT INTO src VALUES ({row})")
    finally:
        await conn.close()


def _job(dsn: str, crate_url: str, name: str, on_bad_row: str = "reject", key: str = "id") -> str:
    return f"""
name = "{name}"
on_bad_row = "{on_bad_row}"
[source]
url = "{dsn}"
table = "src"
key = ["{key}"]
[target]
url = "{crate_url}"
table = "dw.fid"
[scd]
type = 2
[parallel]
enabled = false
[state]
url = "{dsn}"
"""


async def _stored(url: str) -> dict[Any, dict[str, Any]]:
    return await crate_rows(url, "dw.fid", "WHERE is_current = true")


async def _rejects(dsn: str, job: str) -> dict[str, str]:
    return {r["key"]: r["reason"] for r in await table_rows(dsn, "async_etl_rejects")
            if r["job"] == job}  # fmt: skip


async def test_interval_and_bit_strings_are_stored_as_postgres_text(pg_dsn: str) -> None:
    """'1 mon' is stored as '1 mon' (not 30 days), B'0101' as '0101'; '1 mon' -> '30 days' lands."""
    rows = ["1, '1 mon', B'0101', B'1'", "2, '1 day 02:00:00.5', B'1111', B'10101'"]
    await _source(pg_dsn, "iv interval, b bit(4), vb varbit", rows)
    job = f"fid_{uuid.uuid4().hex[:8]}"
    async with CrateStandIn(StandInConfig()) as crate:
        spec = spec_of(_job(pg_dsn, crate.url, job))
        first = await run_job(spec, options=JobOptions(as_of=at(0)))
        assert (first.status, first.error, first.inserted) == ("SUCCEEDED", None, 2)
        stored = await _stored(crate.url)
        assert {k: (r["iv"], r["b"], r["vb"]) for k, r in stored.items()} == {
            1: ("1 mon", "0101", "1"), 2: ("1 day 02:00:00.5", "1111", "10101")}  # fmt: skip
        again = await run_job(spec, options=JobOptions(as_of=at(1)))
        assert (again.inserted, again.updated, again.expired) == (0, 0, 0)
        await fetchval(pg_dsn, "UPDATE src SET iv = '30 days' WHERE id = 1")
        third = await run_job(spec, options=JobOptions(as_of=at(2)))
        assert third.status == "SUCCEEDED", third.error
        assert (third.inserted, third.expired) == (1, 1)
        assert (await _stored(crate.url))[1]["iv"] == "30 days"


@pytest.mark.parametrize("style", ["iso_8601", "sql_standard"])
async def test_interval_text_does_not_follow_the_source_interval_style(
    pg_dsn: str, style: str
) -> None:
    """A source whose IntervalStyle changes between runs: intervals read alike, nothing changes."""
    rows = ["1, '1 mon 2 days 03:04:05.678', ARRAY['1 mon', '-2 days 00:00:01']::interval[]",
            "2, '-1 year +1 day -00:00:00.001', NULL"]  # fmt: skip
    await _source(pg_dsn, "iv interval, ia interval[]", rows)
    job = f"fid_{uuid.uuid4().hex[:8]}"
    async with CrateStandIn(StandInConfig()) as crate:
        spec = spec_of(_job(pg_dsn, crate.url, job))
        first = await run_job(spec, options=JobOptions(as_of=at(0)))
        assert (first.status, first.error, first.inserted) == ("SUCCEEDED", None, 2)
        before = {k: (r["iv"], r["ia"]) for k, r in (await _stored(crate.url)).items()}
        assert before == {1: ("1 mon 2 days 03:04:05.678", ["1 mon", "-2 days +00:00:01"]),
                          2: ("-1 years +1 day -00:00:00.001", None)}  # fmt: skip
        alter = f"ALTER DATABASE %I SET intervalstyle = {style}"
        await fetchval(pg_dsn, f"DO $$ BEGIN EXECUTE format('{alter}', current_database()); END $$")
        again = await run_job(spec, options=JobOptions(as_of=at(1)))
        assert (again.status, again.error) == ("SUCCEEDED", None)
        assert (again.inserted, again.updated, again.expired) == (0, 0, 0)
        after = {k: (r["iv"], r["ia"]) for k, r in (await _stored(crate.url)).items()}
        assert after == before


@pytest.mark.parametrize("column", ["m money", "m money[]"])
async def test_money_is_refused_in_preflight_not_stored_as_locale_text(
    pg_dsn: str, column: str
) -> None:
    """A money column is one line naming it (was stored as '$1,234.50'); its numeric cast loads."""
    array = column.endswith("[]")
    value = "'{1234.5,0.07}'" if array else "1234.5"
    await _source(pg_dsn, column, [f"1, {value}", "2, NULL"])
    async with CrateStandIn() as crate:
        with pytest.raises(ConfigError) as err:
            await run_job(
                spec_of(_job(pg_dsn, crate.url, "money")), options=JobOptions(as_of=at(0))
            )
        assert not crate.catalog.tables  # nothing created
        cast = "numeric[]" if array else "numeric"
        line = err.value.message
        assert "\n" not in line and f"column 'm' is {column[2:]}" in line
        assert f"m::{cast} AS m" in line and "lc_monetary" in line
        assert await fetchval(pg_dsn, "SELECT to_regclass('async_etl_runs')") is None
        query = f'query = "SELECT id, m::{cast} AS m FROM src"'
        text = _job(pg_dsn, crate.url, "money").replace('table = "src"', query, 1)
        result = await run_job(spec_of(text), options=JobOptions(as_of=at(0)))
        assert result.status == "SUCCEEDED", result.error
        stored = await _stored(crate.url)
    assert stored[1]["m"] == ([1234.5, 0.07] if array else 1234.5) and stored[2]["m"] is None


async def test_money_into_oracle_is_refused_before_reaching_it(pg_dsn: str) -> None:
    """Into Oracle too (NUMBER would hold it): refused before any Oracle connection is made."""
    await _source(pg_dsn, "m money", ["1, 5"])
    text = _job(pg_dsn, "oracle://u:p@127.0.0.1:1/none", "money_ora")
    with pytest.raises(ConfigError) as err:
        await run_job(spec_of(text), options=JobOptions(as_of=at(0)))
    assert "column 'm' is money" in err.value.message and "Oracle's NUMBER" in err.value.message


async def test_infinite_dates_and_timestamps_are_refused_with_a_true_reason(pg_dsn: str) -> None:
    """date and timestamptz 'infinity' / '-infinity': rejects naming the column, nothing stored."""
    await _source(pg_dsn, "d date, ts timestamptz",
                  ["1, '2024-01-01', '2024-01-01 00:00+00'", "2, 'infinity', NULL",
                   "3, NULL, 'infinity'", "4, '-infinity', '-infinity'"])  # fmt: skip
    job = f"fid_{uuid.uuid4().hex[:8]}"
    async with CrateStandIn(StandInConfig()) as crate:
        result = await run_job(spec_of(_job(pg_dsn, crate.url, job)),
                               options=JobOptions(as_of=at(0)))  # fmt: skip
        assert result.status == "SUCCEEDED", result.error
        assert (result.inserted, result.rejected) == (1, 3)
        assert set(await _stored(crate.url)) == {1}
    no_form = "has no CrateDB TIMESTAMP form (no infinity)"
    assert await _rejects(pg_dsn, job) == {
        '{"id": 2}': f"column d: date 'infinity' {no_form}",
        '{"id": 3}': f"column ts: timestamptz 'infinity' {no_form}",
        '{"id": 4}': f"column d: date '-infinity' {no_form}",
    }


async def test_infinite_date_fails_a_fail_mode_run_naming_it(pg_dsn: str) -> None:
    """on_bad_row = "fail": the run fails naming the row, the column and the infinity."""
    await _source(pg_dsn, "d date", ["1, 'infinity'"])
    async with CrateStandIn(StandInConfig()) as crate:
        result = await run_job(spec_of(_job(pg_dsn, crate.url, "fidfail", "fail")),
                               options=JobOptions(as_of=at(0)))  # fmt: skip
        assert crate.counters.bulk_items == 0
    assert result.status == "FAILED"
    assert "row {\"id\": 1} refused: column d: date 'infinity'" in (result.error or "")


async def test_bc_and_far_future_dates_are_stored_exactly(pg_dsn: str) -> None:
    """'0044-03-15 BC' and years past 9999 are stored as exact epoch ms; a re-run writes nothing."""
    await _source(pg_dsn, "d date, ts timestamp",
                  ["1, '0044-03-15 BC', '0044-03-15 12:30:00.25 BC'",
                   "2, '12345-06-07', '12345-06-07 01:02:03'", "3, '2024-01-01', NULL",
                   "4, '4713-01-01 BC', '0001-01-01 00:00:00.000001 BC'"])  # fmt: skip
    job = f"fid_{uuid.uuid4().hex[:8]}"
    async with CrateStandIn(StandInConfig()) as crate:
        spec = spec_of(_job(pg_dsn, crate.url, job))
        first = await run_job(spec, options=JobOptions(as_of=at(0)))
        assert first.status == "SUCCEEDED", first.error
        assert (first.inserted, first.rejected) == (3, 1)
        stored = await _stored(crate.url)
        conn = await asyncpg.connect(pg_dsn)
        try:
            expected = {
                r["id"]: (r["d"], r["ts"])
                for r in await conn.fetch(
                    "SELECT id, (extract(epoch FROM d::timestamp AT TIME ZONE 'UTC') * 1000)"
                    "::bigint AS d, (extract(epoch FROM ts AT TIME ZONE 'UTC') * 1000)::bigint "
                    "AS ts FROM src WHERE id < 4"
                )
            }
        finally:
            await conn.close()
        assert {k: (r["d"], r["ts"]) for k, r in stored.items()} == expected
        again = await run_job(spec, options=JobOptions(as_of=at(1)))
        assert (again.inserted, again.updated, again.expired, again.rejected) == (0, 0, 0, 1)
    reasons = await _rejects(pg_dsn, job)
    assert reasons == {'{"id": 4}': "column ts: timestamp 0001-01-01 00:00:00.000001 BC has "
                       "microseconds; CrateDB stores milliseconds"}  # fmt: skip
    assert expected[3][0] == epoch_ms(at(0).replace(year=2024, month=1, day=1))


async def test_time_24_00_is_stored_as_its_text_not_a_failed_run(pg_dsn: str) -> None:
    """time / timetz / time[] '24:00:00' reach CrateDB as text (not a failed run); re-run no-op."""
    await _source(pg_dsn, "tm time, tz timetz, ta time[]",
                  ["1, '24:00:00', '24:00:00+05:30', '{24:00:00,12:00:00}'",
                   "2, '23:59:59.999999', '12:00:00-15:59', NULL"])  # fmt: skip
    job = f"fid_{uuid.uuid4().hex[:8]}"
    async with CrateStandIn(StandInConfig()) as crate:
        spec = spec_of(_job(pg_dsn, crate.url, job))
        first = await run_job(spec, options=JobOptions(as_of=at(0)))
        assert (first.status, first.error, first.inserted, first.rejected) == (
            "SUCCEEDED", None, 2, 0)  # fmt: skip
        stored = await _stored(crate.url)
        assert {k: (r["tm"], r["tz"], r["ta"]) for k, r in stored.items()} == {
            1: ("24:00:00", "24:00:00+05:30", ["24:00:00", "12:00:00"]),
            2: ("23:59:59.999999", "12:00:00-15:59", None)}  # fmt: skip
        again = await run_job(spec, options=JobOptions(as_of=at(1)))
        assert (again.inserted, again.updated, again.expired) == (0, 0, 0)


@pytest.mark.parametrize("field", ["interval", "bit(2)", "tsvector"])
async def test_composite_asyncpg_cannot_read_fails_once_naming_it_not_a_connection(
    pg_dsn: str, field: str
) -> None:
    """A composite with a field asyncpg reads only as text: one line naming it, no retries."""
    await fetchval(pg_dsn, f"CREATE TYPE pair AS (n int, f {field})")
    await _source(pg_dsn, "p pair", ["1, NULL"])
    await fetchval(pg_dsn, "UPDATE src SET p = ROW(1, NULL)")
    async with CrateStandIn(StandInConfig()) as crate:
        with capture_logs() as logs:
            result = await run_job(spec_of(_job(pg_dsn, crate.url, "fidpair", "fail")),
                                   options=JobOptions(as_of=at(0)))  # fmt: skip
        assert crate.counters.bulk_items == 0
    assert result.status == "FAILED"
    assert [e for e in logs if e["event"] == "retrying"] == []
    error = result.error or ""
    assert "connection problem" not in error
    assert 'cannot decode type "public"."pair"' in error
    assert "cast the column in [source] query" in error


@pytest.mark.parametrize("kind", ["float8", "numeric"])
async def test_non_finite_key_rejects_are_recorded(pg_dsn: str, kind: str) -> None:
    """A -Infinity / Infinity / NaN key is rejected naming the column, and its reject recorded."""
    rows = ["1, '-Infinity', 'a'", "2, 'Infinity', 'b'", "3, 'NaN', 'c'", "4, 1.5, 'd'"]
    await _source(pg_dsn, f"k {kind} UNIQUE, v text", rows)
    job = f"fid_{uuid.uuid4().hex[:8]}"
    async with CrateStandIn(StandInConfig()) as crate:
        text = _job(pg_dsn, crate.url, job, key="k").replace("[scd]", '[scd]\nbusiness_key = ["k"]')
        result = await run_job(spec_of(text), options=JobOptions(as_of=at(0)))
        assert result.status == "SUCCEEDED", result.error
        assert (result.inserted, result.rejected) == (1, 3)
    reasons = await _rejects(pg_dsn, job)
    assert set(reasons) == {'{"k": "-Infinity"}', '{"k": "Infinity"}', '{"k": "NaN"}'}
    assert all(why.startswith("column k: ") for why in reasons.values())


async def test_bc_date_key_is_planned_and_stored_not_a_traceback(pg_dsn: str) -> None:
    """A date key with BC and infinite values, chunked: one chunk, BC keys stored, ±inf rejected."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("CREATE TABLE src (d date PRIMARY KEY, v int)")
        await conn.execute("INSERT INTO src SELECT '0100-01-01 BC'::date + i, i "
                           "FROM generate_series(1, 3000) i")  # fmt: skip
        await conn.execute("INSERT INTO src SELECT '2020-01-01'::date + i, i "
                           "FROM generate_series(1, 3000) i")  # fmt: skip
        await conn.execute("INSERT INTO src VALUES ('infinity', 1), ('-infinity', 2)")
        await conn.execute("ANALYZE src")
    finally:
        await conn.close()
    job = f"fid_{uuid.uuid4().hex[:8]}"
    async with CrateStandIn(StandInConfig()) as crate:
        text = _job(pg_dsn, crate.url, job, key="d").replace(
            "enabled = false", "chunk_size = 1000\nmin_rows_for_parallel = 0"
        )
        result = await run_job(spec_of(text), options=JobOptions(as_of=at(0)))
        assert result.status == "SUCCEEDED", result.error
        assert (result.inserted, result.rejected) == (6000, 2)
    assert set(await _rejects(pg_dsn, job)) == {'{"d": "infinity"}', '{"d": "-infinity"}'}


async def test_an_infinite_cursor_row_is_read_not_skipped(pg_dsn: str) -> None:
    """Incremental over a date cursor whose maximum is 'infinity': the row is read (rejected)."""
    await _source(pg_dsn, "c date", ["1, '2024-01-01'", "2, 'infinity'", "3, '9999-12-31'"])
    job = f"fid_{uuid.uuid4().hex[:8]}"
    async with CrateStandIn(StandInConfig()) as crate:
        text = _job(pg_dsn, crate.url, job)
        text = text.replace('key = ["id"]', 'key = ["id"]\nincremental = "c"')
        result = await run_job(spec_of(text), options=JobOptions(as_of=at(0)))
        assert result.status == "SUCCEEDED", result.error
        assert (result.rows_read, result.inserted, result.rejected) == (3, 2, 1)
    assert await _rejects(pg_dsn, job) == {
        '{"id": 2}': "column c: date 'infinity' has no CrateDB TIMESTAMP form (no infinity)"
    }


@pytest.mark.parametrize(
    ("sql_type", "sentinel"),
    [("date", "9999-12-31"), ("timestamp", "9999-12-31 23:59:59.999"), ("date", "0001-01-01")],
)
async def test_chunk_cuts_at_a_date_sentinel_split_source_and_target_alike(
    pg_dsn: str, sql_type: str, sentinel: str
) -> None:
    """Key (d, id), cuts inside 100 rows at d = 9999-12-31: a second run changes nothing."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(f"CREATE TABLE src (d {sql_type}, id int, val text, PRIMARY KEY "
                           "(d, id)); INSERT INTO src SELECT date '2024-01-01' + i, i, 'a' "
                           "FROM generate_series(1, 20) i;"
                           f"INSERT INTO src SELECT '{sentinel}', i, 'b' "
                           "FROM generate_series(100, 199) i; ANALYZE src")  # fmt: skip
    finally:
        await conn.close()
    job = f"fid_{uuid.uuid4().hex[:8]}"
    text = _job(pg_dsn, "CRATE", job).replace('key = ["id"]', 'key = ["d", "id"]')
    text = text.replace("type = 2", 'type = 2\ntracked = ["val"]\ndeletes = "expire"')
    parallel = "max_workers = 3\nchunk_size = 30\nmin_rows_for_parallel = 0"
    text = text.replace("enabled = false", parallel)
    async with CrateStandIn(StandInConfig()) as crate:
        spec = spec_of(text.replace("CRATE", crate.url))
        first = await run_job(spec, options=JobOptions(as_of=at(0)))
        assert (first.status, first.inserted, first.error) == ("SUCCEEDED", 120, None)
        assert first.chunks_total == 4  # cuts at (sentinel, 110), (sentinel, 140), ...
        again = await run_job(spec, options=JobOptions(as_of=at(1)))
        assert (again.status, again.error) == ("SUCCEEDED", None)
        assert (again.rows_read, again.inserted, again.expired) == (120, 0, 0)
        rows = await crate_rows(crate.url, "dw.fid")
    assert len(rows) == 120 and all(r["is_current"] for r in rows.values())
