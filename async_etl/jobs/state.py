"""The PostgreSQL state store: runs, chunk checkpoints, rejects and stop requests.

One ``StateStore`` per job run holds one connection (one budget token) for the whole run and
serialises its statements with a lock.  Every call is retried on a transient failure (lost
connection, admin shutdown, ...) on a fresh connection, so terminating the store's backend
mid-run costs a reconnect, not the run.  The tables come from ``async_etl.core.state_sql``;
stop requests live in ``async_etl_stop_requests`` (one row per run asked to stop), written by
``async-etl stop`` and polled by the running job.  A job still starting (preflight, planning:
no run recorded yet, its state connection open) is asked with a row ``starting:JOB``, which
the run takes as soon as it is recorded, when the request is newer than its state connection.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeAlias, TypeVar, cast

import anyio

from async_etl.core import state_sql as sq
from async_etl.core.incremental import CursorWindow, run_cursor, stuck, unsure, untag
from async_etl.core.retry import RetryPolicy
from async_etl.core.scd_sql_common import Sql
from async_etl.core.urls import mask_url
from async_etl.core.waits import wait_problem
from async_etl.drivers.postgres import (
    APP_PREFIX,
    PG_ERRORS,
    close_quietly,
    connect_job,
    translate_pg,
)
from async_etl.errors import AsyncEtlError, CheckpointError, TransientError, network, unusable
from async_etl.jobs.budget import LimiterBudget
from async_etl.jobs.context import BudgetHolder, ConnectionMeter, Holder
from async_etl.log import get_logger
from async_etl.runtime.retrying import retrying

__all__ = ["STOP_DDL", "RunLife", "RunRow", "StateStore", "one_shot", "starting_key", "with_store"]

log = get_logger(__name__)
T = TypeVar("T")

STOP_TABLE = "async_etl_stop_requests"
STOP_DDL = Sql(
    f"CREATE TABLE IF NOT EXISTS {STOP_TABLE} (run_id text PRIMARY KEY, "
    "requested_at timestamptz NOT NULL DEFAULT now())"
)
"""Stop requests: a row asks the running run ``run_id`` to stop at its next safe point."""
STATE_DDL_LOCK = 0x6A57_0E72  # arbitrary, constant: serialises the jobs' state-table DDL

_REQUEST_STOP = (
    "INSERT INTO async_etl_stop_requests (run_id) SELECT run_id FROM async_etl_runs "
    "WHERE status = 'RUNNING' AND (run_id = $1 OR job = $1) ON CONFLICT (run_id) "
    "DO UPDATE SET requested_at = async_etl_stop_requests.requested_at RETURNING run_id"
)
"""Ask RUNNING runs to stop; a run already asked keeps its request and is returned again."""
_REQUEST_STARTING_STOP = (
    "INSERT INTO async_etl_stop_requests (run_id) SELECT $1 WHERE EXISTS ("
    "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
    "AND application_name = left($2, 63)) "
    "ON CONFLICT (run_id) DO UPDATE SET requested_at = now() RETURNING run_id"
)
_STARTING_JOBS = (
    "SELECT application_name FROM pg_stat_activity WHERE datname = current_database() "
    "AND application_name LIKE $1 AND pid <> pg_backend_pid()"
)
_TAKE_STARTING_STOP = (
    "WITH gone AS (DELETE FROM async_etl_stop_requests WHERE run_id = $1 "
    "RETURNING requested_at) SELECT count(*) FROM gone WHERE requested_at >= "
    "(SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid())"
)


_JOB_LOCK_SQL = "SELECT pg_try_advisory_lock(hashtextextended('async-etl job:' || $1, 0))"
"""Take the session-level advisory lock of job ``$1`` if free (True) or not (False)."""
_RUN_LIVES = (
    "SELECT r.run_id, CASE WHEN r.run_id <> (SELECT l.run_id FROM async_etl_runs l "
    "WHERE l.job = r.job ORDER BY l.started_at DESC LIMIT 1) THEN 'replaced' "
    "WHEN EXISTS (SELECT 1 FROM pg_locks l "
    "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND l.database = "
    "(SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND l.classid::bigint = (hashtextextended('async-etl job:' || r.job, 0) >> 32) & 4294967295 "
    "AND l.objid::bigint = hashtextextended('async-etl job:' || r.job, 0) & 4294967295) "
    "THEN 'live' ELSE 'killed' END FROM async_etl_runs r WHERE r.run_id = ANY($1::text[])"
)
"""Each of the runs ``$1``: replaced (not its job's latest run, which ``UNFINISHED_RUN``
alone resumes), live (its job's ``_JOB_LOCK_SQL`` lock is held, read from ``pg_locks``) or
killed.

A bigint advisory key shows there as ``classid`` (high 32 bits), ``objid`` (low 32 bits) and
``objsubid = 1`` (PostgreSQL manual, "pg_locks").  Reading it takes no lock, so it never
makes a starting run of the job think another one is running.
"""

RunLife: TypeAlias = Literal["live", "killed", "replaced"]
"""What a RUNNING run is: see ``StateStore.run_lives``."""


def starting_key(job: str) -> str:
    """The stop-request row asking ``job``'s starting run to stop (no run id exists yet)."""
    return f"starting:{job}"


_RUN_COLUMNS = (
    "run_id, job, status, as_of, started_at, finished_at, rows_read, rows_inserted, "
    "rows_updated, rows_expired, rows_deleted, rows_rejected, error"
)


@dataclass(frozen=True, slots=True)
class RunRow:
    """One row of ``async_etl_runs`` (counters by their JobResult names)."""

    run_id: str
    job: str
    status: str
    as_of: datetime
    started_at: datetime
    finished_at: datetime | None
    rows_read: int
    inserted: int
    updated: int
    expired: int
    deleted: int
    rejected: int
    error: str | None

    @classmethod
    def of(cls, r: Any) -> RunRow:
        """Build from a record selected with the standard column list."""
        n = [int(v) for v in tuple(r)[6:12]]
        return cls(r[0], r[1], r[2], r[3], r[4], r[5], n[0], n[1], n[2], n[3], n[4], n[5], r[12])


class StateStore:
    """Run and chunk state in the PostgreSQL database at ``url``.

    Use as ``async with StateStore(url, budget, app=...) as store``.  Methods raise
    ``CheckpointError`` when the store fails for good, ``TransientError`` only after the
    retries are spent.  ``job``: the job whose run this store records; its connection then
    holds the job's lock, and entering raises ``CheckpointError`` when another run holds it.
    """

    def __init__(
        self,
        url: str,
        holder: Holder,
        *,
        app: str,
        policy: RetryPolicy | None = None,
        job: str | None = None,
    ) -> None:
        self.url = url
        self._holder = holder
        self._app = app
        self._job = job
        self._policy = policy or RetryPolicy(max_retries=8, base=0.1, cap=3.0)
        self._conn: Any = None
        self._lock = anyio.Lock()
        self._stack = AsyncExitStack()
        self._opening: anyio.Event | None = None
        self._held = False  # the job's lock was taken once: failing to re-take it is a loss
        self.lock_lost = False  # the job's lock was lost to another run: stop at once
        self.cut = anyio.Event()  # set when the connection holding the job's lock closes

    def open_later(self) -> None:
        """Make calls wait for ``__aenter__`` (run in another task) to finish first.

        The connection is then opened beside other work; a call made meanwhile does not open
        a second one.
        """
        self._opening = anyio.Event()

    async def __aenter__(self) -> StateStore:
        """Take a budget token and connect (retrying transient failures with the policy)."""
        try:
            await self._stack.enter_async_context(self._holder(self.url))
            try:
                self._conn = await retrying(self._connect, self._policy,
                                            what="state store: connect")  # fmt: skip
            except BaseException:
                await self._stack.aclose()
                raise
        finally:
            if self._opening is not None:
                self._opening.set()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Close the connection and give the token back."""
        await self._close()
        await self._stack.aclose()

    async def _call(self, what: str, fn: Callable[[Any], Awaitable[T]]) -> T:
        async def once() -> T:
            if self._conn is None:
                self._conn = await self._connect()
            try:
                return await fn(self._conn)
            except PG_ERRORS as exc:
                self._drop()
                raise translate_pg(exc, f"state store: {what}") from exc
            except BaseException:  # cancelled mid-statement: cancel it server-side, then close
                await self._close()
                raise

        async def reset() -> None:
            self._drop()

        if self._opening is not None:
            await self._opening.wait()
        async with self._lock:
            try:
                return await retrying(once, self._policy, what=f"state store: {what}",
                                      reset=reset)  # fmt: skip
            except TransientError:
                raise
            except AsyncEtlError as exc:
                raise CheckpointError(exc.message) from exc

    async def _connect(self) -> Any:
        """A new state connection; for a job's run, holding the job's lock (``_JOB_LOCK_SQL``).

        Raises ``CheckpointError`` when another run of the job holds it: two processes running
        one job at once would both run its pending chunks (an append then loads them twice).
        On a reconnect (this run held the lock and lost it with its connection) the message
        says the run lost its lock, not that the job is already running.
        The lock is a session lock, so it is re-taken on every reconnect and dies with a
        killed run's connection, leaving the run to resume.  ``cut`` is set the moment the
        connection holding it closes (the runner then re-takes it at once, see
        ``runner._watch_stop``); ``lock_lost`` once re-taking it failed.
        """
        conn = await connect_job(self.url, self._app)
        if self._job is None:
            return conn
        try:
            held = await conn.fetchval(_JOB_LOCK_SQL, self._job)
        except PG_ERRORS as exc:
            conn.terminate()
            raise translate_pg(exc, "state store: take the job's lock") from exc
        if not held:
            await close_quietly(conn)
            if self._held:  # a reconnect: this run had the lock and another run took it
                self.lock_lost = True
                raise CheckpointError(
                    f"job {self._job}: this run lost its lock when its state connection was "
                    f"cut, and another run of job {self._job} took it meanwhile; this run stops "
                    "and that one goes on with the job"
                )
            raise CheckpointError(
                f"job {self._job} is already running (another process holds its lock in this "
                f"state store); wait for it, or stop it: async-etl stop {self._job}"
            )
        self._held = True
        self.cut = anyio.Event()
        conn.add_termination_listener(self._on_cut)
        return conn

    def _on_cut(self, _conn: Any) -> None:
        """The lock's connection closed (asyncpg's termination listener): the lock went with it."""
        self.cut.set()

    async def _close(self) -> None:
        """Close the connection, if any (``close_quietly``: shielded); the next call reconnects."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await close_quietly(conn)

    def _drop(self) -> None:
        """Forget the connection after a failed call; the next call reconnects.

        Whatever the failure (a killed backend, the retries spent), the connection may still
        hold the failed operation's protocol state: asyncpg then refuses every later statement
        on it with "cannot switch to state 12; another operation is in progress", and the run
        could not record another checkpoint.  A cancelled call closes its connection instead
        (``close_quietly``, shielded: asyncpg cancels the statement on the server first, so the
        backend does not run on with its locks held).
        """
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    async def ensure(self) -> None:
        """Create the state tables (idempotent, safe for jobs starting at the same moment).

        One catalog query first (``state_sql.state_ready_sql``): when every table, index and
        column is there, nothing else is sent (no DDL parsed, no DO blocks run at every start,
        and no CREATE privilege on the schema needed).  Otherwise two ``CREATE TABLE IF NOT
        EXISTS`` racing on an empty state store can both pass the check and one then fails on
        the catalog's unique index; a transaction-scoped advisory lock serialises them.  The
        statements go as one simple-query script, which PostgreSQL runs as one transaction
        (rolled back whole if a statement fails).
        """
        ready = sq.state_ready_sql((*sq.STATE_TABLES, STOP_TABLE))
        script = ";\n".join(
            [f"SELECT pg_advisory_xact_lock({STATE_DDL_LOCK})",
             *(st.text for st in (*sq.STATE_DDL, STOP_DDL))]
        )  # fmt: skip

        async def go(c: Any) -> None:
            if not await c.fetchval(ready):
                await c.execute(script)

        await self._call("create state tables", go)

    async def unfinished(self, job: str) -> tuple[str, datetime, dict[str, Any]] | None:
        """The latest run of ``job`` that did not succeed: (run_id, as_of, plan JSON)."""

        async def go(c: Any) -> tuple[str, datetime, dict[str, Any]] | None:
            if await c.fetchval("SELECT to_regclass('async_etl_runs')") is None:
                return None
            r = await c.fetchrow(sq.UNFINISHED_RUN.text, job)
            if r is None or r["plan"] is None:
                return None
            return r["run_id"], r["as_of"], json.loads(r["plan"])

        return await self._call("find unfinished run", go)

    async def start_run(
        self, run_id: str, job: str, as_of: datetime, plan: dict[str, Any], bounds: list[str]
    ) -> None:
        """Record a new run with its plan and one PENDING row per chunk, in one statement.

        ``state_sql.START_RUN``: two round trips (asyncpg prepares a statement, then runs it)
        where a transaction of four statements took nine.  Its commit does not wait for the
        WAL flush (``synchronous_commit`` off in that transaction only, 3-4 ms on a local
        server): a server crash can lose the record only together with everything the run did
        after it, since every later commit on that server that must last (a checkpoint kept
        apart from its chunk, the swap, the run's status) waits for a flush, which covers every
        WAL record before it.  A run whose record was lost starts again as a new run; nothing
        of it was kept.
        """

        async def go(c: Any) -> None:
            await c.execute(sq.START_RUN.text, run_id, job, as_of, json.dumps(plan), list(bounds))

        await self._call("start run", go)

    async def resume_run(self, run_id: str) -> tuple[set[int], RunRow]:
        """Mark ``run_id`` RUNNING again; its committed chunks and its row as they count.

        The row's counters are the sums over the committed chunks' checkpoints (exact: a chunk
        and its checkpoint commit together on a PostgreSQL target), or the run row's last
        update when a chunk was checkpointed by a version that did not record its counts.
        """

        async def go(c: Any) -> tuple[set[int], RunRow]:
            async with c.transaction():
                await c.execute(
                    "UPDATE async_etl_runs SET status = 'RUNNING', finished_at = NULL, "
                    "error = NULL WHERE run_id = $1",
                    run_id,
                )
                await c.execute("DELETE FROM async_etl_stop_requests WHERE run_id = $1", run_id)
                done = {int(r[0]) for r in await c.fetch(sq.COMMITTED_CHUNKS.text, run_id)}
                sums = [int(v) for v in await c.fetchrow(sq.COMMITTED_COUNTS.text, run_id)]
                row = await c.fetchrow(
                    f"SELECT {_RUN_COLUMNS} FROM async_etl_runs WHERE run_id = $1", run_id
                )
            run = {**_asdict(RunRow.of(row)), "rows_read": sums[0]}
            if sums[-1] == 0:  # every committed chunk carries its counts: add them up
                run |= dict(zip(sq.COUNTED, sums[1:-1], strict=True))  # RunRow's fields
            return done, RunRow(**run)

        return await self._call("resume run", go)

    async def checkpoint(
        self,
        run_id: str,
        index: int,
        bounds: str,
        rows: int,
        cursor: str | None = None,
        counts: str | None = None,
        loader: str | None = None,
    ) -> None:
        """Mark a chunk COMMITTED (targets whose merge cannot share this transaction).

        ``cursor``: the incremental cursor the chunk covers, as tagged JSON text (or None);
        ``counts``: its change counters (``state_sql.chunk_counts``); ``loader``: the run's
        ``JobContext.loader``.
        """

        async def go(c: Any) -> None:
            await c.execute(
                sq.CHECKPOINT_CHUNK.text, run_id, index, bounds, rows, cursor, counts, loader
            )

        await self._call("checkpoint chunk", go)

    async def committed_cursor(self, job: str, column: str) -> Any:
        """The cursor ``job`` has committed over ``column`` (None: none yet, read everything).

        It is ``run_cursor`` of the job's latest run over that column, from its checkpoints.
        """
        return (await self.committed(job, column))[0]

    async def committed(self, job: str, column: str) -> tuple[Any, bool | None]:
        """``committed_cursor``, and whether it is ``stuck`` (NaN / +infinity: never moves).

        None: cannot tell, a date or time at 9999-12-31 that may have been ``infinity``
        (``incremental.unsure``).  See ``core.incremental``, "An endless cursor".
        """

        async def go(c: Any) -> tuple[Any, bool | None]:
            if not await c.fetchval(sq.HAS_CHUNK_CURSORS.text):
                return None, False  # no state yet, or state from before incremental runs existed
            r = await c.fetchrow(sq.LAST_WINDOW.text, job, column)
            if r is None:
                return None, False
            stored = json.loads(r[0])
            window = CursorWindow.from_json(stored)
            done = {int(i): untag(v) for i, v in json.loads(r[2])}
            chunks = range(int(r[1]))
            value = run_cursor(window, chunks, done)
            if stuck(window, chunks, done):
                return value, True
            return value, None if unsure(stored, value) else False

        return await self._call("read committed cursor", go)

    async def update_run(self, values: dict[str, Any]) -> None:
        """``UPDATE_RUN`` with ``values`` keyed by its logical parameter names."""

        async def go(c: Any) -> None:
            await c.execute(sq.UPDATE_RUN.text, *sq.UPDATE_RUN.args(values))

        await self._call("update run", go)

    async def run_ids(self, job: str, among: Sequence[str]) -> list[str]:
        """The run ids of ``among`` that are runs of ``job`` recorded here (``JOB_RUN_IDS``)."""

        async def go(c: Any) -> list[str]:
            return [str(r[0]) for r in await c.fetch(sq.JOB_RUN_IDS.text, job, list(among))]

        return await self._call("read run ids", go)

    async def add_rejects(self, job: str, run_id: str, rejects: Sequence[tuple[str, str]]) -> None:
        """Record rejected rows: (key as JSON text, reason)."""

        async def go(c: Any) -> None:
            await c.executemany(sq.INSERT_REJECT.text, [(job, run_id, k, r) for k, r in rejects])

        if rejects:
            await self._call("record rejects", go)

    async def has_rejects(self, run_id: str, reason: str) -> bool:
        """Whether ``run_id`` has recorded a reject whose reason starts with ``reason``.

        (``HAS_REJECT_REASON``.)
        """

        async def go(c: Any) -> bool:
            return bool(await c.fetchval(sq.HAS_REJECT_REASON.text, run_id, reason))

        return await self._call("read rejects", go)

    async def stop_requested(self, run_id: str) -> bool:
        """True when ``async-etl stop`` asked this run to stop."""

        async def go(c: Any) -> bool:
            found = await c.fetchval(
                "SELECT 1 FROM async_etl_stop_requests WHERE run_id = $1", run_id
            )
            return found is not None

        return await self._call("poll stop requests", go)

    async def clear_stop(self, run_id: str) -> None:
        """Forget the stop request of ``run_id`` (once it has stopped)."""

        async def go(c: Any) -> None:
            await c.execute("DELETE FROM async_etl_stop_requests WHERE run_id = $1", run_id)

        await self._call("clear stop request", go)

    async def request_stop(self, job_or_run: str) -> list[str]:
        """Ask every RUNNING run of a job (or the one run with that id) to stop; their ids."""

        async def go(c: Any) -> list[str]:
            return [str(r[0]) for r in await c.fetch(_REQUEST_STOP, job_or_run)]

        return await self._call("request stop", go)

    async def request_starting_stop(self, job: str) -> bool:
        """Ask ``job``'s run still starting (state connection open) to stop; True if one is."""
        app = f"{APP_PREFIX}:{job}:state"

        async def go(c: Any) -> bool:
            return await c.fetchval(_REQUEST_STARTING_STOP, starting_key(job), app) is not None

        return await self._call("request stop", go)

    async def starting_jobs(self) -> list[str]:
        """Jobs still starting here: their state connection is open, no RUNNING run yet."""

        async def go(c: Any) -> list[str]:
            rows = await c.fetch(_STARTING_JOBS, f"{APP_PREFIX}:%:state")
            jobs = sorted({str(r[0])[len(APP_PREFIX) + 1 : -len(":state")] for r in rows})
            if jobs and await c.fetchval("SELECT to_regclass('async_etl_runs')") is not None:
                running = await c.fetch(
                    "SELECT DISTINCT job FROM async_etl_runs WHERE status = 'RUNNING'"
                )
                jobs = [j for j in jobs if j not in {str(r[0]) for r in running}]
            return jobs

        return await self._call("read starting jobs", go)

    async def take_starting_stop(self, job: str) -> bool:
        """Remove the ``starting:JOB`` request; True when it was made after this run began."""

        async def go(c: Any) -> bool:
            return bool(await c.fetchval(_TAKE_STARTING_STOP, starting_key(job)))

        return await self._call("read stop request", go)

    async def run_lives(self, run_ids: Iterable[str]) -> dict[str, RunLife]:
        """What each RUNNING run among ``run_ids`` is (absent: no such run).

        ``live``: its job's latest run, and a process holds the job's lock; ``killed``: the
        latest, its lock died with its session, and the next run resumes it; ``replaced``: a
        later run of its job (``--fresh``) took its place, and no run resumes it.
        """
        ids = sorted(set(run_ids))
        if not ids:
            return {}

        async def go(c: Any) -> dict[str, RunLife]:
            return {str(r[0]): cast(RunLife, r[1]) for r in await c.fetch(_RUN_LIVES, ids)}

        return await self._call("read live runs", go)

    async def running_runs(self, job_or_run: str) -> list[tuple[str, str]]:
        """(run id, job) of every RUNNING run of a job, or of the one run with that id."""

        async def go(c: Any) -> list[tuple[str, str]]:
            rows = await c.fetch(
                "SELECT run_id, job FROM async_etl_runs WHERE status = 'RUNNING' "
                "AND (run_id = $1 OR job = $1)",
                job_or_run,
            )
            return [(str(r[0]), str(r[1])) for r in rows]

        return await self._call("read running runs", go)

    async def recent_runs(self, job: str | None, limit: int = 20) -> list[RunRow]:
        """The latest runs, newest first (of one job, or of all; none without state tables)."""

        async def go(c: Any) -> list[RunRow]:
            if await c.fetchval("SELECT to_regclass('async_etl_runs')") is None:
                return []  # no job has recorded a run in this database
            where = "WHERE job = $2" if job is not None else ""
            args: list[Any] = [limit] + ([job] if job is not None else [])
            rows = await c.fetch(
                f"SELECT {_RUN_COLUMNS} FROM async_etl_runs {where} "
                "ORDER BY started_at DESC LIMIT $1",
                *args,
            )
            return [RunRow.of(r) for r in rows]

        return await self._call("read runs", go)


