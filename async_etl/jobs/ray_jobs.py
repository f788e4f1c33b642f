"""``orchestrate --ray``: whole jobs run in Ray actors; slots, budgets and plan state stay here.

Theory of operation
-------------------
The orchestrator hands each job attempt to its ``JobRunner``; ``RayJobs`` is that runner for
Ray.  A job attempt becomes one picklable ``JobUnit`` (the ``JobSpec``, the ``JobOptions`` and
the connection grant) and ``w_run_job`` runs it in a ``JobActor`` exactly as a local attempt
runs: ``run_job`` with its own state store, source, target and checkpoints.

* **Actors.** ``actors`` async actors are started on the first job and live for the plan;
  several jobs may share one (each is a task on its event loop).  A job goes to the live actor
  running the fewest jobs (of those, the one sent the fewest so far).
* **Slots** stay with the orchestrator: it takes the job's local and global slot (PostgreSQL
  advisory lock) before calling us and marks the job RUNNING / ended in its status table, so
  ``local_max`` and ``global_max`` hold however many actors run.
* **Budget.** Before the job is sent, this process takes a *grant* out of the plan's
  connection budget for every database the job uses: its minimum (what admission reserved for
  it; waited for) plus, without waiting, more up to what it could use (``max_workers`` per
  source and target role, one for the state store) but no more than an equal share of the
  database's limit among ``jobs_at_once`` jobs (the plan's ``local_max``), so a job admitted
  later is not starved by one that took everything.  The actor runs the job under a budget of
  exactly that grant, and the grant is given back when the attempt ends, so every
  per-database limit holds summed over the actors.  A grant is fixed for the attempt: a limit
  lowered while a job runs (degradation) applies to the next grant, and tokens freed by a job
  that ended do not reach one already running.
* **Stop and progress.** A stop of the job is forwarded to its actor (``run_job`` stops at a
  chunk boundary); progress events are polled from the actor every ``PROGRESS_EVERY_S`` and
  handed to the orchestrator's view.  A cancelled attempt cancels the remote task, which marks
  its run STOPPED as a local one does.
* **Death.** When the actor dies mid-job, a new actor takes its place and the job is run again
  on the least busy live actor *without* ``fresh``: ``run_job`` resumes the dead attempt's run
  (same run id, as-of time and chunk plan) and re-runs only the chunks not committed; a
  chunk's merge and checkpoint commit in one transaction, so what the dead actor committed is
  never re-run and what it had not is rolled back with its connections.  After
  ``MAX_ACTOR_LOSSES`` deaths in one attempt the attempt fails as a network error and the
  plan's retry policy decides.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import anyio

from async_etl.core.job_budget import minimum
from async_etl.errors import AsyncEtlError, ErrorKind, LoadError, StopRequested
from async_etl.jobs.api import ConnectionBudget, JobOptions, JobResult, Progress, RunStatus
from async_etl.jobs.budget import LimiterBudget, database_key, token_limit
from async_etl.jobs.grant import reserved
from async_etl.jobs.spec import JobSpec
from async_etl.log import get_logger

log = get_logger(__name__)

PROGRESS_EVERY_S = 0.5
MAX_ACTOR_LOSSES = 3
CANCEL_GRACE_S = 6.0  # a cancelled remote run marks itself STOPPED within 5 s


def connection_needs(spec: JobSpec) -> tuple[dict[str, int], dict[str, int]]:
    """(minimum, most useful) connections of ``spec`` per database URL of its roles.

    The minimum is what admission reserves and ``run_job`` checks (``core.job_budget``: the
    state store's connection and one chunk's); the most a run uses is one for the state store
    and ``max_workers`` per source and target role.  URLs naming one database are merged under
    the first spelling met.
    """
    workers = spec.parallel.max_workers
    roles = ((spec.state.url, 1), (spec.source.url, workers), (spec.target.url, workers))
    spelling: dict[str, str] = {}
    want: Counter[str] = Counter()
    for url, most in roles:
        url = spelling.setdefault(database_key(url), url)
        want[url] += most
    need = minimum(spec.state.url, spec.source.url, spec.target.url, database_key)
    return need, dict(want)


@dataclass(frozen=True, slots=True)
class JobUnit:
    """One attempt of a whole job, picklable: what an actor runs.

    ``grant`` maps each database URL the job uses to the connections it may open there;
    ``ticket`` names the attempt for stop and progress calls.
    """

    spec: JobSpec
    options: JobOptions
    grant: Mapping[str, int]
    ticket: str


async def w_run_job(
    unit: JobUnit, stop: anyio.Event, on_progress: Callable[[Progress], None]
) -> JobResult:
    """Run ``unit`` here with ``run_job`` under a budget of exactly its grant."""
    from async_etl.jobs.runner import run_job

    budget = LimiterBudget(1, unit.grant)
    return await run_job(
        unit.spec, options=unit.options, stop=stop, budget=budget, on_progress=on_progress
    )


class JobActor:
    """One remote job worker: runs whole job attempts, takes their stops, keeps their progress."""

    def __init__(self) -> None:
        self._stops: dict[str, anyio.Event] = {}
        self._progress: dict[str, Progress] = {}

    async def run(self, unit: JobUnit) -> JobResult:
        """Run ``unit`` to its end (see ``w_run_job``)."""
        stop = self._stops.setdefault(unit.ticket, anyio.Event())

        def keep(event: Progress) -> None:
            self._progress[unit.ticket] = event

        try:
            return await w_run_job(unit, stop, keep)
        finally:
            self._stops.pop(unit.ticket, None)

    async def stop(self, ticket: str) -> None:
        """Ask the attempt ``ticket`` to stop at a chunk boundary (also before it started)."""
        self._stops.setdefault(ticket, anyio.Event()).set()

    async def progress(self, ticket: str) -> Progress | None:
        """The latest progress event of ``ticket`` not yet taken (None: nothing new)."""
        return self._progress.pop(ticket, None)

    async def pid(self) -> int:
        """The actor's process id (tests kill it)."""
        return os.getpid()


