"""`[source] incremental`: each run reads its cursor window only, and no row is ever lost."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from async_etl.core import scd_sql_pg as pg
from async_etl.core.retry import RetryPolicy
from async_etl.core.specs import ScdSpec
from async_etl.jobs.api import JobOptions, JobResult
from async_etl.jobs.runner import run_job
from async_etl.jobs.state import StateStore, with_store
from async_etl.testing.crate import CrateStandIn, StandInConfig
from async_etl.testing.pgproxy import Faults, PgProxy
from tests.integration.jobs_helpers import (
    at,
    fetchval,
    kill_at_gate,
    run_cli,
    spec_of,
    wait_committed,
    write,
)
from tests.integration.test_jobs_crate import crate_rows

COLUMNS = [("id", "integer"), ("val", "text"), ("v", "bigint")]


def inc_toml(name: str, dsn: str, *, kind: int = 1, cursor: str = "v", extra: str = "",
             target: str | None = None, workers: int = 3) -> str:  # fmt: skip
    """An incremental job over ``src.ev`` (key id, cursor ``cursor``) into ``dw.<name>``."""
    scd = 'type = 2\ntracked = ["val"]' if kind == 2 else "type = 1"
    state = f'[state]\nurl = "{dsn}"\n' if target else ""
    return f"""
name = "{name}"
[source]
url = "{dsn}"
query = "SELECT * FROM src.ev"
key = ["id"]
incremental = "{cursor}"
{extra}
[target]
url = "{target or dsn}"
table = "dw.{name}"
[scd]
{scd}
[parallel]
max_workers = {workers}
chunk_size = 40
min_rows_for_parallel = 0
{state}"""


async def execute(dsn: str, *statements: str, args: list[tuple[Any, ...]] | None = None) -> None:
    """Run statements on a fresh connection (the last one ``executemany`` over ``args``)."""
    conn = await asyncpg.connect(dsn)
    try:
        for i, st in enumerate(statements):
            if args is not None and i == len(statements) - 1:
                await conn.executemany(st, args)
            else:
                await conn.execute(st)
    finally:
        await conn.close()


async def make_source(dsn: str, n: int, cursor_type: str = "bigint") -> None:
    """``src.ev``: ids 1..n, ``val`` 'a<id>', cursor ``v`` = id (as ``cursor_type``)."""
    v = "i" if cursor_type == "bigint" else "timestamptz '2026-01-01' + i * interval '1 second'"
    await execute(
        dsn,
        "CREATE SCHEMA IF NOT EXISTS src",
        f"CREATE TABLE src.ev (id integer PRIMARY KEY, val text, v {cursor_type})",
        f"INSERT INTO src.ev SELECT i, 'a' || i, {v} FROM generate_series(1, {n}) i",
        "ANALYZE src.ev",
    )


async def current(dsn: str, table: str, kind: int = 1) -> dict[int, tuple[Any, Any]]:
    """The target's current rows: id -> (val, v)."""
    where = "WHERE is_current" if kind == 2 else ""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(f"SELECT id, val, v FROM {table} {where}")
    finally:
        await conn.close()
    return {r["id"]: (r["val"], r["v"]) for r in rows}


async def source(dsn: str) -> dict[int, tuple[Any, Any]]:
    """The source's rows: id -> (val, v)."""
    return await current(dsn, "src.ev")


async def window_rows(dsn: str, low: Any) -> int:
    """How many source rows a run starting at cursor ``low`` must read (``>=``, and NULLs)."""
    return int(await fetchval(dsn, "SELECT count(*) FROM src.ev WHERE v >= $1 OR v IS NULL", low))


async def run(text: str, day: int) -> JobResult:
    """Run the job at as-of ``at(day)``; it must succeed."""
    result = await run_job(spec_of(text), options=JobOptions(as_of=at(day)))
    assert result.status == "SUCCEEDED", result.error
    return result


async def stored_cursor(dsn: str, run_id: str) -> Any:
    """``async_etl_runs.cursor`` of a run (tagged JSON text)."""
    return await fetchval(dsn, "SELECT cursor::text FROM async_etl_runs WHERE run_id = $1", run_id)


