"""Mapper jobs whose chunks run in Ray actors (a local in-process Ray): same target as local."""

from __future__ import annotations

from typing import Any

from async_etl.jobs.api import JobOptions
from async_etl.jobs.ray_chunks import RayChunks
from async_etl.jobs.runner import run_job
from tests.integration.jobs_helpers import (
    at,
    cols_of,
    history,
    job_toml,
    load_source,
    norm,
    spec_of,
    table_rows,
)


async def test_job_over_two_actors_equals_the_single_process_target(
    ray_local: Any, pg_dsn: str
) -> None:
    """SCD2 runs (updates, deletes) with chunks in 2 actors: target == the local run's."""
    cols = cols_of(2)
    states = history(seed=11, n_keys=600, runs=3)
    local = spec_of(job_toml("local", pg_dsn, "dw.local", workers=3, chunk_size=50))
    remote = spec_of(job_toml("remote", pg_dsn, "dw.remote", workers=3, chunk_size=50))
    executor = RayChunks("local", actors=2)
    try:
        for i, rows in enumerate(states):
            await load_source(pg_dsn, rows)
            a = await run_job(local, options=JobOptions(as_of=at(i)))
            b = await run_job(remote, options=JobOptions(as_of=at(i)), executor=executor)
            assert a.status == b.status == "SUCCEEDED", (a.error, b.error)
            assert b.chunks_done == b.chunks_total == a.chunks_total > 1
            assert (b.rows_read, b.inserted, b.updated, b.expired) == (
                a.rows_read, a.inserted, a.updated, a.expired,
            )  # fmt: skip
            got = norm(await table_rows(pg_dsn, "dw.remote"), cols)
            assert got == norm(await table_rows(pg_dsn, "dw.local"), cols)
        assert executor.reruns == 0
        assert len(executor.pids) == 2
    finally:
        await executor.aclose()
