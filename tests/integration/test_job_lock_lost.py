"""A run that lost its job lock to another run commits no more chunks (target apart from state).

With the state store in another database than the target, a chunk's checkpoint is written after
its own commit, through the state connection.  When that connection is cut, the session lock on
the job goes with it; another run can take it and resume the run, loading the chunks that were
in flight again.  The run that lost the lock must stop at once: its chunks in flight roll back.
"""

from __future__ import annotations

import anyio
import asyncpg

from async_etl.jobs.api import JobOptions, JobResult
from async_etl.jobs.runner import run_job
from tests.databases import fresh_database
from tests.integration.jobs_helpers import (
    at,
    fetchval,
    history,
    job_toml,
    load_source,
    slow_target,
    spec_of,
    wait_committed,
)

TAKE_JOB_LOCK = "SELECT pg_advisory_lock(hashtextextended('async-etl job:' || $1, 0))"
"""The job lock a run holds (``jobs.state``), taken the way a second run would, waiting."""


async def test_a_run_that_lost_its_lock_to_another_commits_no_chunk_in_flight(
    pg_dsn: str, pg_server_dsn: str
) -> None:
    """State connection cut, the job lock taken meanwhile: the chunk in flight rolls back."""
    await load_source(pg_dsn, history(seed=5, n_keys=240, runs=1)[0])
    async with fresh_database(pg_server_dsn) as target:
        await slow_target(target, "dw.dim", kind=1, sleep_s=3.0)  # each chunk naps 3 s
        text = job_toml("lost", pg_dsn, "dw.dim", kind=1, workers=1, chunk_size=40)
        text = text.replace(f'[target]\nurl = "{pg_dsn}"', f'[target]\nurl = "{target}"')
        spec = spec_of(text + f'[state]\nurl = "{pg_dsn}"\n')
        done: list[JobResult] = []

        async def first_run() -> None:
            done.append(await run_job(spec, options=JobOptions(as_of=at(0))))

        second = await asyncpg.connect(pg_dsn)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(first_run)
                await wait_committed(pg_dsn, "lost", 1, timeout=60)  # the next chunk naps now
                pid = await fetchval(
                    pg_dsn,
                    "SELECT pid FROM pg_stat_activity WHERE application_name = $1",
                    "async-etl:lost:state",
                )
                await second.fetchval("SELECT pg_terminate_backend($1, 10000)", pid)
                await second.fetchval(TAKE_JOB_LOCK, "lost")  # a second run takes the job
            loaded = await fetchval(target, "SELECT count(*) FROM dw.dim")
            checkpointed = await fetchval(
                pg_dsn, "SELECT coalesce(sum(rows), 0) FROM async_etl_chunks "
                "WHERE status = 'COMMITTED'"
            )  # fmt: skip
        finally:
            await second.close()
    (result,) = done
    assert result.status == "FAILED"
    assert result.error is not None and "lost its lock" in result.error
    assert "\n" not in result.error
    # every row in the target is a checkpointed chunk's: the second run loads none twice
    assert loaded == checkpointed > 0
