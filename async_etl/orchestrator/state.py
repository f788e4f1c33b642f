"""The orchestrator's PostgreSQL state: plan runs, per-job rows, attempts and stop requests.

Tables (created on first use, under a transaction-scoped advisory lock so two orchestrators
starting together do not race on ``CREATE TABLE``):

- ``async_etl_plan_runs``: one row per orchestrator run of a plan (status RUNNING, SUCCEEDED,
  FAILED or STOPPED, limits, host and pid, the run it resumed);
- ``async_etl_plan_jobs``: one row per job of a plan run (status PENDING, RUNNING, SUCCEEDED,
  FAILED, SKIPPED or STOPPED, attempts, started_at, finished_at, rows, error);
- ``async_etl_plan_attempts``: one row per attempt, with the exact interval it held its slots;
- ``async_etl_plan_stops``: stop requests by plan name (``request_plan_stop``), honoured by a
  run started before the request.

A ``PlanStore`` owns one control connection.  That connection also holds the plan's
session-level advisory lock, so one plan name runs in at most one orchestrator per state store
at a time, and a crashed orchestrator's lock dies with its connection.

Every statement is retried on a transient failure (lost connection, server restarting) with
the plan's retry policy.  When the control connection is lost the store reconnects and takes
the plan lock again; if another orchestrator took it meanwhile, that is a one-line failure.
"""

from __future__ import annotations

import hashlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

import anyio

from async_etl.core.retry import RetryPolicy
from async_etl.core.state_sql import state_ready_sql
from async_etl.core.urls import mask_url
from async_etl.drivers.postgres import PG_ERRORS, close_quietly, connect, open_pool, translate_pg
from async_etl.errors import AsyncEtlError, ConfigError, LoadError, network, unusable
from async_etl.jobs.state import ONE_SHOT, ONE_SHOT_OPEN_S, one_shot
from async_etl.runtime.retrying import retrying

T = TypeVar("T")

APP_NAME = "async-etl-orchestrator"
"""``application_name`` of every orchestrator connection (jobs' connections use ``async-etl:``)."""

_DDL = (
    "CREATE TABLE IF NOT EXISTS async_etl_plan_runs (plan_run_id text PRIMARY KEY, "
    "plan text NOT NULL, status text NOT NULL CHECK (status IN "
    "('RUNNING', 'SUCCEEDED', 'FAILED', 'STOPPED')), started_at timestamptz NOT NULL "
    "DEFAULT clock_timestamp(), finished_at timestamptz, host text, pid integer, "
    "local_max integer, global_max integer, namespace text, resumed_from text)",
    "CREATE INDEX IF NOT EXISTS async_etl_plan_runs_plan "
    "ON async_etl_plan_runs (plan, started_at DESC)",
    "CREATE TABLE IF NOT EXISTS async_etl_plan_jobs (plan_run_id text NOT NULL REFERENCES "
    "async_etl_plan_runs (plan_run_id) ON DELETE CASCADE, job text NOT NULL, status text NOT NULL "
    "CHECK (status IN ('PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED', 'SKIPPED', 'STOPPED')), "
    "attempts integer NOT NULL DEFAULT 0, started_at timestamptz, finished_at timestamptz, "
    "rows bigint NOT NULL DEFAULT 0, error text, error_kind text, "
    "PRIMARY KEY (plan_run_id, job))",
    "CREATE TABLE IF NOT EXISTS async_etl_plan_attempts (plan_run_id text NOT NULL, "
    "job text NOT NULL, attempt integer NOT NULL, started_at timestamptz NOT NULL, "
    "finished_at timestamptz, status text, error text, "
    "PRIMARY KEY (plan_run_id, job, attempt))",
    "CREATE TABLE IF NOT EXISTS async_etl_plan_stops (plan text NOT NULL, "
    "requested_at timestamptz NOT NULL DEFAULT clock_timestamp(), requested_by text)",
)
_DDL_LOCK = 0x6A57_0E71  # arbitrary, constant: serialises DDL between orchestrators
_READY = state_ready_sql(
    ("async_etl_plan_runs", "async_etl_plan_jobs", "async_etl_plan_attempts",
     "async_etl_plan_stops"),
    indexes=("async_etl_plan_runs_plan",),
    columns=(),
)  # fmt: skip
"""True when every table and index ``_DDL`` makes is there (``state_sql.state_ready_sql``)."""


