"""Orchestrated plans whose jobs run whole in Ray actors (a local in-process Ray)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import asyncpg

from async_etl.jobs.api import JobOptions, JobResult, Progress
from async_etl.jobs.budget import LimiterBudget
from async_etl.jobs.ray_jobs import RayJobs, connection_needs
from async_etl.jobs.spec import JobSpec
from async_etl.orchestrator import Orchestrator, PlanOutcome, load_plan
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
from tests.integration.test_orch_mapper_e2e import JOB, seed
from tests.integration.test_orch_processes import job_rows, max_overlap
from tests.ray.same_target import assert_same_as_local

JOBS = {
    "copy_a": "SELECT id, customer_id, amount FROM src.orders",
    "copy_b": "SELECT id, customer_id, amount FROM src.orders",
    "dim": "SELECT id, name, city FROM src.customers",
}


def _ignore(event: Progress) -> None:
    """Progress events nobody looks at."""


def _plan(tmp_path: Path, dsn: str, global_max: int, budget: int) -> Path:
    (tmp_path / "jobs").mkdir()
    body = [
        f'name = "rayplan"\nstate = "{dsn}"\nlocal_max = 3\nglobal_max = {global_max}\n'
        f'[budgets]\n"{dsn}" = {budget}\n'
    ]
    for name, query in JOBS.items():
        (tmp_path / "jobs" / f"{name}.toml").write_text(JOB.format(name=name, url=dsn, query=query))
        body.append(f'[[jobs]]\nfile = "jobs/{name}.toml"\n')
    plan = tmp_path / "plan.toml"
    plan.write_text("".join(body))
    return plan


async def _run_plan(
    tmp_path: Path, dsn: str, global_max: int, budget: int
) -> tuple[PlanOutcome, RayJobs, set[int], list[tuple[float, float]], int]:
    """Run the three-job plan over 2 actors: outcome, runner, actor pids, RUNNING intervals
    from the status table, and the peak of job connections seen."""
    await seed(dsn)
    plan = load_plan(str(_plan(tmp_path, dsn, global_max=global_max, budget=budget)))
    jobs = RayJobs("local", 2, jobs_at_once=plan.local_max)
    try:
        async with peak_connections(dsn) as peak:
            outcome = await Orchestrator(plan, runner=jobs).run()
        pids = set(jobs.pids.values())
    finally:
        await jobs.aclose()
    rows = [r for r in await job_rows(dsn) if r["plan"] == "rayplan"]
    assert {r["job"] for r in rows} == set(JOBS)
    intervals = [(r["started_at"].timestamp(), r["finished_at"].timestamp()) for r in rows]
    return outcome, jobs, pids, intervals, peak.value


async def test_plan_jobs_run_whole_in_actors_and_honour_global_max(
    ray_local: Any, tmp_path: Path, pg_dsn: str
) -> None:
    """Jobs run whole in actors under global_max: no two overlap, connections stay in budget."""
    # Three independent jobs, local_max 3, global_max 1, in 2 actors: each job ran in an actor
    # process, and no two overlap in the status table.
    outcome, jobs, pids, intervals, peak = await _run_plan(tmp_path, pg_dsn, 1, 9)
    assert outcome.status == "SUCCEEDED"
    assert sorted(job for job, _, _ in jobs.placed) == sorted(JOBS)
    assert {pid for _, _, pid in jobs.placed} == pids and len(pids) == 2
    assert os.getpid() not in {pid for _, _, pid in jobs.placed} and jobs.reruns == 0
    assert max_overlap(intervals) == 1
    assert 0 < peak <= 9
    conn = await asyncpg.connect(pg_dsn)
    try:
        for name, want in (("copy_a", 3000), ("copy_b", 3000), ("dim", 600)):
            assert await conn.fetchval(f"SELECT count(*) FROM dw.{name}") == want
    finally:
        await conn.close()


async def test_plan_over_actors_runs_jobs_side_by_side_up_to_global_max(
    ray_local: Any, tmp_path: Path, pg_dsn: str
) -> None:
    """global_max 2 with a budget for all three: jobs overlap in actors, never more than 2."""
    outcome, _, _, intervals, peak = await _run_plan(tmp_path, pg_dsn, 2, 12)
    assert outcome.status == "SUCCEEDED"
    assert max_overlap(intervals) == 2
    assert 0 < peak <= 12


async def test_job_in_an_actor_equals_the_single_process_target(
    ray_local: Any, pg_dsn: str
) -> None:
    """An SCD2 job run whole in an actor: target == the local run's; grants and progress return."""
    # SCD2 with updates and deletes; each grant comes back, and progress events from the actor.
    jobs = RayJobs("local", 2)
    seen: list[Progress] = []
    budget = LimiterBudget(8)

    async def remote(spec: JobSpec, options: JobOptions) -> JobResult:
        result = await jobs(spec, options, anyio.Event(), budget, seen.append)
        assert budget.limiter(pg_dsn).borrowed_tokens == 0
        return result

    try:
        await assert_same_as_local(pg_dsn, 12, 500, remote)
    finally:
        await jobs.aclose()
    assert seen and seen[-1].job == "remote" and seen[-1].chunks_done == seen[-1].chunks_total