async def slow_target(dsn: str, name: str, kind: int = 1) -> None:
    """Pre-create ``dw.<name>`` with a sleep per INSERT statement, so a run lasts a while."""
    spec = ScdSpec(type=2, business_key=("id",), tracked=("val",)) if kind == 2 else ScdSpec(
        type=1, business_key=("id",))  # fmt: skip
    cols = spec.resolve([n for n, _ in COLUMNS])
    statements = [st.text for st in pg.target_ddl(f"dw.{name}", COLUMNS, cols)]
    await execute(
        dsn,
        *statements,
        "CREATE OR REPLACE FUNCTION public.aetl_nap() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN PERFORM pg_sleep(0.15); RETURN NULL; END $$",
        f"CREATE TRIGGER nap BEFORE INSERT OR UPDATE ON dw.{name} FOR EACH STATEMENT "
        "EXECUTE FUNCTION public.aetl_nap()",
    )


async def test_a_run_reads_only_rows_from_the_committed_cursor_on(pg_dsn: str) -> None:
    """Run 2 reads exactly the rows with v >= run 1's max (plus NULLs) and ends equal to source."""
    await make_source(pg_dsn, 300)
    text = inc_toml("inc", pg_dsn, kind=2)
    first = await run(text, 0)
    assert first.rows_read == 300 and first.cursor == "300"
    assert await stored_cursor(pg_dsn, first.run_id) == '["int", "300"]'
    await execute(
        pg_dsn,
        "UPDATE src.ev SET val = val || 'x', v = 400 + id WHERE id % 30 = 0",
        "INSERT INTO src.ev SELECT i, 'new', 500 FROM generate_series(301, 305) i",
    )
    expected = await window_rows(pg_dsn, 300)
    top = await fetchval(pg_dsn, "SELECT max(v) FROM src.ev")
    second = await run(text, 1)
    assert second.rows_read == expected < 300
    assert (second.inserted, second.updated, second.expired) == (15, 0, 10)
    assert second.cursor == str(top)
    assert await current(pg_dsn, "dw.inc", kind=2) == await source(pg_dsn)


async def test_rows_committed_later_at_the_previous_maximum_are_loaded(pg_dsn: str) -> None:
    """Rows inserted between runs with a timestamp equal to the last maximum are not lost."""
    await make_source(pg_dsn, 120, cursor_type="timestamptz")
    text = inc_toml("edge", pg_dsn)
    first = await run(text, 0)
    top = await fetchval(pg_dsn, "SELECT max(v) FROM src.ev")
    assert first.cursor == str(top)
    await execute(
        pg_dsn,
        "INSERT INTO src.ev VALUES ($1, $2, $3)",
        args=[(1000 + i, "late", top) for i in range(3)],
    )
    second = await run(text, 1)
    assert second.rows_read == await window_rows(pg_dsn, top) == 4
    assert second.inserted == 3
    assert await current(pg_dsn, "dw.edge") == await source(pg_dsn)


@pytest.mark.parametrize("kind", [1, 2])
async def test_a_dropped_target_is_loaded_again_whole_not_from_the_cursor(
    pg_dsn: str, kind: int
) -> None:
    """The target dropped between runs: the next run reads every row, not only above the cursor."""
    await make_source(pg_dsn, 120)
    text = inc_toml("gone", pg_dsn, kind=kind)
    first = await run(text, 0)
    assert first.cursor == "120"
    await execute(pg_dsn, "DROP TABLE dw.gone",
                  "INSERT INTO src.ev VALUES (121, 'new', 121)")  # fmt: skip
    second = await run(text, 1)
    assert (second.rows_read, second.inserted, second.cursor) == (121, 121, "121")
    assert await current(pg_dsn, "dw.gone", kind=kind) == await source(pg_dsn)


