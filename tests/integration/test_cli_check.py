"""`async-etl check`: a dry run that explains a job or a plan and writes nothing."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path
from typing import Any

import asyncpg

from tests.integration.jobs_helpers import (
    cli,
    history,
    job_toml,
    load_source,
    run_cli,
    write,
)

STATS = (
    "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables "
    "ORDER BY schemaname, relname"
)
TABLES = (
    "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n "
    "ON n.oid = c.relnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1"
)


async def footprint(dsn: str) -> tuple[list[Any], list[Any], int]:
    """Per-table write counters, every relation, and the number of recorded runs."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        stats = [tuple(r) for r in await conn.fetch(STATS)]
        tables = [r[0] for r in await conn.fetch(TABLES)]
        runs = 0
        if await conn.fetchval("SELECT to_regclass('async_etl_runs')") is not None:
            runs = int(await conn.fetchval("SELECT count(*) FROM async_etl_runs"))
    finally:
        await conn.close()
    return stats, tables, runs


async def test_check_job_prints_plan_and_sql_and_writes_nothing(
    pg_dsn: str, tmp_path: Path
) -> None:
    """Before and after a first run: check exits 0, prints chunks and SQL, changes nothing."""
    (rows,) = history(seed=3, n_keys=600, runs=1)
    await load_source(pg_dsn, rows)
    path = write(tmp_path, "c.toml", job_toml("c", pg_dsn, "dw.c", chunk_size=100))
    for ran_before in (False, True):
        if ran_before:
            assert (await run_cli("run", str(path)))[0] == 0
        before = await footprint(pg_dsn)
        code, out, err = await run_cli("check", str(path))
        assert code == 0, err
        assert await footprint(pg_dsn) == before
        chunks = [line for line in out.splitlines() if line.startswith("  chunk ")]
        assert len(chunks) >= 3 and out.count("FROM src.t") == len(chunks)
        if ran_before:  # the target exists: chunks merge into it
            assert 'INSERT INTO "dw"."c"' in out and "mode scd2," in out
        else:  # the initial load builds the absent target as a full refresh, as a run would
            assert "mode full_refresh (a scd2 job whose target does not exist yet" in out
            assert 'COPY "dw"."c_etl_new"' in out and 'INSERT INTO "dw"."c"' not in out
            assert 'ALTER TABLE "dw"."c_etl_new" RENAME TO "c"' in out
        assert out.rstrip().endswith("check: OK, nothing was written")
    assert before[2] == 1  # the one real run, and no run recorded by check


async def test_check_full_refresh_shows_the_swap(pg_dsn: str, tmp_path: Path) -> None:
    """A full refresh's dry run names the new table and the swap that ends the run."""
    await load_source(pg_dsn, history(seed=4, n_keys=90, runs=1)[0])
    text = job_toml("f", pg_dsn, "dw.f", kind=1, extra='mode = "full_refresh"')
    code, out, err = await run_cli("check", str(write(tmp_path, "f.toml", text)))
    assert code == 0, err
    assert '"dw"."f_etl_new"' in out
    assert 'ALTER TABLE "dw"."f_etl_new" RENAME TO "f"' in out


async def test_check_plan_prints_order_and_critical_path(pg_dsn: str, tmp_path: Path) -> None:
    """A plan's check lists every job, the start order and the longest chain by rows."""
    await load_source(pg_dsn, history(seed=5, n_keys=300, runs=1)[0])
    (tmp_path / "jobs").mkdir()
    for name in ("a", "b", "c"):
        write(tmp_path / "jobs", f"{name}.toml", job_toml(name, pg_dsn, f"dw.{name}"))
    plan = (
        f'name = "p"\nstate = "{pg_dsn}"\n'
        '[[jobs]]\nfile = "jobs/a.toml"\n'
        '[[jobs]]\nfile = "jobs/b.toml"\ndepends_on = ["a"]\n'
        '[[jobs]]\nfile = "jobs/c.toml"\n'
    )
    before = await footprint(pg_dsn)
    code, out, err = await run_cli("check", str(write(tmp_path, "plan.toml", plan)))
    assert code == 0, err
    assert await footprint(pg_dsn) == before
    assert [line.split(":")[0] for line in out.splitlines() if line.startswith("job ")] == [
        "job a",
        "job b",
        "job c",
    ]
    order = next(line for line in out.splitlines() if line.startswith("order: "))
    assert order.index("a") < order.index("b")
    assert "critical path guess (by estimated rows): a -> b" in out


async def test_check_bad_job_is_one_line_exit_2(pg_dsn: str, tmp_path: Path) -> None:
    """An unknown key column: exit 2 and one line on stderr, nothing on stdout."""
    await load_source(pg_dsn, history(seed=6, n_keys=30, runs=1)[0])
    text = job_toml("x", pg_dsn, "dw.x").replace('key = ["a", "b"]', 'key = ["zz"]')
    text = text.replace("[scd]", '[scd]\nbusiness_key = ["zz"]')
    code, out, err = await run_cli("check", str(write(tmp_path, "x.toml", text)))
    assert code == 2
    assert err.count("\n") == 1 and "zz" in err and out == ""


async def test_check_dash_reads_the_job_from_stdin_as_run_does(pg_dsn: str) -> None:
    """`check -` explains the job piped in (it said "cannot read it: '-'"); a plan is one line."""
    await load_source(pg_dsn, history(seed=7, n_keys=60, runs=1)[0])
    text = job_toml("s", pg_dsn, "dw.s", chunk_size=20)

    def check(stdin: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(cli("check", "-"), input=stdin, capture_output=True, text=True,
                              env=dict(os.environ), timeout=60)  # fmt: skip

    before = await footprint(pg_dsn)
    done = await asyncio.to_thread(check, text)
    assert done.returncode == 0, done.stderr
    assert "job s" in done.stdout and done.stdout.rstrip().endswith("nothing was written")
    assert await footprint(pg_dsn) == before
    plan = await asyncio.to_thread(check, '[[jobs]]\nname = "a"\nfile = "a.toml"\n')
    assert plan.returncode == 2 and plan.stderr.count("\n") == 1, plan.stderr
    assert "a plan cannot come from stdin" in plan.stderr


def test_orchestrate_dash_says_a_plan_cannot_come_from_stdin() -> None:
    """`orchestrate -` is one line saying why, as `check -` (it said "No such file ... '-'")."""
    plan = '[[jobs]]\nfile = "a.toml"\n'
    done = subprocess.run(cli("orchestrate", "-"), input=plan, capture_output=True, text=True,
                          env=dict(os.environ), timeout=60)  # fmt: skip
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "orchestrate -: a plan cannot come from stdin" in done.stderr


async def test_check_plan_refuses_a_budget_too_small_for_a_job(pg_dsn: str, tmp_path: Path) -> None:
    """A [budgets] limit below a job's minimum: check exits 2 in one line, as orchestrate does."""
    await load_source(pg_dsn, history(seed=7, n_keys=30, runs=1)[0])
    write(tmp_path, "a.toml", job_toml("a", pg_dsn, "dw.a"))
    plan = f'name = "p"\nstate = "{pg_dsn}"\n[budgets]\n"{pg_dsn}" = 1\n[[jobs]]\nfile = "a.toml"\n'
    path = str(write(tmp_path, "plan.toml", plan))
    for command in ("check", "orchestrate"):
        code, out, err = await run_cli(command, path)
        assert code == 2 and out == "", (command, out, err)
        assert err.count("\n") == 1 and "needs at least 2 connections" in err, (command, err)
