"""The orchestrator driver in-process, with small job functions, on a real PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest
from structlog.testing import capture_logs

from async_etl.core.retry import RetryPolicy
from async_etl.errors import ErrorKind
from async_etl.jobs.api import ConnectionBudget, JobOptions, JobResult, Progress
from async_etl.jobs.budget import hold
from async_etl.jobs.spec import JobSpec
from async_etl.orchestrator.driver import Orchestrator
from async_etl.orchestrator.plan import Plan, load_plan
from async_etl.orchestrator.state import request_plan_stop
from tests.integration.pg_activity import peak_connections

pytestmark = pytest.mark.timeout(60)

JOB = """name = "{name}"
[source]
url = "{url}"
table = "src.t"
key = ["id"]
[target]
url = "{url}"
table = "dw.t"
"""


@dataclass
class Behaviour:
    seconds: float = 0.0
    fail_times: int = 0
    kind: ErrorKind = ErrorKind.DB_TRANSIENT
    connections: int = 0


@dataclass
class FakeJobs:
    """An injected JobRunner: per job name, connect, hold budget tokens, sleep, maybe fail."""

    behaviours: dict[str, Behaviour]
    calls: list[tuple[str, JobOptions]] = field(default_factory=list)

    async def __call__(
        self,
        spec: JobSpec,
        options: JobOptions,
        stop: anyio.Event,
        budget: ConnectionBudget,
        on_progress: Callable[[Progress], None],
    ) -> JobResult:
        b = self.behaviours[spec.name]
        self.calls.append((spec.name, options))
        attempt = sum(1 for n, _ in self.calls if n == spec.name)
        started = datetime.now(UTC)

        def result(status: Any, **kw: Any) -> JobResult:
            return JobResult(
                run_id=f"r-{spec.name}-{attempt}",
                job=spec.name,
                status=status,
                as_of=started,
                started_at=started,
                finished_at=datetime.now(UTC),
                **kw,
            )

        if attempt <= b.fail_times:
            return result("FAILED", error=f"boom {attempt}", error_kind=b.kind)
        async with anyio.create_task_group() as tg:
            for _ in range(b.connections):
                tg.start_soon(self._hold_connection, spec.target.url, budget, b.seconds, stop)
            with anyio.move_on_after(b.seconds):
                await stop.wait()
        on_progress(Progress(spec.name, "r", 1, 1, 10, 10.0, 0.0))
        return result("STOPPED" if stop.is_set() else "SUCCEEDED", rows_read=10)

    async def _hold_connection(
        self, url: str, budget: ConnectionBudget, seconds: float, stop: anyio.Event
    ) -> None:
        async with hold(budget.limiter(url)):
            conn = await asyncpg.connect(url, server_settings={"application_name": "async-etl:t"})
            try:
                with anyio.move_on_after(seconds):
                    await stop.wait()
            finally:
                await conn.close()


def make_plan(tmp_path: Path, dsn: str, header: str, jobs: dict[str, tuple[str, ...]]) -> Plan:
    (tmp_path / "jobs").mkdir(exist_ok=True)
    body = [f'name = "p"\nstate = "{dsn}"\n{header}\n']
    for name, deps in jobs.items():
        (tmp_path / "jobs" / f"{name}.toml").write_text(JOB.format(name=name, url=dsn))
        body.append(f'[[jobs]]\nfile = "jobs/{name}.toml"\ndepends_on = {list(deps)!r}\n')
    (tmp_path / "plan.toml").write_text("".join(body).replace("'", '"'))
    return load_plan(tmp_path / "plan.toml")


async def attempts(dsn: str) -> dict[str, list[asyncpg.Record]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT * FROM async_etl_plan_attempts ORDER BY started_at")
    finally:
        await conn.close()
    out: dict[str, list[asyncpg.Record]] = {}
    for row in rows:
        out.setdefault(row["job"], []).append(row)
    return out


async def wait_jobs(dsn: str, statuses: dict[str, str], timeout: float = 30) -> None:
    """Wait until the plan's jobs have these statuses in ``async_etl_plan_jobs``."""
    sql = "SELECT job, status FROM async_etl_plan_jobs WHERE job = ANY($1::text[])"
    conn = await asyncpg.connect(dsn)
    try:
        with anyio.fail_after(timeout):
            while True:
                try:
                    now = {r["job"]: r["status"] for r in await conn.fetch(sql, list(statuses))}
                except asyncpg.UndefinedTableError:
                    now = {}
                if now == statuses:
                    return
                await anyio.sleep(0.005)
    finally:
        await conn.close()