async def test_rows_written_during_a_run_are_read_by_the_next(pg_dsn: str) -> None:
    """Inserts and updates landing mid-run, before and after the chunk reading them, all arrive."""
    await make_source(pg_dsn, 200)
    await slow_target(pg_dsn, "busy")
    text = inc_toml("busy", pg_dsn, workers=1)
    task = asyncio.create_task(run(text, 0))
    await wait_committed(pg_dsn, "busy", 1)
    # chunk 0 (ids from -inf) is committed, the last chunk (ids to +inf) is not read yet
    await execute(
        pg_dsn,
        "INSERT INTO src.ev VALUES (-1, 'early-range', 200), (999, 'late-range', 201)",
        "UPDATE src.ev SET val = 'changed', v = 202 WHERE id IN (2, 199)",
    )
    first = await task
    assert first.chunks_total > 2 and first.cursor == "200"  # the maximum when the run started
    second = await run(text, 1)
    assert second.rows_read == await window_rows(pg_dsn, 200)
    assert await current(pg_dsn, "dw.busy") == await source(pg_dsn)


async def test_null_cursors_are_read_by_every_run(pg_dsn: str) -> None:
    """Rows whose cursor is NULL are loaded, and re-read each run, so their changes arrive."""
    await make_source(pg_dsn, 100)
    await execute(pg_dsn, "UPDATE src.ev SET v = NULL WHERE id <= 5")
    text = inc_toml("nulls", pg_dsn)
    first = await run(text, 0)
    assert first.rows_read == 100 and first.cursor == "100"
    await execute(
        pg_dsn,
        "UPDATE src.ev SET val = 'edited' WHERE id = 3",
        "INSERT INTO src.ev VALUES (500, 'no cursor', NULL)",
    )
    second = await run(text, 1)
    assert second.rows_read == await window_rows(pg_dsn, 100) == 7
    assert (second.inserted, second.updated) == (1, 1)
    assert await current(pg_dsn, "dw.nulls") == await source(pg_dsn)


async def test_lookback_reads_rows_committed_below_the_cursor(pg_dsn: str) -> None:
    """With `lookback = 50` a row committed late with an older cursor value is still loaded."""
    await make_source(pg_dsn, 100)
    text = inc_toml("back", pg_dsn, extra="lookback = 50")
    assert (await run(text, 0)).cursor == "100"
    await execute(pg_dsn, "INSERT INTO src.ev VALUES (700, 'slow writer', 80)")
    second = await run(text, 1)
    assert second.rows_read == await window_rows(pg_dsn, 50)
    assert second.inserted == 1 and second.cursor == "100"
    assert await current(pg_dsn, "dw.back") == await source(pg_dsn)


async def test_sigkill_mid_run_keeps_the_cursor_and_resumes_its_window(
    pg_dsn: str, tmp_path: Path
) -> None:
    """SIGKILL mid-run: cursor kept; the resume reads the same window; the next run the rest."""
    await make_source(pg_dsn, 240)
    await slow_target(pg_dsn, "kill", kind=2)
    text = inc_toml("kill", pg_dsn, kind=2, workers=2)
    job = write(tmp_path, "kill.toml", text)
    await execute(pg_dsn, "DROP TRIGGER nap ON dw.kill")
    await run(text, 0)
    await execute(
        pg_dsn,
        "CREATE TRIGGER nap BEFORE INSERT OR UPDATE ON dw.kill FOR EACH STATEMENT "
        "EXECUTE FUNCTION public.aetl_nap()",
        "UPDATE src.ev SET val = 'b' || id, v = 300 + id",
    )
    await kill_at_gate(pg_dsn, "kill", 2, str(job), "--as-of", at(1).isoformat(),
                       "--log-format", "json")  # fmt: skip

    async def committed(store: StateStore) -> Any:
        return await store.committed_cursor("kill", "v")

    assert await with_store(pg_dsn, "test", committed) == 240  # not past the unfinished chunks
    await execute(pg_dsn, "INSERT INTO src.ev VALUES (900, 'after the kill', 9000)")
    code, out, err = await run_cli("run", str(job), "--log-format", "json")
    assert code == 0, err
    assert "SUCCEEDED" in out and "(resumed)" in out and "cursor 540" in out
    assert 900 not in await current(pg_dsn, "dw.kill", kind=2)  # above the resumed window
    assert await with_store(pg_dsn, "test", committed) == 540
    third = await run(text, 2)
    assert third.rows_read == await window_rows(pg_dsn, 540) == 2
    assert await current(pg_dsn, "dw.kill", kind=2) == await source(pg_dsn)


