"""A second ``stop`` of a running run names the run again, not a job that is still starting."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg

from async_etl.jobs.budget import LimiterBudget
from async_etl.jobs.context import BudgetHolder, ConnectionMeter
from async_etl.jobs.state import StateStore


async def test_a_second_stop_request_returns_the_run_again(pg_dsn: str) -> None:
    """Two ``request_stop`` calls on one RUNNING run both return it; one request is stored."""
    # The second found the request already there (ON CONFLICT DO NOTHING returned no row), so
    # ``async-etl stop`` went on to ask the job's "starting" run and printed ``stop requested for
    # job J (still starting)`` for a run that had started long before.
    holder = BudgetHolder(LimiterBudget(1), ConnectionMeter())
    async with StateStore(pg_dsn, holder, app="async-etl:twice:state") as store:
        await store.ensure()
        await store.start_run("twice-1", "twice", datetime.now(UTC), {}, ["null"])
        first = await store.request_stop("twice")
        second = await store.request_stop("twice-1")
        stored = await store.running_runs("twice")
    assert first == second == ["twice-1"] and stored == [("twice-1", "twice")]
    conn = await asyncpg.connect(pg_dsn)
    try:
        requests = await conn.fetch("SELECT run_id FROM async_etl_stop_requests")
    finally:
        await conn.close()
    assert [r["run_id"] for r in requests] == ["twice-1"]
