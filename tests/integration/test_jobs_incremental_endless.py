"""An incremental cursor at NaN or +infinity: the run that reaches it reads it, the next is refused.

PostgreSQL sorts NaN above every number and 'infinity' above every date or time, so a job whose
committed cursor is one of them can never read a row again; 9999-12-31 (read by asyncpg as the
same ``date.max``) is an ordinary value and runs on.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.jobs_helpers import fetchval, run_cli, write
from tests.integration.test_jobs_incremental import current, execute, inc_toml, run


async def make_source(dsn: str, sql_type: str, *values: str) -> None:
    """``src.ev``: ids 1.., ``val`` 'a<id>', cursor ``v`` of ``sql_type`` = each of ``values``."""
    rows = ", ".join(f"({i}, 'a{i}', {v}::{sql_type})" for i, v in enumerate(values, 1))
    await execute(
        dsn,
        "CREATE SCHEMA IF NOT EXISTS src",
        f"CREATE TABLE src.ev (id integer PRIMARY KEY, val text, v {sql_type})",
        f"INSERT INTO src.ev VALUES {rows}",
    )


async def add_row(dsn: str, sql_type: str, id_: int, value: str) -> None:
    """One more source row ``id_`` with cursor ``value``."""
    await execute(dsn, f"INSERT INTO src.ev VALUES ({id_}, 'a{id_}', {value}::{sql_type})")


async def run_count(dsn: str) -> int:
    """How many runs the state store holds."""
    return int(await fetchval(dsn, "SELECT count(*) FROM async_etl_runs"))


ENDLESS = [  # type, a row's cursor, the source's endless top, a later row's, how it is shown
    ("float8", "'1'", "'NaN'", "'5000'", "NaN"),
    ("float8", "'1'", "'Infinity'", "'5000'", "Infinity"),
    ("numeric", "'1'", "'NaN'", "'5000'", "NaN"),
    ("timestamptz", "'2026-01-01 00:00+00'", "'infinity'", "'2026-06-01 00:00+00'", "infinity"),
    ("timestamp", "'2026-01-01 00:00'", "'infinity'", "'2026-06-01 00:00'", "infinity"),
    ("date", "'2026-01-01'", "'infinity'", "'2026-06-01'", "infinity"),
]


@pytest.mark.parametrize(("sql_type", "low", "top", "later", "shown"), ENDLESS)
async def test_the_run_after_an_endless_cursor_is_refused_before_any_write(
    pg_dsn: str, tmp_path: Path, sql_type: str, low: str, top: str, later: str, shown: str
) -> None:
    """A NaN / +infinity cursor: run 1 reads it (and shows it); run 2 exits 2 in one line."""
    await make_source(pg_dsn, sql_type, low, top)
    text = inc_toml("endless", pg_dsn)
    first = await run(text, 0)
    assert (first.rows_read, first.inserted, first.cursor) == (2, 2, shown)
    await add_row(pg_dsn, sql_type, 3, later)
    job = write(tmp_path, "endless.toml", text)
    code, out, err = await run_cli("run", str(job))
    assert code == 2 and out == "", out
    assert len(err.strip().splitlines()) == 1, err
    assert f"job endless: [source] incremental: the committed cursor of v is {shown}," in err
    assert "run the job under a new name" in err
    assert await run_count(pg_dsn) == 1
    assert sorted(await current(pg_dsn, "dw.endless")) == [1, 2]


@pytest.mark.parametrize(
    ("sql_type", "sentinel", "later"),
    [
        ("date", "'9999-12-31'", "'9999-12-31'"),
        ("timestamptz", "'9999-12-31 23:59:59.999999+00'", "'2026-06-01 00:00+00'"),
    ],
)
async def test_a_9999_12_31_cursor_is_not_refused(
    pg_dsn: str, sql_type: str, sentinel: str, later: str
) -> None:
    """9999-12-31, read by asyncpg as infinity is (date.max), is a value: later runs succeed."""
    await make_source(pg_dsn, sql_type, "'2026-01-01'", sentinel)
    text = inc_toml("sentinel", pg_dsn)
    first = await run(text, 0)
    assert (first.rows_read, first.inserted) == (2, 2)
    await add_row(pg_dsn, sql_type, 3, later)
    second = await run(text, 1)
    assert second.cursor == first.cursor and first.cursor is not None
    assert first.cursor.startswith("9999-12-31")
    third = await run(text, 2)
    assert third.cursor == first.cursor and await run_count(pg_dsn) == 3


@pytest.mark.parametrize("sql_type", ["float8", "numeric"])
async def test_a_nan_arriving_above_a_committed_cursor_reads_every_row_below_it(
    pg_dsn: str, tmp_path: Path, sql_type: str
) -> None:
    """Cursor 2, then rows 400 and NaN: run 2 reads both (and commits NaN); run 3 is refused."""
    await make_source(pg_dsn, sql_type, "'1'", "'2'")
    text = inc_toml("late", pg_dsn)
    await run(text, 0)
    await add_row(pg_dsn, sql_type, 3, "'400'")
    await add_row(pg_dsn, sql_type, 4, "'NaN'")
    second = await run(text, 1)
    assert (second.rows_read, second.inserted) == (3, 2)
    assert sorted(await current(pg_dsn, "dw.late")) == [1, 2, 3, 4]
    code, out, err = await run_cli("run", str(write(tmp_path, "late.toml", text)))
    assert code == 2 and out == "" and "the committed cursor of v is NaN," in err


async def store_as_before_2b4cc23(dsn: str) -> None:
    """The job's stored windows as code before 2b4cc23 wrote them: no endless / finite key."""
    await execute(dsn, "UPDATE async_etl_runs SET plan = jsonb_set(plan, '{cursor}', "
                       "(plan -> 'cursor') - 'endless' - 'finite')")  # fmt: skip