async def test_crate_target_reads_only_the_window(pg_dsn: str) -> None:
    """An incremental job into CrateDB reads the window only and checkpoints its cursor."""
    await make_source(pg_dsn, 150)
    async with CrateStandIn(StandInConfig(seed=3)) as crate:
        text = inc_toml("cr", pg_dsn, kind=2, target=crate.url)
        first = await run(text, 0)
        assert first.rows_read == 150 and first.cursor == "150"
        await execute(pg_dsn, "UPDATE src.ev SET val = 'z', v = 160 WHERE id IN (7, 77)")
        second = await run(text, 1)
        assert second.rows_read == await window_rows(pg_dsn, 150) == 3
        assert (second.inserted, second.expired) == (2, 2)
        rows = await crate_rows(crate.url, "dw.cr")
    got = {r["id"]: (r["val"], r["v"]) for r in rows if r["is_current"]}
    assert got == await source(pg_dsn)
    cursors = await fetchval(
        pg_dsn,
        "SELECT array_agg(DISTINCT c.cursor::text) FROM async_etl_chunks c "
        "JOIN async_etl_runs r USING (run_id) WHERE r.run_id = $1",
        second.run_id,
    )
    assert cursors == ['["int", "160"]']


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ('incremental = "v"', "[scd] deletes"),
        ('incremental = "nope"', "nope is not among the source columns"),
        ('incremental = "val"\nlookback = 5', "text column"),
    ],
)
async def test_bad_incremental_settings_exit_2_and_touch_nothing(
    pg_dsn: str, tmp_path: Path, change: str, needle: str
) -> None:
    """Deletes with incremental, an unknown cursor column, a text lookback: one line, exit 2."""
    await make_source(pg_dsn, 10)
    text = inc_toml("bad", pg_dsn, kind=2).replace('incremental = "v"', change)
    if "deletes" in needle:
        text = text.replace('tracked = ["val"]', 'tracked = ["val"]\ndeletes = "expire"')
    code, out, err = await run_cli("run", str(write(tmp_path, "bad.toml", text)))
    assert code == 2 and out == ""
    assert needle in err and len(err.strip().splitlines()) == 1
    assert await fetchval(pg_dsn, "SELECT to_regclass('async_etl_runs')") is None
    assert await fetchval(pg_dsn, "SELECT to_regclass('dw.bad')") is None


INCREMENTAL_STEPS = {
    "committed cursor": r"FROM async_etl_runs r WHERE r.job = \$1 AND r.plan -> 'cursor'",
    "cursor maximum": r'^SELECT MAX\(q\."v"\)',
    "window count": r'^SELECT COUNT\(\*\) FROM .* WHERE \(q\."v" IS NULL',
    "window read": r'^INSERT INTO "_async_etl_stage" .*SELECT \* FROM .*q\."v" >= \$\d',
    "checkpoint with cursor": r"INSERT INTO async_etl_chunks .*'COMMITTED'.*\$5::jsonb",
}


@pytest.mark.parametrize("step", list(INCREMENTAL_STEPS))
async def test_a_killed_connection_at_an_incremental_step_is_retried(
    pg_dsn: str, step: str
) -> None:
    """A connection killed while reading or committing the cursor is retried; nothing is lost."""
    await make_source(pg_dsn, 200)
    faults = Faults()
    async with PgProxy(pg_dsn, faults) as proxy:
        text = inc_toml("flaky", proxy.url)
        fast = JobOptions(retry=RetryPolicy(max_retries=6, base=0.01, cap=0.1))
        first = await run_job(spec_of(text), options=replace(fast, as_of=at(0)))
        assert first.status == "SUCCEEDED", first.error
        await execute(pg_dsn, "UPDATE src.ev SET val = 'k', v = 300 + id WHERE id % 7 = 0")
        faults.arm(INCREMENTAL_STEPS[step])
        second = await run_job(spec_of(text), options=replace(fast, as_of=at(1)))
        assert faults.kills == 1
    assert second.status == "SUCCEEDED", second.error
    assert second.rows_read == await window_rows(pg_dsn, 200)
    assert second.cursor == str(await fetchval(pg_dsn, "SELECT max(v) FROM src.ev"))
    assert await current(pg_dsn, "dw.flaky") == await source(pg_dsn)
