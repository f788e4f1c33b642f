"""Graceful degradation: a job against a flapping database completes at lower parallelism."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import anyio
import asyncpg
import pytest
from structlog.testing import capture_logs

from async_etl.errors import ErrorKind
from async_etl.jobs.api import ConnectionBudget, JobOptions, JobResult, Progress
from async_etl.jobs.budget import hold
from async_etl.jobs.spec import JobSpec
from async_etl.orchestrator.driver import Orchestrator
from async_etl.orchestrator.report import build_report
from tests.integration.test_orch_driver import make_plan

pytestmark = pytest.mark.timeout(60)
APP = "async-etl:flapping"


class ParallelJob:
    """A job running one worker per budget token it can get, each a real query of 0.3 s."""

    def __init__(self) -> None:
        self.workers: list[int] = []
        self.failed = 0

    async def __call__(
        self,
        spec: JobSpec,
        options: JobOptions,
        stop: anyio.Event,
        budget: ConnectionBudget,
        on_progress: Callable[[Progress], None],
    ) -> JobResult:
        limiter = budget.limiter(spec.target.url)
        workers = int(limiter.total_tokens)
        self.workers.append(workers)
        started = datetime.now(UTC)
        errors: list[str] = []

        async def worker() -> None:
            async with hold(limiter):
                try:
                    conn = await asyncpg.connect(
                        spec.target.url, server_settings={"application_name": APP}
                    )
                    try:
                        await conn.execute("SELECT pg_sleep(0.3)")
                    finally:
                        await conn.close()
                except Exception as exc:  # a backend killed at any point of connect or query
                    errors.append(type(exc).__name__)

        async with anyio.create_task_group() as tg:
            for _ in range(workers):
                tg.start_soon(worker)
        done = dict(run_id="r", job=spec.name, as_of=started, started_at=started)
        if errors:
            self.failed += 1
            return JobResult(
                **done,  # type: ignore[arg-type]
                status="FAILED",
                finished_at=datetime.now(UTC),
                error=f"backend terminated ({errors[0]})",
                error_kind=ErrorKind.DB_TRANSIENT,
            )
        on_progress(Progress(spec.name, "r", 1, 1, workers, float(workers), 0.0))
        return JobResult(
            **done,  # type: ignore[arg-type]
            status="SUCCEEDED",
            finished_at=datetime.now(UTC),
            rows_read=workers,
        )


async def flap(dsn: str, job: ParallelJob, failures: int) -> None:
    """Terminate the job's backends every 20 ms until it has failed ``failures`` times."""
    conn = await asyncpg.connect(dsn)
    try:
        while job.failed < failures:
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = $1",
                APP,
            )
            await anyio.sleep(0.02)
    finally:
        await conn.close()


async def test_flapping_database_lowers_parallelism_then_recovers(
    tmp_path: Path, pg_dsn: str
) -> None:
    """Budget 8, floor 2 (the job's minimum): terminated attempts step 8->4->2, then succeed."""
    header = f'[retry]\nmax_attempts = 5\nbase_delay = 0.01\n[budgets]\n"{pg_dsn}" = 8'
    plan = make_plan(tmp_path, pg_dsn, header, {"load": ()})
    job = ParallelJob()
    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            tg.start_soon(flap, pg_dsn, job, 2)
            outcome = await Orchestrator(plan, runner=job).run()
            tg.cancel_scope.cancel()  # the plan ended: never wait on the flapper
    report = build_report(plan, outcome)
    steps = [(s["old"], s["new"]) for s in report["degradation"]]
    events = [e["event"] for e in logs if e["event"].startswith("parallelism")]
    assert outcome.status == "SUCCEEDED"
    assert job.workers == [8, 4, 2]
    assert steps == [(8, 4), (4, 2), (2, 4)]
    assert events == ["parallelism lowered", "parallelism lowered", "parallelism restored"]
    assert report["degradation"][0]["reason"].startswith("transient failure: backend terminated")


class StateAndChunksJob:
    """A job holding one budget token for its state connection for the whole attempt, then
    running ``chunks`` chunks one at a time, each taking a second token for a real query.

    Jobs named in ``fail_first`` fail their first attempt transiently once they hold their
    state token; the others run their chunks.
    """

    def __init__(self, fail_first: set[str], chunks: int) -> None:
        self.fail_first, self.chunks = fail_first, chunks
        self.attempts: dict[str, int] = {}

    async def __call__(
        self,
        spec: JobSpec,
        options: JobOptions,
        stop: anyio.Event,
        budget: ConnectionBudget,
        on_progress: Callable[[Progress], None],
    ) -> JobResult:
        limiter = budget.limiter(spec.target.url)
        attempt = self.attempts[spec.name] = self.attempts.get(spec.name, 0) + 1
        started = datetime.now(UTC)
        done = dict(run_id="r", job=spec.name, as_of=started, started_at=started)
        async with hold(limiter):  # the state store's connection
            state = await asyncpg.connect(spec.target.url)
            try:
                if spec.name in self.fail_first and attempt == 1:
                    await state.execute("SELECT pg_sleep(0.1)")
                    return JobResult(
                        **done,  # type: ignore[arg-type]
                        status="FAILED",
                        finished_at=datetime.now(UTC),
                        error="backend terminated (injected)",
                        error_kind=ErrorKind.DB_TRANSIENT,
                    )
                for _ in range(self.chunks):
                    async with hold(limiter):  # one chunk's connection
                        await state.execute("SELECT pg_sleep(0.05)")
            finally:
                await state.close()
        return JobResult(
            **done,  # type: ignore[arg-type]
            status="SUCCEEDED",
            finished_at=datetime.now(UTC),
            rows_read=self.chunks,
        )


async def test_degradation_keeps_the_running_jobs_minimums(tmp_path: Path, pg_dsn: str) -> None:
    """Four jobs of minimum 2, budget 8, two failing at once: the budget stays >= 4, all finish."""
    # the two still running keep theirs (8->6, then 6 or 4); 8->4->2 left both hung before
    header = (
        f"local_max = 4\n[retry]\nmax_attempts = 3\nbase_delay = 0.01\n"
        f'[breaker]\nthreshold = 10\n[budgets]\n"{pg_dsn}" = 8'
    )
    plan = make_plan(tmp_path, pg_dsn, header, {n: () for n in ("a", "b", "c", "d")})
    job = StateAndChunksJob(fail_first={"a", "b"}, chunks=8)
    orchestrator = Orchestrator(plan, runner=job)
    with anyio.fail_after(30):  # a hang fails the test
        outcome = await orchestrator.run()
    assert outcome.status == "SUCCEEDED"
    lowered = [(s["old"], s["new"]) for s in outcome.degradation if s["new"] < s["old"]]
    assert lowered[0] == (8, 6)  # b, c and d still reserve 2 each
    assert all(new >= 4 for _, new in lowered)  # c and d still run at every failure
