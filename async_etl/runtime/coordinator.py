"""The scale-out driver loop: hand id-range units to workers, merge their stats, reconcile once.

Theory of operation
-------------------
Both scale-out modes of ``bench`` (``--ray``: Ray actors; ``--processes``: local worker
processes) are this one loop over an executor seam, ``UnitWorkers``.  Each worker runs the
same engine (``runtime.unit_engine``: its own sink connections, generation and send limit) and
delivers whole units; this process only decides who gets which ids and adds up::

    prepare the sink once (table, ledger, first free id)
    start the workers ──> UnitBook (core/units.py) ──assign──> workers.run_unit(name, unit)
                              ◀──acknowledge / lost(name)──────── RunStats of the unit

* **Pull, not push.** Each worker holds at most ``units_per_worker(concurrency)`` units at a
  time; a feeder task per slot asks the book for the next unit when the previous one came
  back, so a slow worker simply takes fewer units and nothing waits on a straggler's queue.
  The bound is also what keeps memory flat: a worker never has more units than that.
* **Death.** ``run_unit`` raises ``WorkerLostError`` when the worker is gone (a killed process, a
  dead actor): the book takes back every unit it held, and survivors get them first as
  *re-sends* (``Resending``: every attempt checks whether the batch already landed).  A dead
  worker's partial counters are lost with it; the re-send reports the unit in full, so every
  unit counts exactly once.  When every worker died the run fails with one line.
* **Failure.** Any other exception from a unit is the run's error: no more units go out, the
  ones out are finished, then it is raised.
* **Stop and abort.** ``stop`` issues no more units; the ones out are finished.  ``abort``
  also cancels the units out (the workers are closed hard) and the run is summarised with what
  was acknowledged; the reconcile count then tells what landed.
* **One summary.** Unit counters and latency histograms merge into one ``RunStats``
  (``RunStats.absorb``); the live view reports it each interval; per-worker rows/s go into
  the summary's extra.  One reconcile counts the union of the units (one contiguous range).
"""

from __future__ import annotations

import dataclasses
import functools
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import anyio

from async_etl.config import BenchSettings
from async_etl.core.plan import BatchPlanner, batches_per_unit
from async_etl.core.reckoning import IdOutcomes
from async_etl.core.retry import RetryPolicy
from async_etl.core.stats import RunStats, Warmup
from async_etl.core.summary import Summary
from async_etl.core.units import Assignment, UnitBook
from async_etl.errors import AsyncEtlError, LoadError, unusable
from async_etl.log import get_logger
from async_etl.runtime.engine import SnapshotHandler
from async_etl.runtime.recount import count_open, questions_for, recount_limit
from async_etl.runtime.reporter import log_snapshot
from async_etl.runtime.resources import ResourceMeter
from async_etl.runtime.retrying import retrying
from async_etl.runtime.summarize import summarize
from async_etl.runtime.unit_engine import units_per_worker
from async_etl.sources.synthetic import Synthetic
from async_etl.typing import AsyncSink, Target

log = get_logger(__name__)
IDLE_POLL_S = 0.05  # a feeder with nothing to do looks again (a dead worker's units may return)


class WorkerLostError(Exception):
    """Raised by ``UnitWorkers.run_unit`` when the worker is gone: its units are re-sent."""


class UnitWorkers(Protocol):
    """The executor seam: named workers that each run ``UnitEngine`` units somewhere."""

    kind: str
    """What a worker is called in the summary ("actor", "worker")."""

    names: tuple[str, ...]
    uvloop: bool
    """Whether the workers' event loops are uvloop's."""

    async def start(self) -> dict[str, int]:
        """Start every worker; their pids by name.  Raises ``ConfigError`` (one line)."""
        ...

    async def run_unit(self, name: str, unit: Assignment) -> RunStats:
        """Run ``unit`` on worker ``name``; ``WorkerLostError`` when it is gone, else its error."""
        ...

    def pids(self) -> list[int]:
        """Pids of the worker processes on this machine, for CPU accounting (may be empty)."""
        ...

    async def close(self, dead: frozenset[str], *, hard: bool) -> None:
        """Close the workers (``hard``: at once, units out cancelled).  Never raises."""
        ...


@dataclasses.dataclass(slots=True)
class _Run:
    """The coordinator's state for one run: the book, merged stats, per-worker rows."""

    book: UnitBook
    workers: int
    kind: str
    stats: RunStats
    rows_by_worker: Counter[str]
    first_error: BaseException | None = None


