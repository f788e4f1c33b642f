"""A job start sends no state DDL when the state tables are there, and makes what is missing."""

from __future__ import annotations

import asyncpg
import pytest

from async_etl.core.retry import RetryPolicy
from async_etl.jobs.budget import LimiterBudget
from async_etl.jobs.context import BudgetHolder, ConnectionMeter
from async_etl.jobs.state import StateStore
from async_etl.orchestrator.state import ensure_tables
from tests.integration.jobs_helpers import dml_role, fetchval

EVERYTHING = (
    "SELECT (SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace AND "
    "relname IN ('async_etl_runs', 'async_etl_chunks', 'async_etl_rejects', "
    "'async_etl_stop_requests', 'async_etl_runs_job', 'async_etl_rejects_run')) = 6 AND "
    "(SELECT count(*) FROM pg_attribute WHERE attrelid = 'async_etl_chunks'::regclass AND "
    "attname IN ('cursor', 'counts', 'loader')) = 3"
)
"""Written out independently of ``state_sql``: every table, index and late column is there."""


async def _ensure(dsn: str) -> None:
    """One store's ``ensure``, with no retry."""
    holder = BudgetHolder(LimiterBudget(1), ConnectionMeter())
    policy = RetryPolicy(max_retries=0)
    async with StateStore(dsn, holder, app="async-etl:ready", policy=policy) as store:
        await store.ensure()
        assert await store.stop_requested("no-such-run") is False  # the store is usable


async def test_a_role_that_may_not_create_in_the_schema_starts_on_existing_tables(
    pg_dsn: str, pg_server_dsn: str
) -> None:
    """State tables made by their owner; a role with only DML on them (no CREATE): ensure passes."""
    await _ensure(pg_dsn)
    async with dml_role(pg_dsn, pg_server_dsn) as as_role:
        await _ensure(as_role)  # before: 'permission denied for schema public' at every start


@pytest.mark.parametrize(
    "drop",
    [
        "DROP INDEX async_etl_runs_job",
        "DROP INDEX async_etl_rejects_run",
        "ALTER TABLE async_etl_chunks DROP COLUMN loader",
        "DROP TABLE async_etl_stop_requests",
        "DROP TABLE async_etl_rejects",
    ],
)
async def test_a_missing_table_index_or_column_is_made_again(pg_dsn: str, drop: str) -> None:
    """With one piece of the state store gone, the next start's ``ensure`` makes it again."""
    await _ensure(pg_dsn)
    assert await fetchval(pg_dsn, EVERYTHING)
    await fetchval(pg_dsn, drop)
    assert not await fetchval(pg_dsn, EVERYTHING)
    await _ensure(pg_dsn)
    assert await fetchval(pg_dsn, EVERYTHING)


async def test_a_plan_store_opens_on_existing_tables_for_a_role_that_may_not_create(
    pg_dsn: str, pg_server_dsn: str
) -> None:
    """Orchestrator tables made by their owner; a role with only DML on them: ensure passes."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        await ensure_tables(conn)
    finally:
        await conn.close()
    async with dml_role(pg_dsn, pg_server_dsn) as as_role:
        conn = await asyncpg.connect(as_role)
        try:
            await ensure_tables(conn)  # before: 'permission denied for schema public'
            plans = "SELECT count(*) FROM async_etl_plan_runs"
            assert await conn.fetchval(plans) == 0  # the store is usable
        finally:
            await conn.close()


async def test_a_missing_plan_index_is_made_again(pg_dsn: str) -> None:
    """With the plan runs' index dropped, the next ``ensure_tables`` makes it again."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        await ensure_tables(conn)
        await conn.execute("DROP INDEX async_etl_plan_runs_plan")
        await ensure_tables(conn)
        assert await conn.fetchval("SELECT to_regclass('async_etl_plan_runs_plan')") is not None
    finally:
        await conn.close()
