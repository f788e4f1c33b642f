"""The scheduler: runs a plan's jobs on one event loop under local, global and budget limits.

Theory of operation: one task group per plan run.  A single scheduling loop carries out the
decisions of the pure step ``core.scheduling.decide`` (jobs, clock and limits in; claim / start /
release / wait actions out); job attempts are tasks in a nested task group and wake the loop
when their phase changes.  A pending job is claimed when (1) all of its dependencies SUCCEEDED,
(2) its retry back-off is over, (3) the breaker of its target database lets a job (or its one
trial) through, (4) a token of the local ``CapacityLimiter(local_max)`` is free and (5) its
minimum connections fit the budgets (``admission``); ready jobs are claimed highest first
(``dag.heights``: long chains early).  The claimed job's attempt task then waits for a global
slot (``slots.GlobalSlots``, shared by every orchestrator on the state store) holding no
breaker ticket; with the slot held, the loop asks the breaker again and starts the job (taking
its ticket) or releases the slot when the breaker shut meanwhile.  A started job is marked
RUNNING and run; holds go back in the reverse order: the breaker hears the outcome while the
slot is still held (so the next job to get the slot meets a breaker this failure opened), then
the slot, then the token and the reservation.

Outcomes: SUCCEEDED unblocks dependents.  FAILED with a transient kind (network,
database-transient) is retried with the plan's ``[retry]`` policy, each attempt resuming from
the job's checkpoint (``fresh`` only on the first); other failures are final, and every
transitive dependent still pending becomes SKIPPED with the reason.  Unrelated jobs go on.

Degradation: after a transient failure the target database's connection budget (its jobs'
parallelism) is halved, down to the most connections one of its jobs needs at once (one chunk
at a time) but never below the minimums reserved there by the other jobs still running (so
each of them can still get its minimum); admission compares against this lowered budget.  Each
success doubles it back to the configured budget (``core.degrade``).  Every
step is a log event and a line of the report.

Stop (``request_stop``: a signal, or a row in ``async_etl_plan_stops``): launch nothing more,
set every running job's stop event, wait for them; jobs end STOPPED or stay PENDING, and the
next run of the plan resumes.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import anyio
import structlog

from async_etl.core import dag, scheduling
from async_etl.core.degrade import Degradation
from async_etl.core.scheduling import Claim, Done, Limits, Phase, Release, Settled, Start, Wait
from async_etl.errors import AsyncEtlError, ErrorKind
from async_etl.jobs.api import ConnectionBudget, JobOptions, JobResult, Progress
from async_etl.jobs.budget import LimiterBudget, database_key, token_limit
from async_etl.jobs.spec import JobSpec
from async_etl.log import get_logger
from async_etl.orchestrator.admission import Admission
from async_etl.orchestrator.breaker import Breakers, Outcome, Ticket, Transition
from async_etl.orchestrator.plan import Plan, PlanJob
from async_etl.orchestrator.report import NullView, View
from async_etl.orchestrator.slots import GlobalSlots, Slot
from async_etl.orchestrator.state import PlanStore
from async_etl.orchestrator.synthetic import SyntheticRunner

log = get_logger(__name__)

ProgressCallback = Callable[[Progress], None]
JobRunner = Callable[
    [JobSpec, JobOptions, anyio.Event, ConnectionBudget, ProgressCallback], Awaitable[JobResult]
]
"""How a mapper job is run (default: ``async_etl.jobs.runner.run_job``)."""

TRANSIENT = frozenset({ErrorKind.NETWORK, ErrorKind.DB_TRANSIENT})
STOP_POLL_S = 0.5


def plan_budget(plan: Plan) -> tuple[ConnectionBudget, Admission]:
    """The plan's ``[budgets]`` as limiters, and the admission of its jobs against them.

    Raises ``ConfigError`` (one line) when a job needs more connections at once than a
    database's budget allows (``admission``); ``check`` calls it too.
    """
    budget = LimiterBudget(plan.default_budget, plan.budgets)
    jobs = {job.name: job for job in plan.jobs}
    return budget, Admission(jobs, database_key, lambda u: token_limit(budget.limiter(u)))


async def default_runner(
    spec: JobSpec,
    options: JobOptions,
    stop: anyio.Event,
    budget: ConnectionBudget,
    on_progress: ProgressCallback,
) -> JobResult:
    """Run a mapper job with ``async_etl.jobs.runner.run_job`` (imported on first use)."""
    from async_etl.jobs.runner import run_job  # lazy: the CLI starts without the job machinery

    return await run_job(spec, options=options, stop=stop, budget=budget, on_progress=on_progress)


@dataclass(eq=False)
class JobState:
    """The orchestrator's view of one job while the plan runs (a ``core.scheduling.Job``).

    ``target_key``: the target's database key (its breaker's); ``needs``: its minimum
    connections per database key (``admission``).
    """

    job: PlanJob
    target_key: str = ""
    needs: Mapping[str, int] = field(default_factory=dict)
    status: str = "PENDING"
    attempts: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    rows: int = 0
    error: str | None = None
    error_kind: ErrorKind | None = None
    not_before: float = 0.0
    busy_s: float = 0.0
    phase: Phase = "idle"
    resumed: bool = False
    stop: anyio.Event = field(default_factory=anyio.Event)
    go: anyio.Event = field(default_factory=anyio.Event)
    ticket: Ticket | None = None
    name: str = field(init=False)

    def __post_init__(self) -> None:
        self.name = self.job.name  # read by the scheduling step on every pass


@dataclass(frozen=True)
class PlanOutcome:
    """What a plan run did: its status, every job's state and the wall time."""

    plan_run_id: str
    status: str
    jobs: dict[str, JobState]
    wall_s: float
    degradation: list[dict[str, Any]] = field(default_factory=list)