@dataclass(slots=True)
class _Slot:
    """One actor of the pool: its handle, pid and the jobs running on it now."""

    handle: Any
    pid: int
    generation: int
    running: int = 0
    sent: int = 0


class RayJobs:
    """A ``JobRunner`` whose job attempts run whole in ``actors`` Ray actors (see module doc).

    Call it like ``run_job`` (it is the orchestrator's ``runner``); ``aclose`` stops the
    actors.  ``jobs_at_once`` (the plan's ``local_max``) sizes a job's share of a budget.
    ``reruns`` counts attempts re-run after their actor died; ``placed`` lists ``(job, actor,
    pid)`` for every attempt sent.  Raises ``ConfigError`` on the first job when Ray is
    missing or unreachable.
    """

    def __init__(
        self, address: str = "local", actors: int = 2, *, jobs_at_once: int = 1, **ray_init: Any
    ) -> None:
        if actors < 1 or jobs_at_once < 1:
            raise ValueError(f"actors and jobs_at_once must be >= 1, got {actors}, {jobs_at_once}")
        self.address, self.actors, self.jobs_at_once = address, actors, jobs_at_once
        self._init = ray_init
        self._ray: Any = None
        self._remote: Any = None
        self._slots: dict[str, _Slot] = {}
        self._lock = anyio.Lock()
        self.reruns = 0
        self.placed: list[tuple[str, str, int]] = []

    async def _ensure(self) -> None:
        async with self._lock:
            if self._ray is None:
                from async_etl.runtime.ray_cluster import ACTOR_OPTIONS, connect

                self._ray = connect(self.address, **self._init)
                self._remote = self._ray.remote(**ACTOR_OPTIONS)(JobActor)
            for i in range(self.actors):
                name = f"actor-{i}"
                if name not in self._slots:
                    await self._start(name, 0)

    async def _start(self, name: str, generation: int) -> None:
        handle = self._remote.remote()
        self._slots[name] = _Slot(handle, int(await handle.pid.remote()), generation)

    async def _replace(self, name: str) -> None:
        """The actor ``name`` died: kill what is left of it and start a new one in its place."""
        async with self._lock:
            old = self._slots.get(name)
            if old is None:
                return
            with suppress(Exception):
                self._ray.kill(old.handle)
            del self._slots[name]
            await self._start(name, old.generation + 1)

    @property
    def pids(self) -> dict[str, int]:
        """The live actors' process ids by name."""
        return {name: slot.pid for name, slot in self._slots.items()}

    async def __call__(
        self,
        spec: JobSpec,
        options: JobOptions,
        stop: anyio.Event,
        budget: ConnectionBudget,
        on_progress: Callable[[Progress], None],
    ) -> JobResult:
        """Run one attempt of ``spec`` in an actor; re-run (resumed) elsewhere if it dies.

        Raises the job's own ``AsyncEtlError`` when it could not start (as ``run_job`` does);
        every later failure is the returned ``JobResult``.
        """
        await self._ensure()
        try:
            async with _granted(spec, budget, stop, self.jobs_at_once) as grant:
                return await self._attempt(spec, options, stop, grant, on_progress)
        except StopRequested:
            return _ended(spec.name, "STOPPED", "stopped while waiting for a connection grant")

    async def _attempt(
        self,
        spec: JobSpec,
        options: JobOptions,
        stop: anyio.Event,
        grant: dict[str, int],
        on_progress: Callable[[Progress], None],
    ) -> JobResult:
        losses = 0
        while True:
            name = min(self._slots, key=lambda n: (self._slots[n].running, self._slots[n].sent))
            slot = self._slots[name]
            slot.sent += 1
            unit = JobUnit(spec, options, grant, uuid.uuid4().hex)
            self.placed.append((spec.name, name, slot.pid))
            slot.running += 1
            try:
                return await self._run_on(slot, unit, stop, on_progress)
            except Exception as exc:
                from async_etl.runtime.ray_cluster import actor_died

                if isinstance(exc, AsyncEtlError):
                    raise
                if not actor_died(exc):
                    raise _unwrapped(spec.name, exc) from exc
                losses += 1
                self.reruns += 1
                log.warning("ray_job_actor_lost", job=spec.name, actor=name, pid=slot.pid,
                            losses=losses)  # fmt: skip
            finally:
                slot.running -= 1
            if self._slots.get(name) is slot:
                await self._replace(name)
            if losses >= MAX_ACTOR_LOSSES:
                why = f"its Ray actor died {losses} times"
                return _ended(spec.name, "FAILED", why, ErrorKind.NETWORK)
            options = replace(options, fresh=False)  # resume the dead attempt's run

    async def _run_on(
        self,
        slot: _Slot,
        unit: JobUnit,
        stop: anyio.Event,
        on_progress: Callable[[Progress], None],
    ) -> JobResult:
        ref = slot.handle.run.remote(unit)
        failed: Exception | None = None
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_forward_stop, slot.handle, unit.ticket, stop)
                tg.start_soon(_poll_progress, slot.handle, unit.ticket, on_progress)
                try:
                    result: JobResult = await ref
                except Exception as exc:  # kept out of the task group's ExceptionGroup
                    failed = exc
                tg.cancel_scope.cancel()
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True), anyio.move_on_after(CANCEL_GRACE_S):
                self._ray.cancel(ref)
                with suppress(Exception):
                    await ref
            raise
        if failed is not None:
            raise failed
        last = await _quiet(slot.handle.progress.remote(unit.ticket))
        if isinstance(last, Progress):
            on_progress(last)
        return result

    async def aclose(self) -> None:
        """Stop the actors (the Ray session itself is left to its owner)."""
        for slot in self._slots.values():
            with suppress(Exception):  # already gone
                self._ray.kill(slot.handle)
        self._slots.clear()


