"""One check shared by the Ray job tests: a job run elsewhere loads what a local run loads."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from async_etl.jobs.api import JobOptions, JobResult
from async_etl.jobs.runner import run_job
from async_etl.jobs.spec import JobSpec
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

RemoteRun = Callable[[JobSpec, JobOptions], Awaitable[JobResult]]


async def assert_same_as_local(dsn: str, seed: int, n_keys: int, remote: RemoteRun) -> None:
    """Three SCD2 runs (updates, deletes) of one job locally and through ``remote``: after
    each, the same counters and the same target rows."""
    cols = cols_of(2)
    local = spec_of(job_toml("local", dsn, "dw.local", workers=3, chunk_size=50))
    there = spec_of(job_toml("remote", dsn, "dw.remote", workers=3, chunk_size=50))
    for i, rows in enumerate(history(seed=seed, n_keys=n_keys, runs=3)):
        await load_source(dsn, rows)
        a = await run_job(local, options=JobOptions(as_of=at(i)))
        b = await remote(there, JobOptions(as_of=at(i)))
        assert a.status == b.status == "SUCCEEDED", (a.error, b.error)
        assert b.chunks_done == b.chunks_total == a.chunks_total > 1
        assert (b.rows_read, b.inserted, b.updated, b.expired) == (
            a.rows_read, a.inserted, a.updated, a.expired,
        )  # fmt: skip
        got = norm(await table_rows(dsn, "dw.remote"), cols)
        assert got == norm(await table_rows(dsn, "dw.local"), cols)
