"""A job start sends no state DDL when the state tables are there, and makes what is missing."""

from __future__ import annotations

import uuid

import pytest

from async_etl.core.retry import RetryPolicy
from async_etl.jobs.budget import LimiterBudget
from async_etl.jobs.context import BudgetHolder, ConnectionMeter
from async_etl.jobs.state import StateStore
from tests.integration.jobs_helpers import fetchval

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
    role = f"aetl_state_{uuid.uuid4().hex[:8]}"
    await fetchval(pg_server_dsn, f'CREATE ROLE "{role}" LOGIN')
    try:
        dml = "SELECT, INSERT, UPDATE, DELETE"
        for sql in ("REVOKE CREATE ON SCHEMA public FROM PUBLIC",
                    f'GRANT {dml} ON ALL TABLES IN SCHEMA public TO "{role}"'):  # fmt: skip
            await fetchval(pg_dsn, sql)
        as_role = pg_dsn.replace("postgresql://postgres@", f"postgresql://{role}@", 1)
        assert as_role != pg_dsn
        await _ensure(as_role)  # before: 'permission denied for schema public' at every start
    finally:
        await fetchval(pg_dsn, f'DROP OWNED BY "{role}"')
        await fetchval(pg_server_dsn, f'DROP ROLE IF EXISTS "{role}"')


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