OLD_INFINITY = [  # type, a row's cursor, a later row's, the cursor as asyncpg read infinity
    ("date", "'2026-01-01'", "'2026-06-01'", '["date", "9999-12-31"]'),
    (
        "timestamp",
        "'2026-01-01 00:00'",
        "'2026-06-01 00:00'",
        '["datetime", "9999-12-31T23:59:59.999999"]',
    ),
    (
        "timestamptz",
        "'2026-01-01 00:00+00'",
        "'2026-06-01 00:00+00'",
        '["datetime", "9999-12-31T23:59:59.999999"]',  # asyncpg: infinity is naive
    ),
]


@pytest.mark.parametrize(("sql_type", "low", "later", "stored"), OLD_INFINITY)
async def test_an_infinity_committed_before_its_text_was_kept_is_refused(
    pg_dsn: str, tmp_path: Path, sql_type: str, low: str, later: str, stored: str
) -> None:
    """An 'infinity' cursor stored as 9999-12-31 by older code: the next run exits 2, one line."""
    await make_source(pg_dsn, sql_type, low, "'infinity'")
    text = inc_toml("old_inf", pg_dsn)
    await run(text, 0)
    await store_as_before_2b4cc23(pg_dsn)
    window = "SELECT plan -> 'cursor' -> 'high' FROM async_etl_runs"
    assert await fetchval(pg_dsn, f"SELECT ({window})::text") == stored
    assert "endless" not in await fetchval(pg_dsn, "SELECT (plan -> 'cursor')::text FROM "
                                                   "async_etl_runs")  # fmt: skip
    await add_row(pg_dsn, sql_type, 3, later)
    code, out, err = await run_cli("run", str(write(tmp_path, "old_inf.toml", text)))
    assert code == 2 and out == "", (code, out, err)
    assert len(err.strip().splitlines()) == 1, err
    assert "job old_inf: [source] incremental: the committed cursor of v is infinity," in err
    assert "run the job under a new name" in err
    assert await run_count(pg_dsn) == 1


@pytest.mark.parametrize(
    ("sql_type", "sentinel"),
    [("date", "'9999-12-31'"), ("timestamp", "'9999-12-31 23:59:59.999999'"),
     ("timestamptz", "'9999-12-31 23:59:59.999999+00'")],
)  # fmt: skip
async def test_a_real_9999_12_31_committed_before_its_text_was_kept_runs_on(
    pg_dsn: str, sql_type: str, sentinel: str
) -> None:
    """The same stored cursor from a real 9999-12-31 (a source row holds it): later runs read."""
    await make_source(pg_dsn, sql_type, "'2026-01-01'", sentinel)
    text = inc_toml("old_max", pg_dsn)
    first = await run(text, 0)
    await store_as_before_2b4cc23(pg_dsn)
    await add_row(pg_dsn, sql_type, 3, sentinel)
    second = await run(text, 1)
    assert (second.rows_read, second.inserted, second.cursor) == (2, 1, first.cursor)
    assert sorted(await current(pg_dsn, "dw.old_max")) == [1, 2, 3]
