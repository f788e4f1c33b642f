"""``run_job``: run one mapper job to the end, a stop, or a failure, and report it.

Theory of operation
-------------------
0. the job's minimum connections on each database (``core.job_budget``) are taken out of the
   ``ConnectionBudget`` at once (``jobs.grant.reserved``), waiting while other jobs hold them;
   every connection of the run is then lent a token of that grant, or one more the budget has
   free, and never waits on the budget holding part of it, so jobs sharing a budget cannot
   each hold what the other waits for.  A stop while waiting ends the call STOPPED, unstarted;
1. ``planning.preflight`` (reads only; ``ConfigError`` is raised from here and nowhere later);
   its target and source connections (two PostgreSQL databases) open at once, beside the
   state store's (``connected_ahead``; budget tokens target first, as chunks take them);
2. state tables and target table are created if missing, while the source is surveyed (its
   estimate, NULL keys and chunk cuts: reads only); ``planning.plan_run`` records the new
   run with its stored chunk plan (or resumes the unfinished one: same T, same chunks);
   from then on a failure ends the run FAILED in the state store, never left RUNNING (the
   NULL-key rejects are recorded after it, ``planning.record_null_rejects``);
   every round trip of steps 1, 2 and 5 (and the state store's) is retried on a transient
   failure with the run's policy (``JobOptions.retry``), reconnecting each time;
3. chunks run in key order, at most ``workers`` in flight (a ``CapacityLimiter``; one task per
   chunk in one task group), each on its own connections taken from the ``ConnectionBudget``
   (two on one database: both tokens at once, ``BudgetHolder.step``).
   A chunk that committed leaves its PostgreSQL connections open on the run's ``Shelf`` for
   the next chunk's first attempt (at most ``workers`` idle per database; all closed once the
   chunks end, while the next step goes on); a failed attempt closes them.  The first chunk
   finds there the survey's source connection and the preparation's target one, left in
   step 2 when source and target are two databases (``_shelve_early``).  A transient
   failure retries the whole chunk (its transaction was rolled back), on fresh connections,
   after an exponential backoff with full jitter; anything else fails the run, lets the
   chunks in flight finish, and starts no more;
4. a stop (the ``stop`` event, SIGINT/SIGTERM in the CLI, or ``async-etl stop`` polled from the
   state store before each chunk and every half second) starts no more chunks; chunks in
   flight finish, or roll back at their next safe point (between batches);
   the state connection holds the job's lock (``jobs.state``): when it is cut, the poll runs at
   once and reconnects, re-taking the lock before any new chunk; if another run took it
   meanwhile, the run fails in one line and cancels its chunks in flight (their transactions
   roll back: a checkpoint could not be written under the lock, and the other run loads them);
5. the committed chunks advance the contiguous watermark; ``async_etl_runs`` is updated every
   ``UPDATE_EVERY`` chunks and at the end;
6. an incremental job reads only the run's cursor window (``core.incremental``, decided in
   preflight); every chunk checkpoint records the cursor it covers, and the run's cursor
   (``run_cursor``) reaches the window's top only once every chunk is committed;
7. a full refresh (``core.modes``) loads its chunks into a new table and, once every chunk is
   committed, swaps it in for the target (``Target.swap``, retried; repeating it is a no-op);
   so does the initial load of a merge / SCD2 job into a PostgreSQL target that does not
   exist yet (``planning.builds_new_table``), decided after preflight.
8. once chunks are committed (and a full refresh is swapped in), ``Target.after_load`` moves
   a PostgreSQL target's identity / serial sequences past the loaded values
   (``core.sequences_pg``, retried); a failure is a ``sequences_not_advanced`` warning, the
   rows and the run's status stand;
9. once the state store records the run SUCCEEDED, a target that keeps a chunk ledger
   (PostgreSQL with the state elsewhere: ``pg_checkpoint``) deletes the rows of the job's
   runs there (``Target.forget_landed``; the runs asked for are those the ledger holds rows of,
   ``Target.landed_runs``, that the state store names the job's: the cost follows the ledger,
   not the job's run history, which is never pruned): every chunk's checkpoint is there then
   and none of those runs is resumed, so no load can need them again.  Housekeeping: one
   quick retry within ``[state] forget_timeout`` (default ``FORGET_S``), else a warning (the
   next success deletes them).  A run that did not succeed keeps its rows for the run that
   resumes it; the job's lock is held throughout.

``run_job`` never raises for a failed job: the ``JobResult`` says FAILED, with the one-line
error and its ``ErrorKind``.  Cancelling it marks the run STOPPED (shielded) and re-raises,
unless its end is recorded already (a cancel while step 9 runs leaves it SUCCEEDED).
The run's counters, watermark and failure, and what is reported from them (the run row, the
progress callback, the ``JobResult``), are ``jobs.tally.RunTally``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import anyio
import orjson
import structlog

from async_etl.core.chunks import Chunk, Watermark, remaining
from async_etl.core.job_budget import chunk_connections, minimum, needed_connections, refusal
from async_etl.core.state_sql import chunk_counts
from async_etl.core.stats import RunStats
from async_etl.core.urls import dialect_of
from async_etl.drivers.postgres import last_closes
from async_etl.drivers.postgres_connections import (
    Lent,
    Shelf,
    closing_beside,
    connected_ahead,
    keep_from,
    keep_lent,
    lend_kept,
    release_lent,
    reusing,
    shelve_kept,
    shelved,
)
from async_etl.errors import (
    AsyncEtlError,
    ConfigError,
    LoadError,
    StopRequested,
    unusable,
)
from async_etl.jobs.api import ConnectionBudget, JobOptions, JobResult, Progress, RunStatus
from async_etl.jobs.budget import LimiterBudget, database_key, token_limit
from async_etl.jobs.context import (
    COUNTERS,
    BudgetHolder,
    ChunkResult,
    ConnectionMeter,
    JobContext,
)
from async_etl.jobs.endpoints import Target, make_source, make_target
from async_etl.jobs.grant import reserved
from async_etl.jobs.planning import (
    Decision,
    Plan,
    Survey,
    as_new_build,
    builds_new_table,
    plan_run,
    preflight,
    record_null_rejects,
    survey,
)
from async_etl.jobs.progress import RateMeter
from async_etl.jobs.spec import FORGET_S, JobSpec, refuse_unused
from async_etl.jobs.tally import RunTally
from async_etl.log import get_logger
from async_etl.sources.port import Source

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from async_etl.jobs.ray_chunks import ChunkExecutor
    from async_etl.typing import Holder
from async_etl.jobs.state import StateStore
from async_etl.runtime.retrying import retrying

__all__ = ["FORGET_S", "UPDATE_EVERY", "job_minimum", "run_job"]

log = get_logger(__name__)

UPDATE_EVERY = 5
"""``async_etl_runs`` is updated after this many committed chunks (and at the end)."""

STOP_POLL_S = 0.5


async def run_job(
    spec: JobSpec,
    *,
    options: JobOptions = JobOptions(),  # noqa: B008 - frozen, shared safely
    stop: anyio.Event | None = None,
    budget: ConnectionBudget | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    executor: ChunkExecutor | None = None,
) -> JobResult:
    """Run ``spec`` once (resuming its unfinished run unless ``options.fresh``).

    ``executor`` runs the chunk attempts elsewhere (``jobs.ray_chunks.RayChunks``: in Ray
    actors); the caller closes it.  Raises ``ConfigError`` only for problems found before
    anything is written (bad spec, a ``budget`` too small for the job (``job_minimum``),
    unknown columns, unreachable database, an as-of before the target's history); every
    failure after that is reported in the returned ``JobResult`` (status FAILED).
    """
    refuse_unused(spec)  # a spec built in code; the loader refuses the same in a file
    options = options.with_job_retry(spec.retry)
    budget = budget or LimiterBudget(spec.parallel.max_workers + 2)
    source = make_source(spec)
    target = make_target(spec)
    job = _JobRun(spec, options, stop or anyio.Event(), budget, on_progress, source, target)
    job.executor = executor
    job.chunk_urls = chunk_connections(
        spec.source.url, spec.target.url, database_key, apart=executor is not None
    )
    with structlog.contextvars.bound_contextvars(job=spec.name):
        async with AsyncExitStack() as grant:
            try:  # the job's minimum, at once: see ``jobs.grant``
                need, refuse = job_minimum(spec, apart=executor is not None)
                reserving = reserved(budget, need, job.external_stop, refuse)
                job.holder.grant = await grant.enter_async_context(reserving)
            except StopRequested:
                log.info("stop_requested", waiting_for="connection budget")
                return stopped_unstarted(spec.name)
            return await job.execute()


def preflight_keys(
    source: str, source_dialect: str, target: str, app: str, holder: Holder
) -> list[tuple[str, str, Holder]]:
    """Preflight's connections to open at once (``connected_ahead``): (URL, ``app``, ``holder``).

    Both PostgreSQL, in two databases: the target's key, then the source's, so the budget
    tokens are taken in the order a chunk takes them (target, then source): under a budget
    shared with other jobs a preflight holding the source's token while it waited for the
    target's, beside a chunk holding the target's while it waited for the source's, would
    wait for ever.  Empty otherwise (one database: its one kept connection serves both reads).
    """
    if source_dialect != "postgresql" or dialect_of(target) != "postgresql":
        return []
    if database_key(source) == database_key(target):
        return []
    return [(target, app, holder), (source, app, holder)]


def job_minimum(
    spec: JobSpec, *, apart: bool = False
) -> tuple[dict[str, int], Callable[[str, int], str]]:
    """``spec``'s minimum (URL -> connections, ``core.job_budget``) and its refusal line.

    The minimum (which orchestrator admission reserves too) is the connections the run holds
    at once on a database; below it the run would wait for ever for a token its own state
    connection holds, so ``jobs.grant.reserved`` refuses it with ``refuse(database key,
    limit)``: one line naming the database (credentials dropped), its limit, the minimum and
    why.  ``apart``: chunks run by an executor that holds a source and a target token even in
    one database.  Connects to nothing.
    """
    urls = (spec.state.url, spec.source.url, spec.target.url)
    needs = needed_connections(*urls, database_key, apart=apart)

    def refuse(db: str, limit: int) -> str:
        return refusal(spec.name, db, limit, needs[db])

    return minimum(*urls, database_key, apart=apart), refuse


def stopped_unstarted(job: str) -> JobResult:
    """The result of a run stopped before it began (waiting for its connection budget)."""
    now = datetime.now(UTC)
    return JobResult(run_id="", job=job, status="STOPPED", as_of=now, started_at=now,
                     finished_at=now)  # fmt: skip


async def first_of(*events: anyio.Event) -> None:
    """Return once any of ``events`` is set."""
    async with anyio.create_task_group() as tg:

        async def wait(event: anyio.Event) -> None:
            await event.wait()
            tg.cancel_scope.cancel()

        for event in events:
            tg.start_soon(wait, event)


def job_error(job: str, exc: ConfigError) -> ConfigError:
    """``exc`` with its message starting ``job NAME:`` (itself when it already does)."""
    prefix = f"job {job}: "
    if exc.message.startswith(prefix):
        return exc
    err = ConfigError(prefix + exc.message)
    err.kind = exc.kind
    return err


class _JobRun(RunTally):
    """The mutable state of one ``run_job`` call (its counts and reports: ``RunTally``)."""

    def __init__(
        self,
        spec: JobSpec,
        options: JobOptions,
        stop: anyio.Event,
        budget: ConnectionBudget,
        on_progress: Callable[[Progress], None] | None,
        source: Source,
        target: Target,
    ) -> None:
        super().__init__(spec, on_progress, ConnectionMeter())
        self.options, self.external_stop = options, stop
        self.source, self.target = source, target
        self.holder = BudgetHolder(budget, self.meter)
        self.chunks_scope: anyio.CancelScope | None = None  # the chunks in flight, while they run
        self.since_update = 0
        self.chunk_stats = RunStats(started_at=time.perf_counter())  # feeds max_workers = auto
        self.executor: ChunkExecutor | None = None  # None: chunks run here, by the target driver
        self.chunk_urls: list[str] = []  # a chunk's connections (``core.job_budget``)
        self.shelf: Shelf | None = None  # the chunks' idle connections while they run
        self.lent: Lent | None = None
        """Preflight's last target connection, kept open for the target's preparation."""
        self.closing: TaskGroup | None = None
        """Set by ``execute`` for the whole run: connections whose closing nothing has to wait
        for (a graceful close waits for its backend to exit, about 2 ms) close in its tasks,
        beside the next step: preflight's kept one while the target is prepared, the chunks'
        idle ones while the swap starts, the swap's while the run's status is written; the
        state store's beside the last of them."""

    async def execute(self) -> JobResult:
        store = StateStore(
            self.spec.state.url,
            self.holder,
            app=f"{self.spec.name}:state",
            policy=self.options.retry,
            job=self.spec.name,
        )
        try:
            async with closing_beside() as self.closing:  # see ``closing``
                try:
                    return await self._execute(store)
                finally:
                    if self.lent is not None:  # not taken over: a failure before ``prepare``
                        self.closing.start_soon(release_lent, self.lent)
                    # beside the run's last kept connection's close (each waits ~2 ms for
                    # its backend to exit), not after it
                    self.closing.start_soon(store.__aexit__, None, None, None)
        finally:
            await store.__aexit__(None, None, None)  # a no-op once closed above

    async def _execute(self, store: StateStore) -> JobResult:
        """Preflight, then the run (``_run``); a cancelled run is marked STOPPED, shielded."""
        decision, new_build = await self._open_and_preflight(store)
        if new_build:
            self.spec = as_new_build(self.spec)
            self.target = make_target(self.spec)
            log.info("initial_load_into_new_table", table=self.spec.target.table)
        ctx = JobContext(
            spec=self.spec,
            run_id=decision.run_id,
            as_of=decision.as_of,
            columns=decision.columns,
            cols=decision.cols,
            collate=decision.collate,
            hold=self.holder,
            stop=anyio.Event(),
            state_url=store.url,
            add_columns=decision.add_columns,
            policy=self.options.retry,
            window=decision.window,
            resumed=decision.resumed_plan is not None,
            after_all=decision.after_all,
        )
        if decision.window is not None:
            read, self.source = self.source.plan_read, make_source(self.spec, decision.window)
            self.source.plan_read = read  # the cursor check's EXPLAIN: the estimate's too
        self.ctx = ctx
        self.holder.stop = ctx.stop
        with structlog.contextvars.bound_contextvars(run_id=ctx.run_id):
            try:
                return await self._run(ctx, store, decision)
            except anyio.get_cancelled_exc_class():
                if self.recorded is None:  # a status written stands (SUCCEEDED, then step 9)
                    with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                        await self._finish(store, "STOPPED")
                raise

    async def _open_and_preflight(self, store: StateStore) -> tuple[Decision, bool]:
        """Connect the state store while preflight reads; the decision and ``builds_new_table``.

        Preflight's first reads need no state, so the state connection (which ``async-etl
        stop`` finds a starting job by) opens beside them; preflight's first state call waits
        for it.  A state store that cannot be used wins over preflight's own failure, as when
        it was connected first.
        """
        failed: list[Exception] = []
        found: list[tuple[Decision, bool]] = []

        async def connect() -> None:
            try:
                try:
                    await store.__aenter__()
                except AsyncEtlError as exc:
                    raise unusable(
                        f"job {self.spec.name}: state store: {exc.message}", exc
                    ) from exc
            except Exception as exc:
                failed.insert(0, exc)
                tg.cancel_scope.cancel()

        store.open_later()
        async with anyio.create_task_group() as tg:
            tg.start_soon(connect)
            try:
                async with (
                    reusing(close_in=self.closing),  # one connection per database
                    connected_ahead(self._preflight_keys()),  # each, all at once
                ):
                    try:
                        decision = await preflight(
                            self.spec, self.options, self.source, self.target, store, self.holder
                        )
                    except ConfigError as exc:  # every refusal names the job, whichever check did
                        raise job_error(self.spec.name, exc) from exc.__cause__
                    app = f"{self.spec.name}:preflight"
                    policy = self.options.retry
                    new_build = await builds_new_table(
                        self.spec, decision, self.target, self.holder, app, policy
                    )
                    self.lent = lend_kept(self.spec.target.url)  # prepare goes on with it
                found.append((decision, new_build))
            except Exception as exc:
                failed.append(exc)
        if failed:
            raise failed[0]
        return found[0]

    def _preflight_keys(self) -> list[tuple[str, str, Holder]]:
        """Preflight's target and source connections (``preflight_keys``)."""
        return preflight_keys(
            self.source.url,
            self.source.dialect,
            self.spec.target.url,
            f"{self.spec.name}:preflight",
            self.holder,
        )

    async def _run(self, ctx: JobContext, store: StateStore, decision: Decision) -> JobResult:
        resumed = decision.resumed_plan is not None
        if self._shelve_early():  # the survey's and preparation's connections wait here
            self.shelf = Shelf(lambda: 1)  # for the first chunk (``_chunks`` sets its bound)
        try:
            surveyed = await self._prepare_and_survey(ctx, store, decision)
            self.plan = await plan_run(ctx, decision, self.source, store, surveyed)
            await record_null_rejects(ctx, decision, store, self.plan)  # FAILED if it fails
            if await store.take_starting_stop(self.spec.name):  # asked while it was starting
                log.info("stop_requested")
                ctx.stop.set()
        except AsyncEtlError as exc:
            self.failure = exc
            if self.plan is None:
                self._close_shelf()  # no chunk runs: what waits there closes beside
                if isinstance(exc, ConfigError):  # bad input, no run recorded: as in preflight
                    raise job_error(self.spec.name, exc) from exc
                return self._result("FAILED", resumed)
        except BaseException:  # cancelled (or a bug): nothing waits on the shelf any more
            self._close_shelf()
            raise
        plan = self.plan
        for k, v in plan.counters.items():
            self.counters[k] = v
        self.watermark = Watermark(len(plan.plan)).advance(plan.committed)
        self.rates = RateMeter(self.spec.name, ctx.run_id, len(plan.plan), len(plan.committed))
        if self.failure is None:
            self._report()
            try:
                await self._chunks(ctx, store, plan)
            except AsyncEtlError as exc:  # the state store gave up while polling for stops
                self.failure = self.failure or exc
        async with reusing(close_in=self.closing):  # the swap's connection moves the sequences
            if self.shelf is not None:  # they start on the last chunk's target connection
                keep_from(self.shelf, self.spec.target.url, self.holder, ctx.app)
                self._close_shelf()
            await self._after_chunks(ctx, plan)
            if self.failure is not None:
                status: RunStatus = "FAILED"
            elif self.watermark.complete:
                status = "SUCCEEDED"
            else:
                status = "STOPPED"
            await self._finish(store, status)
            if self.recorded == "SUCCEEDED":
                await self._forget_landed(ctx, store)
            last_closes()  # the run is over: at the command's end, closes need not wait
        return self._result(status, resumed)

    def _shelve_early(self) -> bool:
        """Whether the survey's and the preparation's connections wait for the first chunk.

        Only where the chunks run here (an executor's run elsewhere) and source and target
        are two databases: on one, the survey waits for the token the preparation's
        connection holds (a budget of 2 there: the state store's and one more), and a
        shelved one would hold it for ever.
        """
        return self.executor is None and database_key(self.source.url) != database_key(
            self.spec.target.url
        )

    async def _forget_landed(self, ctx: JobContext, store: StateStore) -> None:
        """Once SUCCEEDED is recorded: the target forgets the job's runs (see 9).

        Housekeeping: one quick retry, and ``[state] forget_timeout`` seconds at most (default
        ``FORGET_S``; a target gone after the success used to hold the finished run for the
        job's every retry, a dead host 15 s each).  A failure is a ``landed_not_forgotten``
        warning: the run stands, and the next run that succeeds deletes those rows too (they
        are the job's, in the same ledger).
        """
        policy = ctx.policy.at_most(1)
        within = self.spec.state.forget_timeout or FORGET_S  # None: the default
        try:
            with anyio.fail_after(within):
                await retrying(lambda: self._forget(ctx, store), policy, what="forget landed")
        except AsyncEtlError as exc:
            log.warning("landed_not_forgotten", error=exc.message)
        except TimeoutError:
            log.warning("landed_not_forgotten", error=f"no answer within {within:g} s")

    async def _forget(self, ctx: JobContext, store: StateStore) -> None:
        landed = await self.target.landed_runs(ctx)  # the ledger's, not the job's whole history
        mine = await store.run_ids(self.spec.name, landed) if landed else []
        if mine:
            await self.target.forget_landed(ctx, mine)

    async def _after_chunks(self, ctx: JobContext, plan: Plan) -> None:
        """A full refresh's swap once every chunk committed, then the sequences (see 7, 8)."""
        if self.failure is None and self.watermark.complete and self.spec.mode == "full_refresh":
            try:  # every chunk is in the new table: swap it in (a no-op once it committed)
                await retrying(lambda: self.target.swap(ctx), ctx.policy, what="swap new table in")
            except AsyncEtlError as exc:
                self.failure = exc
        if plan.committed and not (self.failure is not None and self.spec.mode == "full_refresh"):
            try:  # rows landed: identity / serial sequences go past them (a no-op when ahead)
                await retrying(lambda: self.target.after_load(ctx), ctx.policy,
                               what="advance sequences")  # fmt: skip
            except AsyncEtlError as exc:  # the rows are right; the user's next INSERT may not be
                log.warning("sequences_not_advanced", error=exc.message)

    async def _prepare_and_survey(
        self, ctx: JobContext, store: StateStore, decision: Decision
    ) -> Survey:
        """State tables and target prepared while the source is surveyed (reads only).

        The survey's source connection (PostgreSQL) and the preparation's target one wait on
        the run's shelf for the first chunk (``_shelve_early``), else the survey's is closed in
        the run's ``closing`` group: the run is recorded while its backend exits, not after.

        The three touch different connections and none needs another: at the same time,
        they cost the longest of the three instead of the sum.  A failure to create the state
        tables wins, then one to prepare the target (either cancels the rest); the survey's
        own failure is raised once both succeeded.  A state store that cannot create its
        tables may leave the target prepared (created, or its new table made): preparing is
        idempotent, and the next run does it again.
        """
        found: list[Survey] = []
        failed: dict[str, AsyncEtlError] = {}

        async def look() -> None:
            try:
                async with reusing(close_in=self.closing):  # its source connection closes aside
                    found.append(
                        await retrying(
                            lambda: survey(ctx, decision, self.source),
                            ctx.policy,
                            what="plan chunks",
                        )
                    )
                    if self.shelf is not None:  # or waits for the first chunk
                        await shelve_kept(self.shelf)
            except AsyncEtlError as exc:
                failed["survey"] = exc

        async def state_tables() -> None:
            try:
                await store.ensure()
            except AsyncEtlError as exc:
                failed["state"] = exc
                tg.cancel_scope.cancel()

        async with anyio.create_task_group() as tg:
            tg.start_soon(look)
            tg.start_soon(state_tables)
            try:
                async with reusing(close_in=self.closing):  # on preflight's target connection
                    if self.lent is not None:
                        lent, self.lent = self.lent, None
                        await keep_lent(lent, ctx.app)
                    await retrying(
                        lambda: self.target.prepare(ctx), ctx.policy, what="prepare target"
                    )
                    if self.shelf is not None:  # the first chunk goes on with it
                        await shelve_kept(self.shelf)
            except AsyncEtlError as exc:
                failed["target"] = exc
                tg.cancel_scope.cancel()
        for step in ("state", "target", "survey"):
            if step in failed:
                raise failed[step]
        return found[0]

    async def _chunks(self, ctx: JobContext, store: StateStore, plan: Plan) -> None:
        todo = remaining(plan.plan, plan.committed)
        limiter = anyio.CapacityLimiter(plan.workers)
        if self.shelf is None:
            self.shelf = Shelf(lambda: token_limit(limiter))
        else:  # holding the survey's and the preparation's connections (``_run``)
            self.shelf.keep = lambda: token_limit(limiter)
        try:
            await self._dispatch(ctx, store, todo, limiter, plan.workers)
        except BaseException:
            self._close_shelf()
            raise
        # ended: ``_run`` hands its target connection to the swap, then closes the shelf

    def _close_shelf(self) -> None:
        """Close the chunks' idle connections (and any given back later) beside the next step."""
        shelf, self.shelf = self.shelf, None
        if shelf is not None:
            shelf.closed = True
            assert self.closing is not None  # set by ``execute`` for the whole run
            self.closing.start_soon(shelf.aclose)

    async def _dispatch(
        self,
        ctx: JobContext,
        store: StateStore,
        todo: Sequence[Chunk],
        limiter: anyio.CapacityLimiter,
        workers: int,
    ) -> None:
        """Start each chunk of ``todo`` as ``limiter`` allows; return when all have ended."""
        par = self.spec.parallel
        async with anyio.create_task_group() as outer:
            outer.start_soon(self._watch_stop, ctx, store)
            if par.adaptive and workers > 1:  # chunk latency drives the worker count
                # imported here: a run on one worker (every small job) never needs them
                from async_etl.core.adaptive import AdaptiveSettings
                from async_etl.runtime.adaptive import AdaptiveLimit

                low = min(par.min_workers, workers)
                bounds = AdaptiveSettings(minimum=low, maximum=workers, initial=low)
                adapt = AdaptiveLimit(bounds, limiter)
                outer.start_soon(adapt.run, self.chunk_stats, time.perf_counter)
            async with anyio.create_task_group() as tg:
                self.chunks_scope = tg.cancel_scope
                for chunk in todo:
                    borrower = object()
                    await limiter.acquire_on_behalf_of(borrower)
                    if self.failure is not None or await self._stop_requested(ctx, store):
                        limiter.release_on_behalf_of(borrower)
                        break
                    tg.start_soon(self._chunk, ctx, store, chunk, limiter, borrower)
            outer.cancel_scope.cancel()

    async def _stop_requested(self, ctx: JobContext, store: StateStore) -> bool:
        if not ctx.stop.is_set() and (
            self.external_stop.is_set() or await store.stop_requested(ctx.run_id)
        ):
            log.info("stop_requested")
            ctx.stop.set()
        return ctx.stop.is_set()

    async def _watch_stop(self, ctx: JobContext, store: StateStore) -> None:
        """Poll for stops every ``STOP_POLL_S``, and at once when the job lock's connection is cut.

        Polling reconnects, re-taking the job's lock.  When another run took it meanwhile, this
        run fails now and cancels its chunks in flight (their transactions roll back): their
        checkpoints could not be written under the lock, and the other run loads them.
        """
        while not ctx.stop.is_set():
            with anyio.move_on_after(STOP_POLL_S):
                await first_of(self.external_stop, store.cut)
            try:
                await self._stop_requested(ctx, store)
            except AsyncEtlError as exc:
                if not store.lock_lost:
                    log.warning("stop_poll_failed", error=exc.message)
                    continue
                self._lost_lock(exc)
                return

    def _lost_lock(self, exc: AsyncEtlError) -> None:
        """Another run holds the job's lock now: fail, cancelling the chunks in flight."""
        log.error("job_lock_lost", error=exc.message)
        self.failure = self.failure or exc
        if self.chunks_scope is not None:
            self.chunks_scope.cancel()

    async def _chunk(
        self,
        ctx: JobContext,
        store: StateStore,
        chunk: Chunk,
        limiter: anyio.CapacityLimiter,
        borrower: object,
    ) -> None:
        self.chunk_stats.started_request()
        try:
            with structlog.contextvars.bound_contextvars(chunk=chunk.index):
                result = await self._attempts(ctx, chunk)
                await self._committed(ctx, store, chunk, result)
        except StopRequested:
            log.info("chunk_rolled_back", reason="stop requested")
        except AsyncEtlError as exc:
            self._fail(exc, chunk)
            if store.lock_lost:  # its checkpoint found the lock taken: the others stop too
                self._lost_lock(exc)
        except Exception as exc:  # a bug must still end as a FAILED result, not a crash
            err = LoadError(f"chunk {chunk.index}: {type(exc).__name__}: {exc}")
            err.__cause__ = exc
            self._fail(err, chunk)
        finally:
            self.chunk_stats.in_flight -= 1
            limiter.release_on_behalf_of(borrower)

    def _fail(self, exc: AsyncEtlError, chunk: Chunk) -> None:
        log.error("chunk_failed", chunk=chunk.index, error=exc.message, kind=str(exc.kind))
        if self.failure is None:
            self.failure = exc

    async def _attempts(self, ctx: JobContext, chunk: Chunk) -> ChunkResult:
        tries = 0

        async def attempt() -> ChunkResult:
            nonlocal tries
            tries += 1
            ctx.check_stop()
            t0 = time.perf_counter()
            try:
                async with self.holder.step(self.chunk_urls):  # one database's tokens at once
                    if self.executor is not None:
                        result = await self.executor.run_chunk(ctx, chunk, self.source)
                    else:  # a retry never takes a connection kept from before the failure
                        with shelved(self.shelf, fresh=tries > 1):
                            result = await self.target.run_chunk(ctx, chunk, self.source)
            except StopRequested:
                raise
            except AsyncEtlError as exc:
                self.chunk_stats.record_error(exc.message)
                raise
            self.chunk_stats.record_attempt(time.perf_counter() - t0)
            return result

        return await retrying(attempt, ctx.policy, what=f"chunk {chunk.index}")

    async def _committed(
        self, ctx: JobContext, store: StateStore, chunk: Chunk, result: ChunkResult
    ) -> None:
        if not result.checkpointed:
            bounds = orjson.dumps(chunk.to_json()).decode()
            counts = chunk_counts(result.counts, result.rejected)
            await store.checkpoint(ctx.run_id, chunk.index, bounds, result.rows_read,
                                   ctx.chunk_cursor, counts, ctx.loader)  # fmt: skip
            await store.add_rejects(self.spec.name, ctx.run_id, result.rejects)
        assert self.plan is not None
        self.plan.committed.add(chunk.index)
        self.watermark = self.watermark.advance(self.plan.committed)
        self.counters["rows_read"] += result.rows_read
        self.counters["rejected"] += result.rejected
        for k in COUNTERS:
            self.counters[k] += result.counts.get(k, 0)
        self.rows_here += result.rows_read
        log.debug("chunk_committed", rows=result.rows_read, **result.counts)
        self.since_update += 1
        if self.since_update >= UPDATE_EVERY:
            self.since_update = 0
            await store.update_run(self._values("RUNNING"))
        self._report()
