"""``async-etl stop JOB`` while the job is still starting (no run recorded yet) stops it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg

from tests.integration.jobs_helpers import fetchval, run_cli, start_cli, write
from tests.integration.test_jobs_incremental import execute

JOB = """
name = "early"
[source]
url = "{dsn}"
table = "src"
key = ["id"]
[target]
url = "{dsn}"
table = "dim"
[state]
url = "{dsn}"
[scd]
type = 1
[parallel]
enabled = true
max_workers = 2
chunk_size = 10
min_rows_for_parallel = 0
"""


async def wait_for_lock_waiter(dsn: str, timeout: float = 60) -> None:
    """Wait until a backend of job ``early`` waits on a lock (it is starting, blocked)."""
    sql = (
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND application_name LIKE 'async-etl:early%'"
    )
    deadline = asyncio.get_running_loop().time() + timeout
    while not await fetchval(dsn, sql):  # a new transaction each time: a fresh view
        assert asyncio.get_running_loop().time() < deadline, "the job never blocked"
        await asyncio.sleep(0.05)


async def test_stop_while_the_job_plans_stops_it_before_any_chunk(
    pg_dsn: str, tmp_path: Path
) -> None:
    """status shows a job in preflight (source locked); stop stops it: STOPPED, no chunk."""
    await execute(
        pg_dsn,
        "CREATE TABLE src (id int PRIMARY KEY, v text)",
        "INSERT INTO src SELECT i, 'v' || i FROM generate_series(1, 100) i",
        "ANALYZE src",
    )
    job = write(tmp_path, "early.toml", JOB.format(dsn=pg_dsn))
    await run_cli("check", str(job))  # creates nothing; makes sure the job file is sound
    locker = await asyncpg.connect(pg_dsn)
    tx = locker.transaction()
    await tx.start()
    await locker.execute("LOCK TABLE src IN ACCESS EXCLUSIVE MODE")
    proc = start_cli("run", str(job), "--log-format", "json")
    try:
        await wait_for_lock_waiter(pg_dsn)
        code, out, err = await run_cli("status", "--state", pg_dsn)
        assert code == 0, err
        assert "early: starting (preflight / planning; no run recorded yet)" in out
        code, out, err = await run_cli("stop", "early", "--state", pg_dsn)
        assert code == 0, err
        assert "stop requested for job early (still starting)" in out
    finally:
        await tx.rollback()
        await locker.close()
        _, run_err = await asyncio.to_thread(proc.communicate, timeout=60)
    assert proc.returncode == 3, run_err
    status = await fetchval(pg_dsn, "SELECT status FROM async_etl_runs WHERE job = 'early'")
    assert status == "STOPPED"
    done = await fetchval(
        pg_dsn, "SELECT count(*) FROM async_etl_chunks WHERE status = 'COMMITTED'"
    )
    assert done == 0
    leftover = await fetchval(pg_dsn, "SELECT count(*) FROM async_etl_stop_requests")
    assert leftover == 0