@asynccontextmanager
async def _granted(
    spec: JobSpec, budget: ConnectionBudget, stop: anyio.Event, jobs_at_once: int
) -> AsyncIterator[dict[str, int]]:
    """Hold ``spec``'s connection grant out of ``budget`` (see the module doc); yields it.

    The minimum is taken as one reservation (``jobs.grant.reserved``), so two jobs never hold
    part of it each and wait for the rest.  Raises ``StopRequested`` when ``stop`` is set while
    the minimum is still awaited.
    """
    need, want = connection_needs(spec)
    async with AsyncExitStack() as held:
        await held.enter_async_context(reserved(budget, need, stop))  # at once: ``jobs.grant``
        taken = dict(need)
        for url in sorted(want):
            limiter = budget.limiter(url)
            most = min(want[url], max(need[url], token_limit(limiter) // jobs_at_once))
            while taken[url] < most and limiter.available_tokens >= 1:
                borrower = object()  # one token per borrower, as ``hold`` does
                limiter.acquire_on_behalf_of_nowait(borrower)
                held.callback(limiter.release_on_behalf_of, borrower)
                taken[url] += 1
        yield taken


async def _forward_stop(handle: Any, ticket: str, stop: anyio.Event) -> None:
    """Pass the job's stop on to the actor running it."""
    await stop.wait()
    await _quiet(handle.stop.remote(ticket))


async def _poll_progress(handle: Any, ticket: str, on_progress: Callable[[Progress], None]) -> None:
    """Hand the actor's latest progress event of ``ticket`` on, every ``PROGRESS_EVERY_S``."""
    while True:
        await anyio.sleep(PROGRESS_EVERY_S)
        event = await _quiet(handle.progress.remote(ticket))
        if isinstance(event, Progress):
            on_progress(event)


async def _quiet(ref: Any) -> Any:
    """The value of a side call to an actor, or None when it failed (the main call tells why)."""
    try:
        return await ref
    except Exception:
        return None


def _unwrapped(job: str, exc: Exception) -> AsyncEtlError:
    """The job's own error inside Ray's ``RayTaskError``, else a one-line ``LoadError``."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, AsyncEtlError):
        return cause
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return LoadError(f"job {job}: its Ray actor failed: {first}")


def _ended(job: str, status: RunStatus, error: str, kind: ErrorKind | None = None) -> JobResult:
    """The result of an attempt that ended here, before or without a run of its own."""
    now = datetime.now(UTC)
    return JobResult(run_id="", job=job, status=status, as_of=now, started_at=now,
                     finished_at=now, error=error, error_kind=kind)  # fmt: skip


__all__ = ["JobActor", "JobUnit", "RayJobs", "connection_needs", "w_run_job"]
