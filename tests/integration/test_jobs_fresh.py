"""`--fresh` abandons the unfinished run for good: later runs never resume a run older than the
job's latest one."""

from __future__ import annotations

import asyncpg

from async_etl.jobs.api import JobOptions
from async_etl.jobs.runner import run_job
from tests.integration.jobs_helpers import at, spec_of

JOB = """
name = "fr"
[source]
url = "{dsn}"
table = "src"
key = ["id"]
[target]
url = "{dsn}"
table = "dim"
[scd]
type = 2
[parallel]
enabled = true
max_workers = 2
chunk_size = 10
min_rows_for_parallel = 0
"""


async def test_a_run_after_a_fresh_success_does_not_resume_the_older_failed_run(
    pg_dsn: str,
) -> None:
    """FAILED run, then a --fresh run SUCCEEDS: the next run is new and writes nothing."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("CREATE TABLE src (id int PRIMARY KEY, v int)")
        await conn.execute("INSERT INTO src SELECT i, i FROM generate_series(1, 60) i")
        await conn.execute("UPDATE src SET v = -1 WHERE id = 45")
        await conn.execute(
            "CREATE TABLE dim (id int NOT NULL, v int CHECK (v > 0), valid_from timestamptz "
            "NOT NULL, valid_to timestamptz, is_current boolean NOT NULL DEFAULT true)"
        )
        spec = spec_of(JOB.format(dsn=pg_dsn))
        failed = await run_job(spec, options=JobOptions(as_of=at(0)))
        assert failed.status == "FAILED"
        await conn.execute("UPDATE src SET v = 45 WHERE id = 45")
        fresh = await run_job(spec, options=JobOptions(as_of=at(1), fresh=True))
        assert fresh.status == "SUCCEEDED", fresh.error
        after = await run_job(spec, options=JobOptions(as_of=at(2)))
        assert after.status == "SUCCEEDED", after.error
        assert after.run_id not in (failed.run_id, fresh.run_id) and not after.resumed
        assert (after.inserted, after.updated, after.expired) == (0, 0, 0)
        current = await conn.fetchval("SELECT count(*) FROM dim WHERE is_current")
        assert current == await conn.fetchval("SELECT count(*) FROM src") == 60
    finally:
        await conn.close()
