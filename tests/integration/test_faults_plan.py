"""A killed connection at any step of an orchestrated plan is retried; it ends like a clean one.

The plan's state store, global slots and its jobs all reach PostgreSQL through a ``PgProxy``
that kills the session carrying the first statement of a step (``FATAL 57P01``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from async_etl.jobs.api import JobOptions
from async_etl.orchestrator import Orchestrator, load_plan
from async_etl.testing.pgproxy import Faults, PgProxy
from tests.integration.jobs_helpers import (
    at,
    cols_of,
    history,
    job_toml,
    load_source,
    norm,
    reference,
    table_rows,
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
    """Two SCD2 jobs over ``src.t`` (``b`` after ``a``), one global slot, fast retries."""
    for name in ("a", "b"):
        write(tmp_path, f"{name}.toml", job_toml(name, url, f"dw.{name}", chunk_size=100))
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
        plan = load_plan(_plan(tmp_path, proxy.url))
        outcome = await Orchestrator(plan, options=JobOptions(as_of=at(0))).run()
    assert faults.kills == 1
    assert outcome.status == "SUCCEEDED", {n: s.error for n, s in outcome.jobs.items()}
    for name in ("a", "b"):
        got = await table_rows(pg_dsn, f"dw.{name}")
        assert norm(got, cols) == norm(reference(states, cols), cols)
