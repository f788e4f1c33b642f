"""Mapper jobs on a real PostgreSQL: SCD results against the pure model, parallel vs sequential."""

from __future__ import annotations

import pytest

from async_etl.core.scd import history_problems
from async_etl.jobs.api import JobOptions
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
)
from tests.integration.pg_activity import peak_connections


@pytest.mark.parametrize("kind", [2, 1])
async def test_runs_match_reference_parallel_and_sequential(pg_dsn: str, kind: int) -> None:
    """Several runs (updates, deletes, resurrections, NULLs, composite keys): target == model."""
    cols = cols_of(kind)
    states = history(seed=kind, n_keys=900, runs=4)
    par = spec_of(job_toml("par", pg_dsn, "dw.par", kind=kind, workers=3, chunk_size=60))
    seq = spec_of(job_toml("seq", pg_dsn, "dw.seq", kind=kind, parallel=False, chunk_size=60))
    for i, rows in enumerate(states):
        await load_source(pg_dsn, rows)
        for spec in (par, seq):
            result = await run_job(spec, options=JobOptions(as_of=at(i)))
            assert result.status == "SUCCEEDED", result.error
            assert result.rows_read == len(rows)
            assert result.chunks_done == result.chunks_total > 1
        model = reference(states[: i + 1], cols)
        got_par = await table_rows(pg_dsn, "dw.par")
        assert norm(got_par, cols) == norm(model, cols)
        assert norm(await table_rows(pg_dsn, "dw.seq"), cols) == norm(got_par, cols)
        if kind == 2:
            assert history_problems(got_par, cols) == []
    again = await run_job(par, options=JobOptions(as_of=at(len(states) - 1)))
    assert again.status == "SUCCEEDED"
    assert (again.inserted, again.updated, again.expired, again.deleted) == (0, 0, 0, 0)


async def test_peak_connections_within_budget(pg_dsn: str) -> None:
    """Sampling pg_stat_activity during a parallel run: at most max_workers + 2 connections."""
    workers = 3
    await load_source(pg_dsn, history(seed=5, n_keys=1200, runs=1)[0])
    await slow_target(pg_dsn, "dw.dim", sleep_s=0.01)
    spec = spec_of(job_toml("peak", pg_dsn, "dw.dim", workers=workers, chunk_size=40))
    async with peak_connections(pg_dsn, every=0.002) as peak:
        result = await run_job(spec)
    assert result.status == "SUCCEEDED", result.error
    assert result.chunks_total >= 10
    assert workers <= peak.value <= workers + 2
    assert result.max_connections is not None
    assert max(result.max_connections.values()) <= workers + 2
