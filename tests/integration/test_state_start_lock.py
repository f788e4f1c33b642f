"""A job start's state-table setup does not wait behind another job's open checkpoint."""

from __future__ import annotations

import asyncpg
import pytest

from async_etl.core.retry import RetryPolicy
from async_etl.jobs.budget import LimiterBudget
from async_etl.jobs.context import BudgetHolder, ConnectionMeter
from async_etl.jobs.state import StateStore


async def ensure_once(dsn: str) -> None:
    """One store's ``ensure``, with no retry."""
    holder = BudgetHolder(LimiterBudget(1), ConnectionMeter())
    policy = RetryPolicy(max_retries=0)
    async with StateStore(dsn, holder, app="async-etl:lock", policy=policy) as store:
        await store.ensure()


@pytest.mark.parametrize(
    "write",
    [
        "UPDATE async_etl_chunks SET rows = 1 WHERE run_id = 'r1'",
        "UPDATE async_etl_runs SET watermark = 0 WHERE run_id = 'r1'",
        "INSERT INTO async_etl_rejects (job, run_id, reason) VALUES ('j', 'r1', 'x')",
    ],
    ids=["chunks", "runs", "rejects"],
)
async def test_ensure_passes_an_open_write_to_a_state_table(pg_dsn: str, write: str) -> None:
    """With a state table written in an open transaction and lock_timeout 1 s, ensure succeeds."""
    await ensure_once(pg_dsn)
    admin = await asyncpg.connect(pg_dsn)
    try:
        name = await admin.fetchval("SELECT current_database()")
        await admin.execute(f"ALTER DATABASE \"{name}\" SET lock_timeout = '1s'")
        await admin.execute(
            "INSERT INTO async_etl_runs (run_id, job, status, as_of) "
            "VALUES ('r1', 'j', 'RUNNING', now())"
        )
        await admin.execute(
            "INSERT INTO async_etl_chunks (run_id, chunk_index, bounds) VALUES ('r1', 0, '{}')"
        )
    finally:
        await admin.close()
    holder = await asyncpg.connect(pg_dsn)
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute(write)
        await ensure_once(pg_dsn)  # lock_timeout: raises if it waits on the written table
        await tx.rollback()
    finally:
        await holder.close()