def lock_key(*parts: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``parts`` (same input, same key)."""
    digest = hashlib.blake2b("\x1f".join(("async_etl", *parts)).encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


async def open_connection(url: str, *, where: str | None = None) -> Any:
    """An orchestrator connection to the state store; raises a translated ``AsyncEtlError``.

    ``where`` names the store in the error (default ``state store <url>``, password masked).
    """
    return await connect(
        url, application_name=APP_NAME, timeout=10, where=where or f"state store {mask_url(url)}"
    )


@asynccontextmanager
async def translated(url: str, what: str, *, where: str | None = None) -> AsyncIterator[None]:
    """Translate asyncpg / socket errors inside the block (``TransientError`` and friends).

    ``where`` names the store in the error, as for ``open_connection``.
    """
    try:
        yield
    except PG_ERRORS as exc:
        raise translate_pg(exc, f"{where or f'state store {mask_url(url)}'}: {what}") from exc


async def ensure_tables(conn: Any) -> None:
    """Create the orchestrator tables if missing (idempotent, safe to run concurrently).

    One catalog query first: when all are there nothing else is sent, so a role with DML on
    the tables needs no CREATE on their schema (``CREATE TABLE IF NOT EXISTS`` checks it before
    it finds the table), and no ``CREATE INDEX IF NOT EXISTS`` waits for its SHARE lock behind
    another orchestrator's open transaction on ``async_etl_plan_runs``.
    """
    if await conn.fetchval(_READY):
        return
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _DDL_LOCK)
        for statement in _DDL:
            await conn.execute(statement)


class PlanStore:
    """The status rows of one plan run, written through one locked control connection."""

    def __init__(self, url: str, conn: Any, plan: str, writers: Any, policy: RetryPolicy) -> None:
        """Use ``PlanStore.open`` (it takes the plan lock and creates the tables)."""
        self.url = url
        self._conn = conn
        self._writers = writers
        self._policy = policy
        self._lock = anyio.Lock()
        self.plan = plan
        self.plan_run_id = ""
        self.started_at: datetime | None = None

    @classmethod
    async def open(
        cls, url: str, plan: str, *, writers: int = 4, policy: RetryPolicy | None = None
    ) -> PlanStore:
        """Connect, create tables, take the plan lock (retrying transient failures).

        Job rows are written through ``writers`` more connections (opened on demand), so many
        jobs' status writes do not queue on one connection.

        Raises ``ConfigError`` when the store is unreachable or another orchestrator is running
        this plan (nothing was done: ``async-etl orchestrate`` exits 2, as ``run`` does for a
        job already running).
        """
        policy = policy or RetryPolicy()
        try:
            conn = await retrying(lambda: _control_connection(url, plan, first=True), policy,
                                  what="state store: open")  # fmt: skip
        except LoadError as exc:  # unreachable (after the retries), auth, no database
            raise unusable(exc.message, exc) from exc  # it names the store: 'state store URL: '
        try:
            pool = await open_pool(
                url, min_size=0, max_size=writers, server_settings={"application_name": APP_NAME}
            )
        except BaseException:
            await conn.close()
            raise
        return cls(url, conn, plan, pool, policy)

    async def close(self) -> None:
        """Close the control connection (which also releases the plan lock)."""
        with anyio.CancelScope(shield=True):
            await self._writers.close()
            await self._conn.close()

    async def _exec(self, sql: str, *args: Any) -> None:
        async def once() -> None:
            async with translated(self.url, "write plan state"):
                await self._writers.execute(sql, *args)

        await retrying(once, self._policy, what="state store: write plan state")

    async def _control(self, what: str, fn: Callable[[Any], Awaitable[T]]) -> T:
        """``fn(control connection)`` under the lock; reconnect (and re-lock) on a lost one."""

        async def once() -> T:
            async with translated(self.url, what):
                if self._conn.is_closed():
                    raise network(f"state store {mask_url(self.url)}: connection lost")
                return await fn(self._conn)

        async def reconnect() -> None:
            self._conn.terminate()
            self._conn = await retrying(lambda: _control_connection(self.url, self.plan),
                                        self._policy, what="state store: reconnect")  # fmt: skip

        async with self._lock:
            return await retrying(once, self._policy, what=f"state store: {what}",
                                  reset=reconnect)  # fmt: skip

    async def resumable_run(self) -> tuple[str, list[str]] | None:
        """The latest unfinished run of this plan and the jobs it completed, if any.

        Unfinished: STOPPED, or RUNNING left by a crashed orchestrator (marked STOPPED here).
        None when the latest run finished (or there is none).
        """

        async def go(conn: Any) -> tuple[str, list[str]] | None:
            row = await conn.fetchrow(
                "SELECT plan_run_id, status FROM async_etl_plan_runs WHERE plan = $1 "
                "ORDER BY started_at DESC LIMIT 1",
                self.plan,
            )
            if row is None or row["status"] not in ("STOPPED", "RUNNING"):
                return None
            done = await conn.fetch(
                "SELECT job FROM async_etl_plan_jobs WHERE plan_run_id = $1 "
                "AND status = 'SUCCEEDED'",
                row["plan_run_id"],
            )
            if row["status"] == "RUNNING":  # we hold the plan lock: its orchestrator is gone
                await conn.execute(
                    "UPDATE async_etl_plan_runs SET status = 'STOPPED', finished_at = "
                    "clock_timestamp() WHERE plan_run_id = $1",
                    row["plan_run_id"],
                )
            return str(row["plan_run_id"]), [r["job"] for r in done]

        return await self._control("find resumable run", go)

    async def start_run(
        self,
        jobs: Sequence[str],
        *,
        local_max: int,
        global_max: int | None,
        namespace: str,
        resumed_from: str | None,
    ) -> str:
        """Insert the plan run (RUNNING) and a PENDING row per job; returns the plan_run_id."""
        self.plan_run_id = f"{self.plan}-{uuid.uuid4().hex[:12]}"

        async def go(conn: Any) -> None:
            async with conn.transaction():
                await self._insert_run(conn, jobs, local_max, global_max, namespace, resumed_from)

        await self._control("start run", go)
        return self.plan_run_id

    async def _insert_run(
        self,
        conn: Any,
        jobs: Sequence[str],
        local_max: int,
        global_max: int | None,
        namespace: str,
        resumed_from: str | None,
    ) -> None:
        self.started_at = await conn.fetchval(
            "INSERT INTO async_etl_plan_runs (plan_run_id, plan, status, host, pid, "
            "local_max, global_max, namespace, resumed_from) VALUES "
            "($1, $2, 'RUNNING', $3, $4, $5, $6, $7, $8) RETURNING started_at",
            self.plan_run_id,
            self.plan,
            socket.gethostname(),
            os.getpid(),
            local_max,
            global_max,
            namespace,
            resumed_from,
        )
        await conn.executemany(
            "INSERT INTO async_etl_plan_jobs (plan_run_id, job, status) VALUES ($1, $2, 'PENDING')",
            [(self.plan_run_id, job) for job in jobs],
        )

    async def job_started(self, job: str, attempt: int, at: datetime) -> None:
        """Mark ``job`` RUNNING for attempt number ``attempt``, which started ``at``."""
        await self._exec(
            "WITH j AS (UPDATE async_etl_plan_jobs SET status = 'RUNNING', attempts = $3, "
            "started_at = coalesce(started_at, $4) WHERE plan_run_id = $1 AND job = $2) "
            "INSERT INTO async_etl_plan_attempts (plan_run_id, job, attempt, started_at) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            self.plan_run_id,
            job,
            attempt,
            at,
        )

    async def attempt_ended(
        self, job: str, attempt: int, at: datetime, status: str, error: str | None
    ) -> None:
        """Close attempt ``attempt`` of ``job`` with its status and error."""
        await self._exec(
            "UPDATE async_etl_plan_attempts SET finished_at = $4, status = $5, error = $6 "
            "WHERE plan_run_id = $1 AND job = $2 AND attempt = $3",
            self.plan_run_id,
            job,
            attempt,
            at,
            status,
            error,
        )

    async def job_status(
        self,
        job: str,
        status: str,
        *,
        finished_at: datetime | None = None,
        rows: int = 0,
        error: str | None = None,
        error_kind: str | None = None,
    ) -> None:
        """Set ``job``'s status (and, when it is over, its finish time, rows and error)."""
        await self._exec(
            "UPDATE async_etl_plan_jobs SET status = $3, finished_at = $4, rows = $5, "
            "error = $6, error_kind = $7 WHERE plan_run_id = $1 AND job = $2",
            self.plan_run_id,
            job,
            status,
            finished_at,
            rows,
            error,
            error_kind,
        )

    async def finish_run(self, status: str) -> None:
        """Close the plan run with its final status."""
        with anyio.CancelScope(shield=True):
            await self._exec(
                "UPDATE async_etl_plan_runs SET status = $2, finished_at = clock_timestamp() "
                "WHERE plan_run_id = $1",
                self.plan_run_id,
                status,
            )

    async def stop_requested(self) -> bool:
        """True when ``request_plan_stop`` was called for this plan after this run started."""

        async def go(conn: Any) -> bool:
            return bool(
                await conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM async_etl_plan_stops WHERE plan = $1 "
                    "AND requested_at >= $2)",
                    self.plan,
                    self.started_at,
                )
            )

        return await self._control("poll stop requests", go)


