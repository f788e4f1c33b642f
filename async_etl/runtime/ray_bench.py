"""``bench --ray``: the same engine in N Ray actors, fed id-range units by one coordinator.

Theory of operation
-------------------
The driver (this process) prepares the sink once (table, ledger, first free id), then starts
``ray_actors`` async actors.  Each actor opens its own sink connections and its own generator
processes (``--generators`` per actor, at most its node's CPU count; 0 = inline), and
delivers whole units::

    driver: UnitBook (core/units.py) ──assign──> actor.run_unit(unit) ──> RunStats of the unit
            ◀──acknowledge / lost(actor)────────┘

* **Pull, not push.** Each actor holds at most ``units_per_actor(concurrency)`` units at a
  time (one more than its ``--concurrency``: a unit of small batches is one batch, and the
  actor must have that many batches to send at once, plus one being generated); a feeder task
  per slot asks the book for the next unit when the previous one came back, so a slow node
  simply takes fewer units and nothing waits on a straggler's queue.
* **Death.** When a call fails because the actor is gone, the book takes back every unit the
  actor held; survivors get them first, as *re-sends*: every attempt on them checks whether
  the batch already landed (PostgreSQL ledger, CrateDB ``ON CONFLICT DO NOTHING``), so rows a
  dead actor had written are not written twice.  A dead actor's partial counters are lost with
  it; the re-send reports the unit in full, so every unit counts exactly once.
* **One summary.** Unit counters and latency histograms merge into one ``RunStats``
  (``RunStats.absorb``); the live view reports it each interval; per-actor rows/s go into
  ``extra["ray"]``.  One reconcile counts the union of the units (one contiguous id range).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import random
import time
from collections import Counter
from typing import Any

import anyio
import structlog

from async_etl.config import BenchSettings
from async_etl.core.delivery import Delivery
from async_etl.core.plan import BatchPlanner, batches_per_unit
from async_etl.core.records import w_generate_batches
from async_etl.core.retry import RetryPolicy
from async_etl.core.stats import RunStats, Warmup
from async_etl.core.summary import Summary
from async_etl.core.units import Assignment, UnitBook
from async_etl.errors import AsyncEtlError, ConfigError, LoadError, unusable
from async_etl.runtime.engine import SnapshotHandler, deliver
from async_etl.runtime.executor import InlineExecutor, ProcessExecutor
from async_etl.runtime.ray_cluster import ACTOR_OPTIONS, actor_died, connect
from async_etl.runtime.reporter import log_snapshot
from async_etl.runtime.resources import ResourceMeter
from async_etl.runtime.retrying import retrying
from async_etl.runtime.summarize import summarize
from async_etl.sinks import open_sink
from async_etl.sources.synthetic import Synthetic
from async_etl.typing import AsyncSink, EncodedBatch, SendResult, Target

log = structlog.get_logger(__name__)
UNITS_PER_ACTOR = 2  # the fewest units an actor holds at once: one delivering, one generating


def units_per_actor(concurrency: int) -> int:
    """Units one actor holds at once: enough to keep ``concurrency`` sends busy, plus one."""
    return max(UNITS_PER_ACTOR, concurrency + 1)


class Resending:
    """A sink wrapper for re-sent units: every attempt checks whether the batch landed."""

    def __init__(self, inner: AsyncSink) -> None:
        self._inner = inner

    async def send(self, batch: EncodedBatch, attempt: int) -> SendResult:
        """Send as a retry (attempt >= 2), so the sink's exactly-once check runs first."""
        return await self._inner.send(batch, max(2, attempt + 1))


