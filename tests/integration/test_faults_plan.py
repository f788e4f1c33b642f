"""A killed connection at any step of an orchestrated plan is retried; it ends like a clean one.

The plan's state store, global slots and its jobs all reach PostgreSQL through a ``PgProxy``
that kills the session carrying the first statement of a step (``FATAL 57P01``).
"""

from __future__ import annotations

from pathlib import Path

import anyio
import asyncpg
import pytest
from structlog.testing import capture_logs

from async_etl.errors import ConfigError
from async_etl.jobs.api import JobOptions
from async_etl.orchestrator import Orchestrator, load_plan
from async_etl.orchestrator.driver import PlanOutcome
from async_etl.orchestrator.state import PlanStore, request_plan_stop
from async_etl.testing.pgproxy import Faults, PgProxy
from tests.integration.jobs_helpers import (
    at,
    cols_of,
    history,
    job_toml,
    load_source,
    norm,
    reference,
    slow_target,
    table_rows,
    wait_committed,
    write,
)

pytestmark = pytest.mark.timeout(90)

PLAN_STEPS = {
    "plan tables": r"CREATE TABLE IF NOT EXISTS async_etl_plan_runs",
    "plan lock": r"^SELECT pg_try_advisory_lock\(\$1\)$",
    "resumable run": r"FROM async_etl_plan_runs WHERE plan = \$1",
    "start plan run": r"^INSERT INTO async_etl_plan_runs",
    "global slot": r"pg_try_advisory_lock\(\$1, s\)",
    "job started": r"INSERT INTO async_etl_plan_attempts",
    "attempt ended": r"^UPDATE async_etl_plan_attempts",
    "job status": r"^UPDATE async_etl_plan_jobs SET status",
    "finish plan run": r"^UPDATE async_etl_plan_runs SET status",
    "job preflight": r"CREATE TEMP TABLE _async_etl_probe",
    "job chunk planning": r"row_number\(\) OVER",
    "job checkpoint": r"INSERT INTO async_etl_chunks .*'COMMITTED'",
}


def _plan(tmp_path: Path, url: str) -> Path:
    """A plan of the jobs ``a`` and ``b`` (after ``a``) in ``tmp_path``: one global slot."""
    return write(
        tmp_path,
        "plan.toml",
        f'name = "faulty"\nstate = "{url}"\nlocal_max = 2\nglobal_max = 1\n'
        "[retry]\nmax_attempts = 5\nbase_delay = 0.01\nmax_delay = 0.1\n"
        '[[jobs]]\nfile = "a.toml"\n[[jobs]]\nfile = "b.toml"\ndepends_on = ["a"]\n',
    )


@pytest.mark.parametrize("step", list(PLAN_STEPS))
async def test_plan_survives_a_killed_connection(pg_dsn: str, tmp_path: Path, step: str) -> None:
    """Orchestrated plan: a connection killed at this step is retried; both targets = model."""
    cols = cols_of(2)
    states = history(seed=9, n_keys=250, runs=1)
    await load_source(pg_dsn, states[0])
    faults = Faults()
    faults.arm(PLAN_STEPS[step])
    async with PgProxy(pg_dsn, faults) as proxy:
        for name in ("a", "b"):
            write(tmp_path, f"{name}.toml", job_toml(name, proxy.url, f"dw.{name}", chunk_size=100))
        plan = load_plan(_plan(tmp_path, proxy.url))
        outcome = await Orchestrator(plan, options=JobOptions(as_of=at(0))).run()
    assert faults.kills == 1
    assert outcome.status == "SUCCEEDED", {n: s.error for n, s in outcome.jobs.items()}
    for name in ("a", "b"):
        got = await table_rows(pg_dsn, f"dw.{name}")
        assert norm(got, cols) == norm(reference(states, cols), cols)


async def test_a_job_whose_global_slot_is_lost_is_tried_again(pg_dsn: str, tmp_path: Path) -> None:
    """The slot's session is terminated while job a runs: a stops, runs again, the plan succeeds."""
    cols = cols_of(2)
    states = history(seed=9, n_keys=250, runs=1)
    await load_source(pg_dsn, states[0])
    await slow_target(pg_dsn, "dw.a", sleep_s=0.1)
    for name in ("a", "b"):
        write(tmp_path, f"{name}.toml", job_toml(name, pg_dsn, f"dw.{name}", chunk_size=25))
    plan = load_plan(_plan(tmp_path, pg_dsn))
    outcomes: list[PlanOutcome] = []

    async def orchestrate() -> None:
        outcomes.append(await Orchestrator(plan, options=JobOptions(as_of=at(0))).run())

    async with anyio.create_task_group() as tg:
        tg.start_soon(orchestrate)
        await wait_committed(pg_dsn, "a", 1)
        conn = await asyncpg.connect(pg_dsn)
        try:  # a slot is a two-key advisory lock (objsubid 2); the plan lock is one key
            killed = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE granted "
                "AND locktype = 'advisory' AND objsubid = 2 AND database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())"
            )
        finally:
            await conn.close()
    assert killed == 1
    outcome = outcomes[0]
    assert outcome.status == "SUCCEEDED", {n: s.error for n, s in outcome.jobs.items()}
    assert outcome.jobs["a"].attempts == 2 and outcome.jobs["b"].attempts == 1
    for name in ("a", "b"):
        got = await table_rows(pg_dsn, f"dw.{name}")
        assert norm(got, cols) == norm(reference(states, cols), cols)


async def test_a_stop_request_survives_a_killed_connection(pg_dsn: str) -> None:
    """request_plan_stop retries a killed session: the answer (no such plan running) arrives."""
    faults = Faults()
    faults.arm(r"^SELECT pg_try_advisory_lock\(\$1\)$")
    async with PgProxy(pg_dsn, faults) as proxy:
        assert await request_plan_stop(proxy.url, "nobody") is False
    assert faults.kills == 1


async def test_a_state_store_refusing_for_good_is_one_config_error(pg_dsn: str) -> None:
    """A missing state database is permanent: one ConfigError line, no retries, URL masked."""
    url = pg_dsn.rsplit("/", 1)[0].replace("postgres@", "postgres:secret@") + "/no_such_db"
    with capture_logs() as logs, pytest.raises(ConfigError, match="no_such_db") as info:
        await PlanStore.open(url, "p")
    assert "secret" not in info.value.message and "\n" not in info.value.message
    assert not [e for e in logs if e["event"] == "retrying"]


async def test_plan_connects_through_refused_connections(pg_dsn: str, tmp_path: Path) -> None:
    """The plan's first connections (state store, then the jobs') are refused: it retries."""
    cols = cols_of(2)
    states = history(seed=9, n_keys=120, runs=1)
    await load_source(pg_dsn, states[0])
    faults = Faults()
    faults.refuse(3)
    async with PgProxy(pg_dsn, faults) as proxy:
        for name in ("a", "b"):
            write(tmp_path, f"{name}.toml", job_toml(name, proxy.url, f"dw.{name}"))
        plan = load_plan(_plan(tmp_path, proxy.url))
        outcome = await Orchestrator(plan, options=JobOptions(as_of=at(0))).run()
    assert faults.kills == 3 and faults.refusals == 0
    assert outcome.status == "SUCCEEDED", {n: s.error for n, s in outcome.jobs.items()}
    for name in ("a", "b"):
        got = await table_rows(pg_dsn, f"dw.{name}")
        assert norm(got, cols) == norm(reference(states, cols), cols)