async def coordinate(
    settings: BenchSettings,
    source: Synthetic,
    sink: AsyncSink,
    make_workers: Callable[[Target], UnitWorkers],
    *,
    label: str,
    extra: Mapping[str, Any],
    on_snapshot: SnapshotHandler | None = None,
    stop: anyio.Event | None = None,
    abort: anyio.Event | None = None,
) -> Summary:
    """Run a bench over the workers ``make_workers(target)`` builds, into ``sink``'s target.

    ``sink`` is this process's own (prepare, reconcile); workers open theirs.  ``extra`` goes
    into the summary's extra under ``label`` with the per-worker figures; the mode is
    ``"{label} x{workers}"``.  Raises ``ConfigError`` (exit 2) for a sink unusable at start
    or workers that cannot start; ``LoadError`` (or the unit's fatal ``AsyncEtlError``) when
    every worker died or a unit failed for good.
    """
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
    workers = make_workers(target)
    handler = on_snapshot or log_snapshot
    run: _Run | None = None
    hard = True  # until the units out all came back: an error or a cancel closes at once
    try:
        pids = await workers.start()
        meter = ResourceMeter(workers.pids())
        meter.start()
        started = time.perf_counter()
        book = UnitBook(planner)
        run = _Run(
            book,
            len(workers.names),
            workers.kind,
            RunStats(started_at=started, ids=IdOutcomes()),
            Counter(),
        )
        warm = Warmup(s.warmup, started)
        async with anyio.create_task_group() as tg:
            tg.start_soon(_report, run, handler, warm, s.report_interval)
            if s.duration:
                tg.start_soon(_deadline, book, s.duration)
            if stop is not None:
                tg.start_soon(_stop_on, book, stop)
            with anyio.CancelScope() as feeding:
                if abort is not None:
                    tg.start_soon(_abort_on, book, abort, feeding)
                async with anyio.create_task_group() as feeders:
                    for name in workers.names:
                        for _ in range(units_per_worker(s.concurrency)):
                            feeders.start_soon(_feed, run, workers, name)
            tg.cancel_scope.cancel()
        finished = time.perf_counter()
        meter.stop()  # before the workers exit, so that their CPU counts
        hard = feeding.cancel_called
    finally:
        with anyio.CancelScope(shield=True):
            await workers.close(run.book.dead if run is not None else frozenset(), hard=hard)
    assert run is not None
    if run.first_error is not None:
        raise run.first_error
    handler(run.stats.snapshot(finished))
    with anyio.CancelScope(shield=True):
        ids = book.issued_range
        reconciled = await retrying(lambda: sink.count(ids), policy, jitter, what="reconcile count")
        found = await count_open(
            sink.count,
            questions_for(ids, run.stats, reconciled),
            policy,
            jitter,
            recount_limit(s),
        )
    seconds = max(finished - started, 1e-9)
    kind = workers.kind
    figures = {
        **extra,
        f"{kind}s": run.workers,
        f"{kind}_pids": pids,
        f"lost_{kind}s": sorted(book.dead),
        "resent_units": book.resends,
        f"units_per_{kind}": units_per_worker(s.concurrency),
        "units": len(book.acknowledged),
        f"rows_per_s_by_{kind}": {
            n: round(r / seconds, 1) for n, r in sorted(run.rows_by_worker.items())
        },
    }
    return summarize(
        s,
        mode=f"{label} x{run.workers}",
        sink=target.description or type(sink).__name__,
        issued=book.issued_range,
        stats=run.stats,
        meter=meter,
        warm=warm,
        finished=finished,
        reconciled=reconciled,
        found=found,
        stopped_by="abort" if hard else _stopped_by(s, planner, stop),
        uvloop=workers.uvloop,
        extra={label: figures},
    )


async def _feed(run: _Run, workers: UnitWorkers, name: str) -> None:
    """One unit slot of one worker: pull a unit, run it, acknowledge; until the book is done."""
    book = run.book
    while not book.done and run.first_error is None:
        unit = book.assign(name)
        if unit is None:
            if name in book.dead:
                return
            await anyio.sleep(IDLE_POLL_S)
            continue
        try:
            stats = await workers.run_unit(name, unit)
        except WorkerLostError as exc:
            if name not in book.dead:  # the first of its slots to hear of it
                taken = book.lost(name)
                log.warning(
                    f"{run.kind}_lost", worker=name, units_to_resend=len(taken), why=str(exc)
                )
            if len(book.dead) == run.workers:
                run.first_error = LoadError(f"every {run.kind} died ({exc}); the run cannot finish")
            return
        except Exception as exc:
            run.first_error = exc
            book.stop()
            return
        if book.acknowledge(name, unit.unit):
            run.stats.absorb(stats)
            run.rows_by_worker[name] += stats.rows


def _stopped_by(s: BenchSettings, planner: BatchPlanner, stop: anyio.Event | None) -> str:
    if stop is not None and stop.is_set() and not planner.exhausted:
        return "signal"
    return "duration" if s.duration and not planner.exhausted else "records"


async def _stop_on(book: UnitBook, stop: anyio.Event) -> None:
    await stop.wait()
    book.stop()


async def _abort_on(book: UnitBook, abort: anyio.Event, feeding: anyio.CancelScope) -> None:
    await abort.wait()
    book.stop()
    feeding.cancel()


async def _deadline(book: UnitBook, seconds: float) -> None:
    await anyio.sleep(seconds)
    book.stop()


async def _report(run: _Run, handler: SnapshotHandler, warm: Warmup, interval: float) -> None:
    while True:
        await anyio.sleep(interval)
        now = time.perf_counter()
        warm.check(run.stats, now)
        handler(run.stats.snapshot(now))


__all__ = ["UnitWorkers", "WorkerLostError", "coordinate"]