class BenchActor:
    """One remote engine: its own sink connections, generator processes and send limit."""

    def __init__(self, settings: BenchSettings, source: Synthetic, target: Target) -> None:
        self._settings = settings
        self._source = source
        self._target = target
        self._sink: AsyncSink | None = None
        self._executor: ProcessExecutor | InlineExecutor = InlineExecutor()
        self._sends: anyio.CapacityLimiter | None = None
        self._random = random.Random(settings.seed ^ os.getpid())

    async def start(self) -> int:
        """Open the sink and the generator processes; returns this actor's pid."""
        s = self._settings
        assert s.sink is not None
        self._sink = open_sink(s.sink, s)
        policy = RetryPolicy(max_retries=s.max_retries, base=s.retry_base, cap=s.retry_cap)
        await retrying(
            functools.partial(self._sink.prepare, self._source.schema),
            policy,
            self._random.random,
            what="prepare sink",
        )
        workers = min(s.generators, os.cpu_count() or 1)  # sized to this actor's node
        if workers > 0:
            self._executor = ProcessExecutor(workers)
        await self._executor.start()
        self._sends = anyio.CapacityLimiter(s.concurrency)
        return os.getpid()

    async def run_unit(self, unit: Assignment) -> RunStats:
        """Generate and deliver one unit; returns its counters (every row accounted for)."""
        assert self._sink is not None and self._sends is not None, "start() first"
        s = self._settings
        policy = RetryPolicy(max_retries=s.max_retries, base=s.retry_base, cap=s.retry_cap)
        stats = RunStats(started_at=time.perf_counter())
        work = self._source.unit(unit.ids, self._target.encoding, s.batch_size)
        batches = await self._executor.run(w_generate_batches, work)
        sink: Any = Resending(self._sink) if unit.resend else self._sink
        sends = self._sends
        async with anyio.create_task_group() as tg:
            for batch in batches:
                await sends.acquire_on_behalf_of(batch)
                tg.start_soon(self._deliver, sink, batch, stats, policy)
        return stats

    async def _deliver(
        self, sink: AsyncSink, batch: EncodedBatch, stats: RunStats, policy: RetryPolicy
    ) -> None:
        assert self._sends is not None
        stats.started_request()
        try:
            await deliver(
                sink, batch, stats, policy, self._random.random, Delivery(batch, stats, policy)
            )
        finally:
            stats.in_flight -= 1
            self._sends.release_on_behalf_of(batch)

    def pid(self) -> int:
        """The actor's process id (tests kill it)."""
        return os.getpid()

    async def close(self) -> None:
        """Close the sink and the generator processes."""
        if self._sink is not None:
            await self._sink.aclose()
        await self._executor.aclose()


@dataclasses.dataclass(slots=True)
class _Run:
    """The coordinator's state for one run: the book, merged stats, per-actor rows."""

    book: UnitBook
    actors: int
    stats: RunStats
    rows_by_actor: Counter[str]
    first_error: BaseException | None = None


async def run_on_ray(
    settings: BenchSettings,
    source: Synthetic,
    sink: AsyncSink,
    *,
    on_snapshot: SnapshotHandler | None = None,
    ray_init: dict[str, Any] | None = None,
    stop: anyio.Event | None = None,
) -> Summary:
    """Run a bench over ``settings.ray_actors`` Ray actors into ``sink``'s target.

    ``sink`` is the driver's own (prepare, reconcile); actors open theirs from
    ``settings.sink``.  Setting ``stop`` issues no more units; the ones out are finished.
    Raises ``ConfigError`` (exit 2) for Ray missing or unreachable, or a sink unusable at
    start; ``LoadError`` when every actor died or one failed for good.
    """
    assert settings.sink is not None, "the actors need a sink URL"
    ray = connect(settings.ray or "local", **(ray_init or {}))
    s = settings
    policy = RetryPolicy(max_retries=s.max_retries, base=s.retry_base, cap=s.retry_cap)
    jitter = random.Random(s.seed).random
    try:
        target = await retrying(
            functools.partial(sink.prepare, source.schema), policy, jitter, what="prepare sink"
        )
    except AsyncEtlError as exc:
        raise unusable(f"cannot use the sink: {exc.message}", exc) from exc
    unit_rows = s.batch_size * batches_per_unit(s.batch_size)
    planner = BatchPlanner(start=target.start_id, batch_size=unit_rows, total=s.records)
    remote = ray.remote(**ACTOR_OPTIONS)(BenchActor)
    actors = {f"actor-{i}": remote.remote(s, source, target) for i in range(s.ray_actors)}
    try:
        pids = await _start(actors)
    except Exception as exc:
        _kill(ray, actors)
        raise ConfigError(f"--ray: the actors could not start: {str(exc).splitlines()[0]}") from exc
    started = time.perf_counter()
    run = _Run(UnitBook(planner), len(actors), RunStats(started_at=started), Counter())
    handler = on_snapshot or log_snapshot
    warm = Warmup(s.warmup, started)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_report, run, handler, warm, s.report_interval)
            if s.duration:
                tg.start_soon(_deadline, run.book, s.duration)
            if stop is not None:
                tg.start_soon(_stop_on, run.book, stop)
            async with anyio.create_task_group() as feeders:
                for name, actor in actors.items():
                    for _ in range(units_per_actor(s.concurrency)):
                        feeders.start_soon(_feed, run, name, actor)
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await _close(actors, run.book.dead)
        _kill(ray, actors)
    if run.first_error is not None:
        err = run.first_error
        if isinstance(err, AsyncEtlError):
            raise err
        raise LoadError(f"a Ray actor failed: {str(err).splitlines()[0]}") from err
    finished = time.perf_counter()
    handler(run.stats.snapshot(finished))
    with anyio.CancelScope(shield=True):
        ids = run.book.issued_range
        reconciled = await retrying(lambda: sink.count(ids), policy, jitter, what="reconcile count")
    seconds = max(finished - started, 1e-9)
    ray_extra = {
        "address": s.ray or "local",
        "actors": s.ray_actors,
        "actor_pids": pids,
        "lost_actors": sorted(run.book.dead),
        "resent_units": run.book.resends,
        "units_per_actor": units_per_actor(s.concurrency),
        "units": len(run.book.acknowledged),
        "rows_per_s_by_actor": {
            n: round(r / seconds, 1) for n, r in sorted(run.rows_by_actor.items())
        },
    }
    return summarize(
        s,
        mode=f"ray x{s.ray_actors}",
        sink=target.description or type(sink).__name__,
        issued=run.book.issued_range,
        stats=run.stats,
        meter=ResourceMeter([]),
        warm=warm,
        finished=finished,
        reconciled=reconciled,
        stopped_by=_stopped_by(s, planner, stop),
        uvloop=False,
        extra={"ray": ray_extra},
    )


