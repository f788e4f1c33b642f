"""An orchestrated plan whose jobs run their chunks in Ray actors: global_max still holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg

from async_etl.jobs.ray_chunks import ray_job_runner
from async_etl.orchestrator import Orchestrator, load_plan
from tests.integration.test_orch_mapper_e2e import JOB, seed
from tests.integration.test_orch_processes import job_rows, max_overlap

JOBS = {
    "copy_a": "SELECT id, customer_id, amount FROM src.orders",
    "copy_b": "SELECT id, customer_id, amount FROM src.orders",
    "dim": "SELECT id, name, city FROM src.customers",
}


def _plan(tmp_path: Path, dsn: str) -> Path:
    (tmp_path / "jobs").mkdir()
    body = [f'name = "rayplan"\nstate = "{dsn}"\nlocal_max = 3\nglobal_max = 1\n']
    for name, query in JOBS.items():
        (tmp_path / "jobs" / f"{name}.toml").write_text(JOB.format(name=name, url=dsn, query=query))
        body.append(f'[[jobs]]\nfile = "jobs/{name}.toml"\n')
    plan = tmp_path / "plan.toml"
    plan.write_text("".join(body))
    return plan


async def test_plan_over_actors_honours_global_max(
    ray_local: Any, tmp_path: Path, pg_dsn: str
) -> None:
    """Three independent jobs, global_max = 1, chunks in 2 actors: no two jobs overlap."""
    await seed(pg_dsn)
    plan = load_plan(str(_plan(tmp_path, pg_dsn)))
    outcome = await Orchestrator(plan, runner=ray_job_runner("local", 2)).run()
    assert outcome.status == "SUCCEEDED"
    rows = [r for r in await job_rows(pg_dsn) if r["plan"] == "rayplan"]
    assert {r["job"] for r in rows} == set(JOBS)
    intervals = [(r["started_at"].timestamp(), r["finished_at"].timestamp()) for r in rows]
    assert max_overlap(intervals) == 1
    conn = await asyncpg.connect(pg_dsn)
    try:
        for name, want in (("copy_a", 3000), ("copy_b", 3000), ("dim", 600)):
            assert await conn.fetchval(f"SELECT count(*) FROM dw.{name}") == want
    finally:
        await conn.close()