async def test_a_job_files_own_retry_policy_is_used_in_a_plan(tmp_path: Path, pg_dsn: str) -> None:
    """A job file's ``[retry]`` governs its own round trips in a plan; others get the plan's."""
    make_plan(tmp_path, pg_dsn, "[retry]\nmax_attempts = 5\nbase_delay = 2.0", {"a": (), "b": ()})
    with (tmp_path / "jobs" / "a.toml").open("a") as f:
        f.write("\n[retry]\nmax_attempts = 2\nbase_delay = 0.5\nmax_delay = 1.0\n")
    plan = load_plan(tmp_path / "plan.toml")
    jobs = FakeJobs({n: Behaviour() for n in "ab"})
    assert (await Orchestrator(plan, runner=jobs).run()).status == "SUCCEEDED"
    used = {name: options.retry for name, options in jobs.calls}
    assert used["a"] == plan.job("a").spec.retry == RetryPolicy(max_retries=1, base=0.5, cap=1.0)
    assert used["b"] == plan.retry.policy()


async def test_dependency_order_and_independent_jobs_overlap(tmp_path: Path, pg_dsn: str) -> None:
    """Dependents start after their dependencies end; the wall time is the longest chain's."""
    plan = make_plan(
        tmp_path,
        pg_dsn,
        "local_max = 4\nglobal_max = 4",
        {"a": (), "b": ("a",), "c": ("b",), "x": (), "y": (), "z": ("x",)},
    )
    jobs = FakeJobs({n: Behaviour(seconds=0.4) for n in "abcxyz"})
    t0 = time.monotonic()
    outcome = await Orchestrator(plan, runner=jobs).run()
    wall = time.monotonic() - t0
    assert outcome.status == "SUCCEEDED"
    assert 1.2 <= outcome.wall_s < 1.2 + 0.9 and wall < 6 * 0.4
    runs = await attempts(pg_dsn)
    for child, parent in (("b", "a"), ("c", "b"), ("z", "x")):
        assert runs[child][0]["started_at"] >= runs[parent][0]["finished_at"]
    starts = sorted(runs[n][0]["started_at"] for n in "axy")
    assert (starts[-1] - starts[0]).total_seconds() < 0.2


async def test_transient_twice_then_success_is_three_attempts(tmp_path: Path, pg_dsn: str) -> None:
    """Two transient failures are retried; the third attempt succeeds and only it is not fresh."""
    plan = make_plan(
        tmp_path, pg_dsn, "[retry]\nmax_attempts = 3\nbase_delay = 0.01", {"flaky": ()}
    )
    jobs = FakeJobs({"flaky": Behaviour(fail_times=2, kind=ErrorKind.NETWORK)})
    outcome = await Orchestrator(plan, runner=jobs, options=JobOptions(fresh=True)).run()
    state = outcome.jobs["flaky"]
    assert (outcome.status, state.status, state.attempts) == ("SUCCEEDED", "SUCCEEDED", 3)
    assert [o.fresh for _, o in jobs.calls] == [True, False, False]
    runs = await attempts(pg_dsn)
    assert [r["status"] for r in runs["flaky"]] == ["FAILED", "FAILED", "SUCCEEDED"]
    conn = await asyncpg.connect(pg_dsn)
    row = await conn.fetchrow("SELECT status, attempts FROM async_etl_plan_jobs WHERE job='flaky'")
    await conn.close()
    assert tuple(row) == ("SUCCEEDED", 3)


async def test_permanent_failure_skips_dependents_only(tmp_path: Path, pg_dsn: str) -> None:
    """A permanent failure is not retried; its dependents are SKIPPED, unrelated jobs succeed."""
    plan = make_plan(
        tmp_path,
        pg_dsn,
        "[retry]\nmax_attempts = 5\nbase_delay = 0.01",
        {"bad": (), "child": ("bad",), "grandchild": ("child",), "ok": (), "ok2": ("ok",)},
    )
    behaviours = {n: Behaviour(seconds=0.05) for n in ("child", "grandchild", "ok", "ok2")}
    behaviours["bad"] = Behaviour(fail_times=9, kind=ErrorKind.DB_PERMANENT)
    outcome = await Orchestrator(plan, runner=FakeJobs(behaviours)).run()
    status = {n: (s.status, s.attempts) for n, s in outcome.jobs.items()}
    assert outcome.status == "FAILED"
    assert status == {
        "bad": ("FAILED", 1),
        "child": ("SKIPPED", 0),
        "grandchild": ("SKIPPED", 0),
        "ok": ("SUCCEEDED", 1),
        "ok2": ("SUCCEEDED", 1),
    }
    assert outcome.jobs["grandchild"].error == "dependency bad failed"


