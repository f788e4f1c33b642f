"""After a failed or cancelled call the state store's next call runs on a fresh connection.

A call that failed for good (retries spent on a killed backend) or whose connection was left
mid-operation ("cannot switch to state 12; another operation is in progress") used to keep
its connection, so every later call of the run failed the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import asyncpg
import pytest

from async_etl.core.retry import RetryPolicy
from async_etl.errors import CheckpointError, TransientError
from async_etl.jobs.budget import LimiterBudget
from async_etl.jobs.context import BudgetHolder, ConnectionMeter
from async_etl.jobs.state import StateStore
from tests.integration.jobs_helpers import fetchval


@asynccontextmanager
async def no_retry_store(dsn: str) -> AsyncIterator[StateStore]:
    """A store with its tables made, that gives up at the first transient failure."""
    holder = BudgetHolder(LimiterBudget(1), ConnectionMeter())
    async with StateStore(dsn, holder, app="t:state", policy=RetryPolicy(max_retries=0)) as s:
        await s.ensure()
        yield s


class MidOperation:
    """A connection asyncpg left in the middle of an operation: every statement is refused."""

    def __init__(self) -> None:
        self.terminated = False

    async def fetchval(self, *args: Any) -> Any:
        """Refuse as asyncpg does when the protocol is not idle."""
        raise asyncpg.exceptions.InternalClientError(
            "cannot switch to state 12; another operation (2) is in progress"
        )

    def terminate(self) -> None:
        """Record the termination."""
        self.terminated = True


async def test_a_killed_backend_costs_one_call_not_the_rest(pg_dsn: str) -> None:
    """Backend killed, no retry: that call fails in one line, the next one works."""
    async with no_retry_store(pg_dsn) as store:
        assert await store.stop_requested("r") is False
        pid = store._conn.get_server_pid()
        await fetchval(pg_dsn, "SELECT pg_terminate_backend($1)", pid)
        with pytest.raises(TransientError, match="state store: poll stop requests"):
            await store.stop_requested("r")
        assert await store.stop_requested("r") is False


async def test_a_connection_left_mid_operation_is_replaced(pg_dsn: str) -> None:
    """'another operation is in progress' fails one call; the next reconnects and works."""
    async with no_retry_store(pg_dsn) as store:
        real, stuck = store._conn, MidOperation()
        store._conn = stuck
        with pytest.raises(TransientError, match="another operation"):
            await store.stop_requested("r")
        assert stuck.terminated
        assert await store.stop_requested("r") is False
        await real.close()


async def test_a_call_cancelled_mid_statement_leaves_the_store_usable(pg_dsn: str) -> None:
    """A call cancelled mid-statement: the statement is cancelled, the next call reconnects."""
    async with no_retry_store(pg_dsn) as store:
        pid = store._conn.get_server_pid()

        async def slow(c: Any) -> None:
            await c.fetchval("SELECT pg_sleep(5)")

        with anyio.move_on_after(0.3):
            await store._call("slow", slow)
        assert await store.stop_requested("r") is False
        assert store._conn.get_server_pid() != pid
        busy = "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active'"
        assert await fetchval(pg_dsn, busy, pid) == 0


async def test_a_run_that_lost_its_job_lock_says_so_not_already_running(pg_dsn: str) -> None:
    """Lock lost with a killed backend and taken by another run: this run is told it lost it."""
    # It was told that the job was already running and to wait or stop it, as a second start is.
    holder = BudgetHolder(LimiterBudget(2), ConnectionMeter())
    policy = RetryPolicy(max_retries=0)
    async with StateStore(pg_dsn, holder, app="t:state", policy=policy, job="twice") as first:
        await first.ensure()
        await fetchval(pg_dsn, "SELECT pg_terminate_backend($1)", first._conn.get_server_pid())
        async with StateStore(pg_dsn, holder, app="t:state", policy=policy, job="twice"):
            with pytest.raises(TransientError):
                await first.stop_requested("r")  # the killed connection: dropped
            with pytest.raises(CheckpointError) as info:
                await first.stop_requested("r")
    message = str(info.value)
    assert "lost its lock" in message and "another run of job twice took it" in message
    assert "already running" not in message and "\n" not in message