async def _start(actors: dict[str, Any]) -> dict[str, int]:
    """Start every actor (sink connections, generator processes); their pids by name."""
    pids: dict[str, int] = {}
    for name, actor in actors.items():
        pids[name] = int(await actor.start.remote())
    return pids


async def _feed(run: _Run, name: str, actor: Any) -> None:
    """One unit slot of one actor: pull a unit, run it, acknowledge; until the book is done."""
    book = run.book
    while not book.done and run.first_error is None:
        unit = book.assign(name)
        if unit is None:
            if name in book.dead:
                return
            await anyio.sleep(0.05)  # nothing now: a dead actor's units may come back
            continue
        try:
            stats: RunStats = await actor.run_unit.remote(unit)
        except Exception as exc:
            if actor_died(exc):
                taken = book.lost(name)
                log.warning("ray_actor_lost", actor=name, units_to_resend=len(taken))
                if len(book.dead) == run.actors:
                    run.first_error = LoadError("every Ray actor died; the run cannot finish")
                return
            run.first_error = _unwrap(exc)
            book.stop()
            return
        if book.acknowledge(name, unit.unit):
            run.stats.absorb(stats)
            run.rows_by_actor[name] += stats.rows


def _unwrap(exc: BaseException) -> BaseException:
    """The actor's own exception inside Ray's ``RayTaskError`` wrapper, when there is one."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


def _stopped_by(s: BenchSettings, planner: BatchPlanner, stop: anyio.Event | None) -> str:
    if stop is not None and stop.is_set() and not planner.exhausted:
        return "signal"
    return "duration" if s.duration and not planner.exhausted else "records"


async def _stop_on(book: UnitBook, stop: anyio.Event) -> None:
    await stop.wait()
    book.stop()


async def _deadline(book: UnitBook, seconds: float) -> None:
    await anyio.sleep(seconds)
    book.stop()


async def _report(run: _Run, handler: SnapshotHandler, warm: Warmup, interval: float) -> None:
    while True:
        await anyio.sleep(interval)
        now = time.perf_counter()
        warm.check(run.stats, now)
        handler(run.stats.snapshot(now))


async def _close(actors: dict[str, Any], dead: frozenset[str]) -> None:
    for name, actor in actors.items():
        if name in dead:
            continue
        try:
            await actor.close.remote()
        except Exception as exc:  # closing is best effort: the run's figures are final
            log.warning("ray_actor_close_failed", actor=name, error=str(exc).splitlines()[0])


def _kill(ray: Any, actors: dict[str, Any]) -> None:
    for actor in actors.values():
        with contextlib.suppress(Exception):  # already gone
            ray.kill(actor)


__all__ = ["BenchActor", "Resending", "run_on_ray", "units_per_actor"]
