"""A cancelled ``run_job``: budget, sessions, checkpoints and counters stay consistent."""

from __future__ import annotations

import anyio

from async_etl.jobs.api import JobOptions, Progress
from async_etl.jobs.budget import LimiterBudget
from async_etl.jobs.runner import run_job
from tests.integration.jobs_helpers import (
    at,
    cols_of,
    fetchval,
    history,
    job_toml,
    load_source,
    norm,
    reference,
    slow_target,
    spec_of,
    table_rows,
)
from tests.integration.pg_activity import open_connections


async def test_a_cancelled_run_job_leaves_pools_checkpoints_and_counters_consistent(
    pg_dsn: str,
) -> None:
    """Cancelled mid-chunks: STOPPED, tokens and sessions back, target == committed chunks."""
    cols = cols_of(2)
    states = history(seed=21, n_keys=1500, runs=1)
    await load_source(pg_dsn, states[0])
    await slow_target(pg_dsn, "dw.dim", sleep_s=0.15)  # chunks last long enough to cancel in
    spec = spec_of(job_toml("cancelme", pg_dsn, "dw.dim", chunk_size=40))
    budget = LimiterBudget(5)
    seen: list[Progress] = []
    with anyio.CancelScope() as scope:

        def on_progress(p: Progress) -> None:
            seen.append(p)
            if p.chunks_done >= 3:
                scope.cancel()

        await run_job(spec, options=JobOptions(as_of=at(0)), budget=budget, on_progress=on_progress)
    assert scope.cancelled_caught and seen[-1].chunks_done >= 3
    assert budget.limiter(pg_dsn).borrowed_tokens == 0  # every budget token given back
    assert await open_connections(pg_dsn) == 0  # and every connection closed
    status = await fetchval(pg_dsn, "SELECT status FROM async_etl_runs")
    assert status == "STOPPED"
    done = int(await fetchval(pg_dsn, "SELECT count(*) FROM async_etl_chunks "
                              "WHERE status = 'COMMITTED'"))  # fmt: skip
    total = int(await fetchval(pg_dsn, "SELECT count(*) FROM async_etl_chunks"))
    assert 3 <= done < total
    committed_rows = await fetchval(
        pg_dsn, "SELECT coalesce(sum(rows), 0) FROM async_etl_chunks WHERE status = 'COMMITTED'"
    )
    assert await fetchval(pg_dsn, "SELECT count(*) FROM dw.dim") == committed_rows > 0
    result = await run_job(spec, budget=budget)
    assert result.status == "SUCCEEDED" and result.resumed and result.as_of == at(0)
    assert result.chunks_done == total and budget.limiter(pg_dsn).borrowed_tokens == 0
    got = await table_rows(pg_dsn, "dw.dim")
    assert norm(got, cols) == norm(reference(states, cols), cols)