async def test_breaker_opens_after_k_failures_and_recovers(tmp_path: Path, pg_dsn: str) -> None:
    """K transient failures open the target's breaker; after the cool-down one trial closes it."""
    plan = make_plan(
        tmp_path,
        pg_dsn,
        "[retry]\nmax_attempts = 4\nbase_delay = 0.0\n[breaker]\nthreshold = 2\ncooldown = 0.6",
        {"flaky": ()},
    )
    jobs = FakeJobs({"flaky": Behaviour(fail_times=2, kind=ErrorKind.DB_TRANSIENT)})
    with capture_logs() as logs:
        outcome = await Orchestrator(plan, runner=jobs).run()
    assert outcome.jobs["flaky"].status == "SUCCEEDED" and outcome.jobs["flaky"].attempts == 3
    moves = [e["event"] for e in logs if e["event"].startswith("breaker")]
    assert moves == ["breaker open", "breaker half-open", "breaker closed"]
    runs = (await attempts(pg_dsn))["flaky"]
    gap = (runs[2]["started_at"] - runs[1]["finished_at"]).total_seconds()
    assert gap >= 0.55  # the retry waited for the cool-down, not the 0 s back-off


async def test_no_job_starts_while_its_breaker_is_open(tmp_path: Path, pg_dsn: str) -> None:
    """A job that waited for the global slot meanwhile the breaker opened does not run then."""
    # Both jobs are claimed at once and share one global slot; the first failure opens the
    # breaker.  The ticket is taken only with the slot held, so between "breaker open" and
    # "breaker half-open" no job starts (a slotted one is released and waits again).
    plan = make_plan(
        tmp_path,
        pg_dsn,
        "local_max = 2\nglobal_max = 1\n[retry]\nmax_attempts = 4\nbase_delay = 0.0\n"
        "[breaker]\nthreshold = 1\ncooldown = 0.4",
        {"a": (), "b": ()},
    )
    jobs = FakeJobs({name: Behaviour(fail_times=1, seconds=0.1) for name in ("a", "b")})
    with capture_logs() as logs:
        outcome = await Orchestrator(plan, runner=jobs).run()
    assert {n: s.status for n, s in outcome.jobs.items()} == {"a": "SUCCEEDED", "b": "SUCCEEDED"}
    open_ = False
    for event in (e["event"] for e in logs):
        if event == "breaker open":
            open_ = True
        elif event == "breaker half-open":
            open_ = False
        elif event == "job started":
            assert not open_, [(e["event"], e.get("job"), e.get("reason")) for e in logs]
    assert [e["event"] for e in logs].count("breaker open") >= 1


async def test_peak_connections_stay_within_the_budget(tmp_path: Path, pg_dsn: str) -> None:
    """Jobs holding real connections never exceed the database's budget (pg_stat_activity)."""
    plan = make_plan(
        tmp_path,
        pg_dsn,
        f'local_max = 6\n[budgets]\n"{pg_dsn}" = 6',
        {f"j{i}": () for i in range(6)},
    )
    jobs = FakeJobs({f"j{i}": Behaviour(seconds=0.3, connections=3) for i in range(6)})
    async with peak_connections(pg_dsn, every=0.01) as peak:
        outcome = await Orchestrator(plan, runner=jobs).run()
    assert outcome.status == "SUCCEEDED"
    assert peak.value == 6  # two jobs of three connections at a time: the budget, never more


async def test_stop_request_stops_running_jobs_and_next_run_resumes(
    tmp_path: Path, pg_dsn: str
) -> None:
    """request_plan_stop stops the plan (running jobs STOPPED); the next run skips finished jobs."""
    plan = make_plan(
        tmp_path, pg_dsn, "local_max = 2", {"quick": (), "slow": (), "after": ("slow",)}
    )
    jobs = FakeJobs({"quick": Behaviour(0.05), "slow": Behaviour(30.0), "after": Behaviour(0.05)})
    assert not await request_plan_stop(pg_dsn, "p")  # nothing runs yet
    orch = Orchestrator(plan, runner=jobs)
    async with anyio.create_task_group() as tg:

        async def stop_soon() -> None:  # once quick has ended and slow runs, not after a nap
            await wait_jobs(pg_dsn, {"quick": "SUCCEEDED", "slow": "RUNNING"})
            assert await request_plan_stop(pg_dsn, "p")

        tg.start_soon(stop_soon)
        t0 = time.monotonic()
        outcome = await orch.run()
    assert time.monotonic() - t0 < 5
    status = {n: s.status for n, s in outcome.jobs.items()}
    assert outcome.status == "STOPPED"
    assert status == {"quick": "SUCCEEDED", "slow": "STOPPED", "after": "PENDING"}
    again = FakeJobs({"quick": Behaviour(0.05), "slow": Behaviour(0.05), "after": Behaviour(0.05)})
    second = await Orchestrator(plan, runner=again).run()
    assert second.status == "SUCCEEDED" and second.jobs["quick"].resumed
    assert sorted(n for n, _ in again.calls) == ["after", "slow"]