def _asdict(run: RunRow) -> dict[str, Any]:
    return {name: getattr(run, name) for name in RunRow.__dataclass_fields__}


ONE_SHOT = RetryPolicy(max_retries=1, base=0.05, cap=0.5, connect_base=0.25)
"""A one-shot command's retries (``status``, ``stop``): one quick retry, not a run's eight
(0.5 s to 3 s apart: ~13 s before a closed port's refusal was reported)."""
ONE_SHOT_OPEN_S = 5.0
"""The default of how long (seconds) a one-shot command may take to open the store (a plan's
stop: to write its request), retry included: a host that drops the packets, or a server that
takes the connection and never answers, refuses nothing.  ``status`` / ``stop --timeout``
change it, and ``one_shot`` / ``with_store`` / ``request_plan_stop`` take ``within=``."""


async def one_shot(
    url: str, opening: Callable[[], Awaitable[T]], within: float = ONE_SHOT_OPEN_S
) -> T:
    """``await opening()`` within ``within`` seconds for ``status`` and ``stop`` (job or plan).

    ``opening`` retries with ``ONE_SHOT`` (a person is waiting, and running the command again
    is the retry) and names the store ``PostgreSQL <url>`` (password masked) in its errors.
    Raises ``ConfigError`` when it fails (unreachable, no such database, a bad password) or
    does not answer in ``within`` seconds (default ``ONE_SHOT_OPEN_S``), in one line naming
    the URL once: the CLI's bad input, exit 2; ``ValueError`` when ``within`` is not a finite
    number > 0 (``wait_problem``).
    """
    if (problem := wait_problem(within)) is not None:
        raise ValueError(f"within: {problem}")
    try:
        with anyio.fail_after(within):
            return await opening()
    except AsyncEtlError as exc:
        raise unusable(f"state store: {exc.message}", exc) from exc
    except TimeoutError as exc:
        where = f"state store: PostgreSQL {mask_url(url)}"
        raise unusable(f"{where}: no answer within {within:g} s", network(where)) from exc


async def with_store(
    url: str,
    app: str,
    fn: Callable[[StateStore], Awaitable[T]],
    *,
    within: float = ONE_SHOT_OPEN_S,
) -> T:
    """Open a store, run ``fn`` on it, close it (for the CLI's one-shot commands).

    The store is opened through ``one_shot`` (``ONE_SHOT``'s retries within ``within``
    seconds, default ``ONE_SHOT_OPEN_S``).  Raises ``ConfigError`` when the store cannot be
    opened (unreachable, no answer in time, no such database, a bad password): the CLI's bad
    input, exit status 2, as for ``run``; ``ValueError`` for a ``within`` that is not a finite
    number > 0.
    """
    holder = BudgetHolder(LimiterBudget(1), ConnectionMeter())
    store = StateStore(url, holder, app=app, policy=ONE_SHOT)
    await one_shot(url, store.__aenter__, within)
    try:
        return await fn(store)
    finally:
        await store.__aexit__()
