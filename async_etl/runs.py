"""Mapper jobs and plans from code: specs built in code or loaded from files, then run.

``job_spec`` / ``plan_spec`` validate exactly like the TOML files (same one-line
``ConfigError``), from a mapping shaped like the file or from a path.  ``run_job`` and
``run_plan`` run them on the current event loop, report progress to a callback, stop at a safe
point when ``stop`` is set, and mark the run STOPPED when the calling task is cancelled.  The
results are the typed ``JobResult`` / ``PlanOutcome``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from async_etl.core.retry import RetryPolicy
from async_etl.errors import ConfigError
from async_etl.jobs.api import JobOptions, JobResult, Progress
from async_etl.jobs.runner import run_job as _run_job
from async_etl.jobs.spec import JobSpec, job_from_mapping, load_job
from async_etl.orchestrator.driver import JobRunner, Orchestrator, PlanOutcome, default_runner
from async_etl.orchestrator.plan import Plan, load_plan, plan_from_mapping
from async_etl.orchestrator.report import NullView

if TYPE_CHECKING:
    from async_etl.jobs.ray_chunks import RayChunks
    from async_etl.jobs.ray_jobs import RayJobs

JobLike = JobSpec | Mapping[str, Any] | str | Path
"""A job: a ``JobSpec``, a mapping shaped like the job file, or the file's path."""

PlanLike = Plan | Mapping[str, Any] | str | Path
"""A plan: a ``Plan``, a mapping shaped like the plan file, or the file's path."""


def job_spec(job: JobLike) -> JobSpec:
    """The validated ``JobSpec``; raises ``ConfigError`` (one line) like a job file would."""
    if isinstance(job, JobSpec):
        return job
    if isinstance(job, Mapping):
        return job_from_mapping(job, path="<job from code>")
    return load_job(job)


def plan_spec(plan: PlanLike, *, base_dir: str | Path = ".") -> Plan:
    """The validated ``Plan``; job file paths in a mapping resolve against ``base_dir``.

    Raises ``ConfigError`` (one line) like a plan file would.
    """
    if isinstance(plan, Plan):
        return plan
    if isinstance(plan, Mapping):
        return plan_from_mapping(
            plan, path="<plan from code>", base_dir=Path(base_dir), load=load_job
        )
    return load_plan(plan)


async def run_job(
    job: JobLike,
    *,
    as_of: datetime | None = None,
    fresh: bool = False,
    retry: RetryPolicy | None = None,
    stop: anyio.Event | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    ray: str | RayChunks | None = None,
    ray_actors: int = 2,
) -> JobResult:
    """Run one mapper job (resuming its unfinished run unless ``fresh``).

    ``ray``: run the chunks in Ray actors, ``ray_actors`` of them at that address (``local``,
    ``auto``, ``HOST:PORT``, ``ray://HOST:PORT``; stopped at the end), or in a ``RayChunks``
    executor you made (you close it).  Raises ``ConfigError`` for a bad spec, Ray missing or
    unreachable, or a problem found before anything is written; any later failure is the
    returned ``JobResult``'s status FAILED with its one-line error.
    """
    spec = job_spec(job)
    options = JobOptions(as_of=as_of, fresh=fresh)
    if retry is not None:
        options = JobOptions(as_of=as_of, fresh=fresh, retry=retry)
    if ray is None or not isinstance(ray, str):
        return await _run_job(
            spec, options=options, stop=stop, on_progress=on_progress, executor=ray
        )
    executor = _ray_chunks(ray, ray_actors)
    try:
        return await _run_job(
            spec, options=options, stop=stop, on_progress=on_progress, executor=executor
        )
    finally:
        with anyio.CancelScope(shield=True):
            await executor.aclose()


def _ray_chunks(address: str, actors: int) -> RayChunks:
    """Join the Ray cluster now; an executor over it.

    Raises ``ConfigError`` for fewer than one actor or a cluster that cannot be joined.
    """
    from async_etl.jobs.ray_chunks import RayChunks
    from async_etl.runtime.ray_cluster import join_cluster

    if actors < 1:  # named as the argument: join_cluster's line names the CLI's --ray-actors
        raise ConfigError(f"ray_actors: must be >= 1, got {actors}")
    joined = join_cluster(address, actors)
    assert joined is not None  # an address was given
    return RayChunks(*joined)


class _ProgressView(NullView):
    def __init__(self, on_progress: Callable[[Progress], None]) -> None:
        self._on_progress = on_progress

    def progress(self, event: Progress) -> None:
        self._on_progress(event)


async def run_plan(
    plan: PlanLike,
    *,
    fresh: bool = False,
    stop: anyio.Event | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    base_dir: str | Path = ".",
    ray: str | RayJobs | None = None,
    ray_actors: int = 2,
) -> PlanOutcome:
    """Run a plan's jobs in dependency order; ``stop`` stops launching and asks jobs to stop.

    ``ray``: each job runs whole in one of ``ray_actors`` Ray actors at that address (slots,
    budgets and the plan state stay here; the actors are stopped at the end), or in a
    ``RayJobs`` runner you made (you close it).  Raises ``ConfigError`` for a bad plan or Ray
    missing or unreachable, ``AsyncEtlError`` for a state-store problem; job failures are in
    the returned ``PlanOutcome``.
    """
    spec = plan_spec(plan, base_dir=base_dir)
    if ray is None or not isinstance(ray, str):
        return await _run_plan(spec, fresh, stop, on_progress, ray or default_runner)
    from async_etl.jobs.ray_jobs import RayJobs

    _ray_chunks(ray, ray_actors)  # join now: a bad address is one line before any job
    jobs = RayJobs(ray, ray_actors, jobs_at_once=spec.local_max)
    try:
        return await _run_plan(spec, fresh, stop, on_progress, jobs)
    finally:
        with anyio.CancelScope(shield=True):
            await jobs.aclose()


async def _run_plan(
    plan: Plan,
    fresh: bool,
    stop: anyio.Event | None,
    on_progress: Callable[[Progress], None] | None,
    runner: JobRunner,
) -> PlanOutcome:
    orch = Orchestrator(
        plan, view=_ProgressView(on_progress) if on_progress else None, runner=runner
    )
    if stop is None:
        return await orch.run(fresh=fresh)

    async def watch() -> None:
        await stop.wait()
        orch.request_stop("stop event")

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        outcome = await orch.run(fresh=fresh)
        tg.cancel_scope.cancel()
    return outcome


__all__ = ["JobLike", "PlanLike", "job_spec", "plan_spec", "run_job", "run_plan"]