async def test_a_job_in_an_actor_keeps_within_its_grant(ray_local: Any, pg_dsn: str) -> None:
    """Budget 3 on the one database: the job in its actor never holds more than 3 connections."""
    # State, source and target share the database; the job runs one chunk at a time.
    rows = history(seed=13, n_keys=300, runs=1)[0]
    await load_source(pg_dsn, rows)
    spec = spec_of(job_toml("tight", pg_dsn, "dw.tight", workers=4, chunk_size=50))
    assert connection_needs(spec) == ({pg_dsn: 2}, {pg_dsn: 9})
    jobs = RayJobs("local", 1)
    try:
        result = await jobs(spec, JobOptions(as_of=at(0)), anyio.Event(), LimiterBudget(3), _ignore)
    finally:
        await jobs.aclose()
    assert result.status == "SUCCEEDED", result.error
    assert result.max_connections is not None and max(result.max_connections.values()) <= 3


async def _slow_job(dsn: str, name: str, seed: int) -> tuple[list[Any], JobSpec]:
    """A 24-chunk job (2 at a time) into a target that sleeps 0.2 s a statement: over 2 s."""
    rows = history(seed=seed, n_keys=1200, runs=1)[0]
    await load_source(dsn, rows)
    await slow_target(dsn, f"dw.{name}", 2, 0.2)
    return rows, spec_of(job_toml(name, dsn, f"dw.{name}", workers=2, chunk_size=50))


def _set_once_a_chunk_is_done(event: anyio.Event) -> Callable[[Progress], None]:
    """A progress callback that sets ``event`` once a chunk has committed."""

    def on_progress(progress: Progress) -> None:
        if progress.chunks_done > 0:
            event.set()

    return on_progress


async def test_a_stop_reaches_the_actor_and_the_next_attempt_resumes(
    ray_local: Any, pg_dsn: str
) -> None:
    """A stop mid-job ends the remote run STOPPED at a chunk boundary; the next attempt resumes."""
    # Same run id, and the target equals the model.
    rows, spec = await _slow_job(pg_dsn, "stopme", 14)
    jobs = RayJobs("local", 2)
    stop = anyio.Event()
    on_progress = _set_once_a_chunk_is_done(stop)

    budget = LimiterBudget(8)
    try:
        first = await jobs(spec, JobOptions(as_of=at(0)), stop, budget, on_progress)
        second = await jobs(spec, JobOptions(), anyio.Event(), budget, _ignore)
    finally:
        await jobs.aclose()
    assert first.status == "STOPPED" and 0 < first.chunks_done < first.chunks_total
    assert second.status == "SUCCEEDED" and second.resumed and second.run_id == first.run_id
    cols = cols_of(2)
    got = norm(await table_rows(pg_dsn, "dw.stopme"), cols)
    assert got == norm(reference([rows], cols), cols)


async def test_a_cancelled_attempt_cancels_the_remote_run_which_ends_stopped(
    ray_local: Any, pg_dsn: str
) -> None:
    """Cancelling the runner mid-job cancels the job in its actor; its run is recorded STOPPED."""
    # The CLI's second signal: the run is not left RUNNING, and the actor takes the next job.
    _, spec = await _slow_job(pg_dsn, "cancelme", 15)
    jobs = RayJobs("local", 1)
    started = anyio.Event()
    on_progress = _set_once_a_chunk_is_done(started)

    budget = LimiterBudget(8)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(jobs, spec, JobOptions(as_of=at(0)), anyio.Event(), budget, on_progress)
            await started.wait()
            tg.cancel_scope.cancel()
        conn = await asyncpg.connect(pg_dsn)
        try:
            status = await conn.fetchval("SELECT status FROM async_etl_runs WHERE job = 'cancelme'")
        finally:
            await conn.close()
        again = await jobs(spec, JobOptions(), anyio.Event(), budget, _ignore)
    finally:
        await jobs.aclose()
    assert status == "STOPPED"
    assert budget.limiter(pg_dsn).borrowed_tokens == 0
    assert again.status == "SUCCEEDED" and again.resumed


async def test_plan_over_actors_runs_on_each_jobs_minimum_budget(
    ray_local: Any, tmp_path: Path, pg_dsn: str
) -> None:
    """Budget 2 (one-database jobs' minimum): admitted and granted one at a time, no wait for 3."""
    with anyio.fail_after(120):  # a grant waiting for a third token would hang here
        outcome, _, _, intervals, peak = await _run_plan(tmp_path, pg_dsn, 3, 2)
    assert outcome.status == "SUCCEEDED"
    assert max_overlap(intervals) == 1
    assert 0 < peak <= 2
