"""The Python API: run_job / run_plan with ray=, from code, over a local in-process Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from async_etl import run_job, run_plan
from async_etl.errors import ConfigError
from async_etl.jobs.ray_chunks import RayChunks
from tests.integration.jobs_helpers import (
    at,
    cols_of,
    history,
    job_toml,
    load_source,
    norm,
    reference,
    spec_of,
    table_rows,
)


async def test_run_job_with_a_ray_executor_object_matches_the_model(
    ray_local: Any, pg_dsn: str
) -> None:
    """run_job(ray=RayChunks(...)): chunks in 2 actors, target == the pure model."""
    rows = history(seed=21, n_keys=400, runs=1)[0]
    await load_source(pg_dsn, rows)
    spec = spec_of(job_toml("api", pg_dsn, "dw.api", workers=2, chunk_size=50))
    executor = RayChunks("local", actors=2)
    try:
        result = await run_job(spec, as_of=at(0), ray=executor)
    finally:
        await executor.aclose()
    assert result.status == "SUCCEEDED", result.error
    assert result.chunks_done == result.chunks_total > 1
    assert len(executor.pids) == 2
    cols = cols_of(2)
    got = norm(await table_rows(pg_dsn, "dw.api"), cols)
    assert got == norm(reference([rows], cols), cols)


async def test_run_job_with_a_ray_address_runs_and_stops_its_actors(
    ray_local: Any, pg_dsn: str
) -> None:
    """run_job(ray="local"): the job succeeds with the same rows read as the source holds."""
    rows = history(seed=22, n_keys=300, runs=1)[0]
    await load_source(pg_dsn, rows)
    spec = spec_of(job_toml("api2", pg_dsn, "dw.api2", workers=2, chunk_size=60))
    result = await run_job(spec, as_of=at(0), ray="local", ray_actors=2)
    assert result.status == "SUCCEEDED", result.error
    assert result.rows_read == len(rows)


async def test_run_plan_with_an_unreachable_ray_address_is_a_config_error(
    tmp_path: Path, pg_dsn: str
) -> None:
    """run_plan(ray=closed address): one-line ConfigError before any job runs."""
    plan = {"name": "p", "state": pg_dsn, "jobs": [{"kind": "sleep", "name": "nap"}]}
    with pytest.raises(ConfigError, match=r"--ray 127\.0\.0\.1:1: no Ray cluster reachable"):
        await run_plan(plan, ray="127.0.0.1:1", base_dir=tmp_path)


async def test_run_job_with_fewer_than_one_actor_is_a_config_error(pg_dsn: str) -> None:
    """run_job(ray=..., ray_actors=0): one-line ConfigError before any cluster is joined."""
    spec = spec_of(job_toml("api0", pg_dsn, "dw.api0", workers=2, chunk_size=60))
    with pytest.raises(ConfigError, match=r"must be >= 1, got 0"):
        await run_job(spec, as_of=at(0), ray="127.0.0.1:1", ray_actors=0)


async def test_run_plan_with_a_ray_address_runs_its_jobs_in_actors(
    ray_local: Any, tmp_path: Path, pg_dsn: str
) -> None:
    """run_plan(ray="local"): the plan's mapper job runs in an actor and loads its target."""
    rows = history(seed=23, n_keys=200, runs=1)[0]
    await load_source(pg_dsn, rows)
    (tmp_path / "job.toml").write_text(job_toml("api3", pg_dsn, "dw.api3", chunk_size=60))
    plan = {"name": "rayapi", "state": pg_dsn, "jobs": [{"file": "job.toml"}]}
    outcome = await run_plan(plan, ray="local", ray_actors=1, base_dir=tmp_path)
    assert outcome.status == "SUCCEEDED"
    assert outcome.jobs["api3"].rows == len(rows)
    assert len(await table_rows(pg_dsn, "dw.api3")) == len(rows)
