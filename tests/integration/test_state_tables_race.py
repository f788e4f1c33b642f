"""Jobs that start at the same moment on an empty state store all create its tables."""

from __future__ import annotations

import anyio

from async_etl.jobs.budget import LimiterBudget
from async_etl.jobs.context import BudgetHolder, ConnectionMeter
from async_etl.jobs.state import StateStore
from tests.integration.jobs_helpers import fetchval

STARTING = 6


async def test_state_tables_created_by_jobs_starting_together(pg_dsn: str) -> None:
    """Six stores run ``ensure`` at once on a fresh database: none fails on the catalog race."""
    failures: list[BaseException] = []
    connected: list[int] = []
    ready = anyio.Event()  # every store connected: then all create at once

    async def one(i: int) -> None:
        holder = BudgetHolder(LimiterBudget(1), ConnectionMeter())
        try:
            async with StateStore(pg_dsn, holder, app=f"async-etl:race{i}") as store:
                connected.append(i)
                if len(connected) == STARTING:
                    ready.set()
                await ready.wait()
                await store.ensure()
        except Exception as exc:
            failures.append(exc)
            ready.set()  # the others go on; the failure is reported below

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for i in range(STARTING):
                tg.start_soon(one, i)
    assert failures == []
    assert await fetchval(pg_dsn, "SELECT to_regclass('async_etl_chunks') IS NOT NULL")
