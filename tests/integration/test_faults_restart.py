"""The whole PostgreSQL server restarts in the middle of a job: the job retries and converges.

A private embedded server (not the shared test server) is restarted with ``pg_ctl restart -m
fast`` while chunks are committing; every session ends (57P01) and connecting fails until the
server is back.  Skipped where no embedded server can start.
"""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest
from structlog.testing import capture_logs

from async_etl.core.retry import RetryPolicy
from async_etl.drivers.postgres_embedded import EmbeddedServer, embedded_server
from async_etl.errors import ConfigError
from async_etl.jobs.api import JobOptions, JobResult
from async_etl.jobs.runner import run_job
from tests.integration.jobs_helpers import (
    at,
    cols_of,
    history,
    job_toml,
    load_source,
    norm,
    reference,
    slow_target,
    spec_of,
    table_rows,
    wait_committed,
)

pytestmark = pytest.mark.timeout(120)

PATIENT = RetryPolicy(max_retries=20, base=0.1, cap=1.0)
"""Enough retries, on average ~10 s of backoff, to outlast a restart."""


@pytest.fixture
def server() -> Iterator[EmbeddedServer]:
    """A private embedded PostgreSQL this test may restart."""
    try:
        with embedded_server() as started:
            yield started
    except ConfigError as exc:
        pytest.skip(f"no embedded PostgreSQL here: {exc.message}")


async def test_job_survives_a_server_restart_mid_run(server: EmbeddedServer) -> None:
    """pg_ctl restart while chunks commit: retries ride it out and the target equals the model."""
    dsn, cols = server.dsn, cols_of(2)
    states = history(seed=13, n_keys=1000, runs=2)
    await load_source(dsn, states[0])
    spec = spec_of(job_toml("rs", dsn, "dw.t", chunk_size=40, workers=2))
    first = await run_job(spec, options=JobOptions(as_of=at(0), retry=PATIENT))
    assert first.status == "SUCCEEDED", first.error
    await load_source(dsn, states[1])
    await slow_target(dsn, "dw.t", sleep_s=0.1)
    results: list[JobResult] = []

    async def second_run() -> None:
        results.append(await run_job(spec, options=JobOptions(as_of=at(1), retry=PATIENT)))

    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            tg.start_soon(second_run)
            await wait_committed(dsn, "rs", 2)
            await anyio.to_thread.run_sync(server.restart)
    assert results[0].status == "SUCCEEDED", results[0].error
    assert any(e["event"] == "retrying" for e in logs)
    assert norm(await table_rows(dsn, "dw.t"), cols) == norm(reference(states, cols), cols)