class Orchestrator:
    """Runs one plan (see the module doc); ``run`` returns a ``PlanOutcome``."""

    def __init__(
        self,
        plan: Plan,
        *,
        runner: JobRunner = default_runner,
        options: JobOptions | None = None,
        view: View | None = None,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        """A scheduler for ``plan``; ``runner`` runs mapper jobs, synthetic ones run built in."""
        self.plan = plan
        self.runner = runner
        self.options = options or JobOptions()
        self.view = view or NullView()
        self.clock, self.jitter = clock, jitter
        self.deps = plan.deps()
        height = dag.heights(self.deps)
        self.order = sorted(self.deps, key=lambda n: -height[n])
        self.breakers = Breakers(threshold=plan.breaker.threshold, cooldown=plan.breaker.cooldown)
        self.budget, self.admission = plan_budget(plan)
        self.local = anyio.CapacityLimiter(plan.local_max)
        self.jobs = {
            job.name: JobState(job, database_key(job.target), self.admission.needs[job.name])
            for job in plan.jobs
        }
        self._by_priority = [self.jobs[name] for name in self.order]
        self.stopping = anyio.Event()
        self.degradations: dict[str, Degradation] = {}
        self.steps: list[dict[str, Any]] = []
        self._t0 = clock()
        self.policy = plan.retry.policy()
        self._wake = anyio.Event()
        self._synthetic = SyntheticRunner()
        self._store: PlanStore | None = None
        self._slots: GlobalSlots | None = None

    def request_stop(self, reason: str) -> None:
        """Stop launching jobs and ask the running ones to stop at a safe point."""
        if not self.stopping.is_set():
            log.warning("plan stopping", plan=self.plan.name, reason=reason)
            self.stopping.set()
            for state in self.jobs.values():
                state.stop.set()
        self._wake.set()

    async def run(self, *, fresh: bool = False) -> PlanOutcome:
        """Run the plan to the end (or to a stop).

        Raises ``ConfigError`` / ``AsyncEtlError`` only for problems with the state store (or
        the plan already running elsewhere), never for a job failure.
        """
        t0 = self._t0 = self.clock()
        store = self._store = await PlanStore.open(
            self.plan.state, self.plan.name, policy=self.policy
        )
        try:
            resumed = None if fresh else await store.resumable_run()
            run_id = await store.start_run(
                list(self.deps),
                local_max=self.plan.local_max,
                global_max=self.plan.global_max,
                namespace=self.plan.namespace,
                resumed_from=resumed[0] if resumed else None,
            )
            structlog.contextvars.bind_contextvars(plan=self.plan.name, plan_run_id=run_id)
            log.info("plan started", jobs=len(self.jobs), resumed_from=resumed and resumed[0])
            for name in resumed[1] if resumed else ():
                if name in self.jobs:
                    await self._finish(self.jobs[name], "SUCCEEDED", resumed=True)
            if self.plan.global_max is not None:
                self._slots = GlobalSlots(
                    self.plan.state, self.plan.namespace, self.plan.global_max, policy=self.policy
                )
            async with anyio.create_task_group() as outer:
                outer.start_soon(self._watch_stop_requests)
                outer.start_soon(self._refresh_view)
                async with anyio.create_task_group() as attempts:
                    await self._schedule(attempts)
                outer.cancel_scope.cancel()
            status = self._final_status()
            await store.finish_run(status)
            log.info("plan finished", status=status, wall_s=round(self.clock() - t0, 3))
            return PlanOutcome(run_id, status, self.jobs, self.clock() - t0, self.steps)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await self._record_cancelled()
            raise
        finally:
            with anyio.CancelScope(shield=True):
                if self._slots is not None:
                    await self._slots.aclose()
                await store.close()
            structlog.contextvars.unbind_contextvars("plan", "plan_run_id")

    async def _record_cancelled(self) -> None:
        """A cancelled plan (a second signal): its running jobs and the run end STOPPED.

        Runs shielded and bounded by the caller; a state-store failure here is logged, not
        raised, so the cancellation still propagates.
        """
        self.stopping.set()
        try:
            for state in self.jobs.values():
                if state.status == "RUNNING":
                    state.finished_at = datetime.now(UTC)
                    await self._finish(state, "STOPPED")
            await self._store_finish("STOPPED")
        except AsyncEtlError as exc:
            log.warning("plan cancel not recorded", error=exc.message)

    async def _store_finish(self, status: str) -> None:
        if self._store is not None and self._store.plan_run_id:
            await self._store.finish_run(status)

    def _final_status(self) -> str:
        if self.stopping.is_set():
            return "STOPPED"
        if all(s.status == "SUCCEEDED" for s in self.jobs.values()):
            return "SUCCEEDED"
        return "FAILED"

    async def _schedule(self, tg: anyio.abc.TaskGroup) -> None:
        while True:
            self._wake = anyio.Event()
            now = self.clock()
            actions = scheduling.decide(
                self._by_priority,
                self.deps,
                now,
                Limits(
                    local_free=int(self.local.available_tokens),
                    free=self.admission.free(),
                    gates=self.breakers.gates(now),
                    reopen_at=self.breakers.next_reopen(),
                ),
                stopping=self.stopping.is_set(),
            )
            for action in actions:
                match action:
                    case Claim(job=name):
                        self._claim(tg, self.jobs[name])
                    case Start(job=name):
                        self._start(self.jobs[name], now)
                    case Release(job=name, reason=reason):
                        log.info("job waits again", job=name, reason=reason)
                        self.jobs[name].phase = "leaving"
                        self.jobs[name].go.set()
                    case Done():
                        return
                    case Wait(until=until):
                        delay = 3600.0 if until is None else max(0.0, until - now) + 0.001
                        with anyio.move_on_after(delay):
                            await self._wake.wait()

    def _claim(self, tg: anyio.abc.TaskGroup, state: JobState) -> None:
        """Take a local token and the reservation; the attempt task waits for a global slot."""
        self.local.acquire_on_behalf_of_nowait(state)
        self.admission.reserve(state.job.name)
        state.phase, state.go = "claimed", anyio.Event()
        tg.start_soon(self._attempt, state, name=f"job {state.job.name}")

    def _start(self, state: JobState, now: float) -> None:
        """The job holds its global slot: take the breaker ticket now and let it run."""
        ticket, events = self.breakers[state.target_key].start(now)
        self._log_transitions(events)
        state.phase, state.ticket = "running", ticket
        state.go.set()

    async def _attempt(self, state: JobState) -> None:
        try:
            done = await self._run_in_slots(state)
            if done is not None:
                await self._settle(state, *done)
        finally:
            if state.ticket is not None:  # cancelled before the outcome was known
                self._end_ticket(state, "stopped")
            state.phase = "idle"
            self.admission.release(state.job.name)
            self.local.release_on_behalf_of(state)
            self._wake.set()

    def _end_ticket(self, state: JobState, outcome: Outcome) -> None:
        """Feed the outcome to the breaker (and the degradation), giving the ticket back."""
        assert state.ticket is not None
        ticket, state.ticket = state.ticket, None
        breaker = self.breakers[state.target_key]
        self._log_transitions(breaker.finish(ticket, self.clock(), outcome))
        self._degrade(state, outcome)

    async def _run_in_slots(self, state: JobState) -> tuple[JobResult, Settled] | None:
        """Wait for the slot, run the job, judge the result; None when it did not run.

        Holds are given back in the reverse order of taking them: the breaker hears the
        outcome while the slot is still held, so a job that gets the slot next already meets
        a breaker opened by this failure.
        """
        assert self._store is not None
        async with self._global_slot() as slot:
            if slot is None or self.stopping.is_set():
                return None
            state.phase = "slotted"  # the loop starts it (ticket) or releases it
            self._wake.set()
            await state.go.wait()
            if state.ticket is None:
                return None
            state.attempts += 1
            state.status = "RUNNING"
            now = datetime.now(UTC)
            state.started_at = state.started_at or now
            await self._store.job_started(state.job.name, state.attempts, now)
            self.view.started(state.job.name, state.attempts)
            log.info("job started", job=state.job.name, attempt=state.attempts)
            t0 = self.clock()
            async with anyio.create_task_group() as watch:
                if slot.index >= 0:
                    watch.start_soon(self._stop_if_slot_lost, slot, state)
                result = await self._call_job(state)
                watch.cancel_scope.cancel()
            state.busy_s += self.clock() - t0
            if slot.lost.is_set() and result.status != "SUCCEEDED" and not self.stopping.is_set():
                lost = f"its global slot was lost ({result.error or 'stopped'})"
                result = replace(result, status="FAILED", error=lost, error_kind=ErrorKind.NETWORK)
            state.finished_at = datetime.now(UTC)  # taken while the slot is still held
            await self._store.attempt_ended(
                state.job.name, state.attempts, state.finished_at, result.status, result.error
            )
            settled = self._judge(state, result)
            self._end_ticket(state, settled.outcome)
            return result, settled

    def _global_slot(self) -> Any:
        if self._slots is None:
            return _no_slot()
        return self._slots.hold(self.stopping)

    async def _stop_if_slot_lost(self, slot: Slot, state: JobState) -> None:
        await slot.lost.wait()
        log.warning("job stopping: its global slot was lost", job=state.job.name)
        state.stop.set()

    async def _call_job(self, state: JobState) -> JobResult:
        job = state.job
        # the job file's own [retry] governs its round trips; the plan's for a job without one
        own = job.spec.retry if job.spec is not None else None
        options = replace(self.options, fresh=self.options.fresh and state.attempts == 1,
                          retry=own or self.policy)  # fmt: skip
        try:
            if job.synthetic is not None:
                return await self._synthetic.run(
                    job.name,
                    job.synthetic,
                    job.target,
                    attempt=state.attempts,
                    stop=state.stop,
                    budget=self.budget,
                    on_progress=self.view.progress,
                )
            assert job.spec is not None
            return await self.runner(job.spec, options, state.stop, self.budget, self.view.progress)
        except AsyncEtlError as exc:  # e.g. a database unreachable before the job could start
            log.warning("job could not start", job=job.name, error=exc.message, kind=exc.kind)
            return _failed(job.name, exc.message, exc.kind)
        except Exception as exc:  # a bug in a job must not take the plan down
            log.exception("job raised", job=job.name)
            return _failed(job.name, f"job raised {exc!r}", None)

    def _judge(self, state: JobState, result: JobResult) -> Settled:
        """Record the attempt's rows and error and decide what it means (``scheduling.settle``)."""
        state.rows += result.rows_read
        state.error, state.error_kind = result.error, result.error_kind
        return scheduling.settle(
            state.job.name,
            result.status,
            transient=result.error_kind in TRANSIENT,
            attempts=state.attempts,
            policy=self.policy,
            jitter=self.jitter(),
            stopping=self.stopping.is_set(),
            jobs=self._by_priority,
            deps=self.deps,
        )

    async def _settle(self, state: JobState, result: JobResult, settled: Settled) -> None:
        """Carry out ``settled``: a retry later, or the final status and skipped dependents."""
        name = state.job.name
        if settled.status == "PENDING":
            state.status, state.not_before = "PENDING", self.clock() + settled.delay
            state.stop = anyio.Event()
            assert self._store is not None
            await self._store.job_status(
                name,
                "PENDING",
                rows=state.rows,
                error=result.error,
                error_kind=_kind(result.error_kind),
            )
            log.warning(
                "job retrying",
                job=name,
                attempt=state.attempts,
                error=result.error,
                kind=_kind(result.error_kind),
                delay_s=round(settled.delay, 3),
            )
            return
        await self._finish(state, settled.status)
        for child in settled.skip:
            self.jobs[child].error = settled.reason
            await self._finish(self.jobs[child], "SKIPPED")

    async def _finish(self, state: JobState, status: str, *, resumed: bool = False) -> None:
        state.status, state.resumed = status, resumed
        assert self._store is not None
        await self._store.job_status(
            state.job.name,
            status,
            finished_at=state.finished_at,
            rows=state.rows,
            error=state.error,
            error_kind=_kind(state.error_kind),
        )
        self.view.finished(state.job.name, status)
        event = log.warning if status in ("FAILED", "SKIPPED") else log.info
        event(
            "job " + status.lower(),
            job=state.job.name,
            attempts=state.attempts,
            rows=state.rows,
            error=state.error,
            resumed=resumed or None,
        )

    def _degrade(self, state: JobState, outcome: Outcome) -> None:
        """Step the target database's parallelism down or up after an attempt (core.degrade)."""
        if outcome not in ("transient", "success"):
            return
        target = state.job.target
        db = database_key(target)
        limiter = self.budget.limiter(target)
        found = self.degradations.get(db)
        if found is None:
            floor = max((need.get(db, 0) for need in self.admission.needs.values()), default=1)
            base = token_limit(limiter)
            found = self.degradations[db] = Degradation(db, base, max(1, min(floor, base)))
        if outcome == "transient":  # never below what the other running jobs reserved there
            held = self.admission.reserved(db, without=state.job.name)
            step = found.failed(state.error or "", held=held)
        else:
            step = found.succeeded()
        if step is None:
            return
        limiter.total_tokens = step.new
        event = {
            **step.as_dict(),
            "job": state.job.name,
            "attempt": state.attempts,
            "at_s": round(self.clock() - self._t0, 3),
        }
        self.steps.append(event)
        (log.warning if step.new < step.old else log.info)(
            "parallelism lowered" if step.new < step.old else "parallelism restored", **event
        )

    def _log_transitions(self, events: list[Transition]) -> None:
        for e in events:
            log.warning("breaker " + e.new.value, target=e.target, old=e.old.value, reason=e.reason)

    async def _watch_stop_requests(self) -> None:
        assert self._store is not None
        while not self.stopping.is_set():
            await anyio.sleep(STOP_POLL_S)
            if await self._store.stop_requested():
                self.request_stop("async-etl stop")

    async def _refresh_view(self) -> None:
        while True:
            self.view.refresh()
            await anyio.sleep(1.0)


def _kind(kind: ErrorKind | None) -> str | None:
    return kind.value if kind is not None else None


class _no_slot:  # noqa: N801 - used like a function
    async def __aenter__(self) -> Slot:
        return Slot(-1)

    async def __aexit__(self, *exc: object) -> None:
        return None


def _failed(job: str, error: str, kind: ErrorKind | None) -> JobResult:
    """The result of a job that failed before ``run_job`` could return one itself."""
    now = datetime.now(UTC)
    return JobResult(
        run_id="",
        job=job,
        status="FAILED",
        as_of=now,
        started_at=now,
        finished_at=now,
        error=error,
        error_kind=kind,
    )
