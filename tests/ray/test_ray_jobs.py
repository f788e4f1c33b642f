"""Mapper jobs whose chunks run in Ray actors (a local in-process Ray): same target as local."""

from __future__ import annotations

from typing import Any

from async_etl.jobs.api import JobOptions, JobResult
from async_etl.jobs.ray_chunks import RayChunks
from async_etl.jobs.runner import run_job
from async_etl.jobs.spec import JobSpec
from tests.ray.same_target import assert_same_as_local


async def test_job_over_two_actors_equals_the_single_process_target(
    ray_local: Any, pg_dsn: str
) -> None:
    """SCD2 runs (updates, deletes) with chunks in 2 actors: target == the local run's."""
    executor = RayChunks("local", actors=2)

    async def remote(spec: JobSpec, options: JobOptions) -> JobResult:
        return await run_job(spec, options=options, executor=executor)

    try:
        await assert_same_as_local(pg_dsn, 11, 600, remote)
        assert executor.reruns == 0
        assert len(executor.pids) == 2
    finally:
        await executor.aclose()