async def _control_connection(url: str, plan: str, *, first: bool = False) -> Any:
    """A connection holding ``plan``'s lock, with the tables created; errors translated.

    The lock held by another orchestrator: ``ConfigError`` at the ``first`` connection (the
    plan is already running), else ``AsyncEtlError`` (this run lost the lock with its
    connection and another orchestrator took it meanwhile).
    """
    conn = await open_connection(url)
    try:
        async with translated(url, "take the plan lock"):
            await ensure_tables(conn)
            locked = await conn.fetchval("SELECT pg_try_advisory_lock($1)", lock_key("plan", plan))
    except BaseException:
        conn.terminate()
        raise
    if not locked:
        conn.terminate()
        if not first:
            raise AsyncEtlError(
                f"plan {plan!r}: this orchestrator lost the plan lock when its state connection "
                f"to {mask_url(url)} was cut, and another orchestrator of the plan took it "
                "meanwhile; this one stops"
            )
        raise ConfigError(
            f"plan {plan!r} is already running against {mask_url(url)} (another orchestrator "
            f"holds its lock); wait for it, or stop it: async-etl stop {plan}"
        )
    return conn


async def request_plan_stop(
    state_url: str, plan_name: str, *, within: float = ONE_SHOT_OPEN_S
) -> bool:
    """Ask the orchestrator running ``plan_name`` on ``state_url`` to stop.

    Returns True when such an orchestrator is alive (it holds the plan lock) and the request
    was recorded; False when no orchestrator runs the plan.  A one-shot command's request
    (``state.one_shot``: one quick retry, ``within`` seconds at most, default
    ``ONE_SHOT_OPEN_S``); raises ``ConfigError`` when the state store cannot be reached or
    does not answer in time, in one line naming the URL once, and ``ValueError`` for a
    ``within`` that is not a finite number > 0.
    """
    where = f"PostgreSQL {mask_url(state_url)}"  # one_shot's line: 'state store: ' + this

    async def once() -> bool:
        conn = await open_connection(state_url, where=where)
        try:
            async with translated(state_url, "request a plan stop", where=where):
                await ensure_tables(conn)
                key = lock_key("plan", plan_name)
                if await conn.fetchval("SELECT pg_try_advisory_lock($1)", key):
                    await conn.execute("SELECT pg_advisory_unlock($1)", key)
                    return False
                await conn.execute(
                    "INSERT INTO async_etl_plan_stops (plan, requested_by) VALUES ($1, $2)",
                    plan_name,
                    f"{socket.gethostname()}:{os.getpid()}",
                )
                return True
        finally:
            await close_quietly(conn)

    return await one_shot(
        state_url,
        lambda: retrying(once, ONE_SHOT, what="state store: request a plan stop"),
        within,
    )
