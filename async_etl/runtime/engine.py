"""The async runner: generate in a process pool, ship bytes to a sink, report, reconcile.

Theory of operation
-------------------
One task group per run, three stages joined by a bounded memory stream::

    producer ──(gen limiter: 2·P units in flight)──> executor (process pool)
        └─ each finished unit (its batches) ──> stream (bounded buffer) ──> dispatcher
    dispatcher ──(send limiter: C batches in flight)──> deliver(batch) ──> sink.send()

* The **producer** takes a generation token, then asks the pure ``next_step`` (``core.plan``,
  shared with the thread runner) what to do: stop (a stop was requested, or the deadline
  passed) or generate the planner's next id range.  The window (2·P tokens) and the stream's
  size come from ``core.plan`` too.  A finished unit goes through the stream whole (one hop
  for its batches, not one each: at batch 100 a unit is 32 batches) and **keeps its generation
  token until the dispatcher has handed out its last batch**; the buffer holds at most as many
  batches as ``queue_size`` says (``queue_size // batches_per_unit`` units, 0: a rendezvous).
  A unit waits in ``stream.send`` when the buffer is full, still holding its token: that is
  the backpressure that keeps memory flat.
* Workers hand their encoded batches back through a shared-memory **arena** of one slot per
  token (``runtime.transport``), not through the pool's pipe; the arena lives for one run and
  is unlinked in ``finally``.  A generator process that dies fails the run with one line.
* The **dispatcher** takes units off the stream and hands each batch, under the send limiter,
  to a delivery lane (``runtime.lanes``: a task kept between batches, a new one only when none
  is idle); a free token is taken without a checkpoint, only a full limiter waits.
  Both limiters are ``anyio.CapacityLimiter`` objects whose ``total_tokens`` may be changed
  while the run is going (``Engine.limits``), e.g. by an adaptive controller.
* **deliver** sends one batch, and applies the pure ``RetryPolicy`` to transient failures and
  to the subset of rows a sink asks to resend.  Every row ends up delivered, rejected (with
  the sink's reason) or given up (after the last retry): nothing is dropped silently.
* A **stop** (signal, ``Engine.stop()``) only stops the producer: batches already generated
  are delivered, so nothing is half-sent.  ``Engine.abort()`` cancels the deliveries too.
* At the end the sink counts the run's id range (``reconcile``), which catches loss and
  duplication that per-request bookkeeping could not see.  ``RunStats.ids`` keeps which ids
  were answered; the ids left without an answer (an abort's, or given up after retries) are
  counted range by range (``runtime.recount``), so each kind gets its own outcome.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from async_etl.config import BenchSettings
from async_etl.core.adaptive import AdaptiveSettings
from async_etl.core.delivery import Delivery
from async_etl.core.plan import (
    BatchPlanner,
    batches_per_unit,
    generation_window,
    next_step,
    queue_size,
)
from async_etl.core.reckoning import IdOutcomes
from async_etl.core.retry import RetryPolicy
from async_etl.core.schedule import LATE_AFTER_S
from async_etl.core.stats import RunStats, Snapshot, Warmup
from async_etl.core.summary import Summary
from async_etl.errors import AsyncEtlError, TransientError, first_etl_error, unusable
from async_etl.log import get_logger
from async_etl.runtime.adaptive import AdaptiveLimit
from async_etl.runtime.executor import InlineExecutor, ProcessExecutor
from async_etl.runtime.lanes import Lanes
from async_etl.runtime.loop import running_uvloop
from async_etl.runtime.pacing import Pacer
from async_etl.runtime.recount import count_open, questions_for, recount_limit
from async_etl.runtime.reporter import log_snapshot
from async_etl.runtime.resources import ResourceMeter
from async_etl.runtime.retrying import retrying
from async_etl.runtime.stopping import Stoppable
from async_etl.runtime.summarize import describe, summarize
from async_etl.runtime.transport import Arena, generate
from async_etl.sources.synthetic import Synthetic
from async_etl.typing import AsyncSink, EncodedBatch, IdRange, Target

log = get_logger(__name__)
T = TypeVar("T")

SnapshotHandler = Callable[[Snapshot], None]


@dataclass(frozen=True, slots=True)
class Limits:
    """The run's runtime-adjustable limits: change ``total_tokens`` while it runs."""

    generation: anyio.CapacityLimiter
    sends: anyio.CapacityLimiter


_Job = tuple[EncodedBatch, object, float | None]
"""A batch to deliver, the send token it holds, and its due time (rate mode) or None."""


class _Unit:
    """A generated unit's batches on their way to the dispatcher, holding a generation token.

    ``done`` gives the token back; only the first call does (the dispatcher after the last
    batch, or the generating task when the unit never reached the dispatcher).
    """

    __slots__ = ("_release", "batches")

    def __init__(self, release: Callable[[], None]) -> None:
        self.batches: list[EncodedBatch] = []
        self._release: Callable[[], None] | None = release

    def done(self) -> None:
        """Give the generation token back (once)."""
        release, self._release = self._release, None
        if release is not None:
            release()


class Engine(Stoppable):
    """Runs bench workloads on the current event loop.

    ``async with Engine(settings) as engine: summary = await engine.run(source, sink)``.
    Engines share no global state: several may run in one loop at once.
    """

    def __init__(self, settings: BenchSettings | None = None) -> None:
        self.settings = settings or BenchSettings()
        workers = self.settings.generators
        self._executor: ProcessExecutor | InlineExecutor = (
            ProcessExecutor(workers) if workers > 0 else InlineExecutor()
        )
        self._stop_event = anyio.Event()  # the rate pacer waits on it
        self._stop = self._stop_event
        self._stop_reason = ""
        self._abort: anyio.CancelScope | None = None
        self.limits = Limits(
            generation=anyio.CapacityLimiter(generation_window(workers)),
            sends=anyio.CapacityLimiter(self.settings.concurrency),
        )
        self._random = random.Random(self.settings.seed)
        self._arena: Arena | None = None
        self.stats: RunStats | None = None
        s = self.settings
        self.adaptive = (
            AdaptiveLimit(
                AdaptiveSettings(
                    minimum=s.concurrency_min, maximum=s.concurrency_max, initial=s.concurrency
                ),
                self.limits.sends,
            )
            if s.adaptive
            else None
        )

    async def __aenter__(self) -> Engine:
        await self._executor.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._executor.aclose()

    def abort(self) -> None:
        """Stop at once: cancel deliveries in flight (the reconcile count tells what landed)."""
        self.stop("abort")
        self._stop_reason = "abort"  # also after a graceful stop (a second signal)
        if self._abort is not None:
            self._abort.cancel()

    async def run(
        self,
        source: Synthetic,
        sink: AsyncSink,
        *,
        on_snapshot: SnapshotHandler | None = None,
    ) -> Summary:
        """Generate ``source`` into ``sink`` until the records, the duration or a stop run out.

        Raises ``ConfigError`` (exit 2, keeping the cause's ``kind``) when the sink cannot be
        prepared, after the retry policy's attempts for a transient failure; ``LoadError`` (or
        another fatal ``AsyncEtlError``) when the sink fails for good later; rows that were
        rejected or given up are reported in the summary instead.
        """
        s = self.settings
        policy = RetryPolicy(max_retries=s.max_retries, base=s.retry_base, cap=s.retry_cap)
        try:
            prepare = functools.partial(sink.prepare, source.schema)
            target = await retrying(prepare, policy, self._random.random, what="prepare sink")
        except AsyncEtlError as exc:  # unreachable or unusable at start: bad input, exit 2
            raise unusable(f"cannot use the sink: {exc.message}", exc) from exc
        unit_rows = s.batch_size * batches_per_unit(s.batch_size)
        schedule = s.schedule
        pacer = Pacer(schedule) if schedule is not None else None
        total = s.records
        if schedule is not None and schedule.total_rows is not None:  # the schedule decides
            total = min(total if total is not None else schedule.total_rows, schedule.total_rows)
        planner = BatchPlanner(start=target.start_id, batch_size=unit_rows, total=total)
        meter = ResourceMeter(self._executor.worker_pids())
        meter.start()
        started = time.perf_counter()
        stats = self.stats = RunStats(started_at=started, ids=IdOutcomes())
        deadline = started + s.duration if s.duration and pacer is None else None
        handler = on_snapshot or log_snapshot
        send, receive = anyio.create_memory_object_stream[_Unit](
            max_buffer_size=queue_size(self._executor.workers) // batches_per_unit(s.batch_size)
        )
        warm = Warmup(s.warmup, started)
        if self._executor.workers > 0 and target.encoding.wire != "none":
            probe = source.unit(IdRange(target.start_id, unit_rows), target.encoding, s.batch_size)
            self._arena = Arena.for_units(generation_window(self._executor.workers), probe)
        try:
            async with anyio.create_task_group() as outer:
                outer.start_soon(self._report, stats, handler, warm)
                if self.adaptive is not None:
                    outer.start_soon(self.adaptive.run, stats, time.perf_counter)
                with anyio.CancelScope() as self._abort:
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(self._produce, source, target, planner, send, deadline)
                        tg.start_soon(self._dispatch, sink, receive, stats, policy, pacer, warm)
                outer.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            err = first_etl_error(group)
            if err is None:
                raise
            raise err from err.__cause__  # keep the driver exception chained
        finally:
            arena, self._arena = self._arena, None
            if arena is not None:
                arena.close()
        finished = time.perf_counter()
        meter.stop()  # cpu % over the load, as rows/s: not the reconcile after it
        handler(stats.snapshot(finished))  # the last interval, so short runs report too
        with anyio.CancelScope(shield=True):
            ids = planner.issued_range
            reconciled = await retrying(
                lambda: sink.count(ids), policy, self._random.random, what="reconcile count"
            )
            asked = questions_for(ids, stats, reconciled)
            found = await count_open(
                sink.count, asked, policy, self._random.random, recount_limit(self.settings)
            )
        return summarize(
            self.settings,
            mode="async",
            sink=target.description or describe(sink),
            issued=planner.issued_range,
            stats=stats,
            meter=meter,
            warm=warm,
            finished=finished,
            reconciled=reconciled,
            found=found,
            stopped_by=self._stop_reason or ("schedule" if pacer is not None else "records"),
            uvloop=running_uvloop(),
            extra=self._extra(pacer, stats),
        )

    def _extra(self, pacer: Pacer | None, stats: RunStats) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.adaptive is not None:
            extra["adaptive"] = self.adaptive.summary()
        if pacer is not None:
            figures = pacer.figures(stats)
            extra["rate"] = {
                "target_rows_per_s": round(figures.target_rows_per_s, 1),
                "achieved_rows_per_s": round(figures.achieved_rows_per_s, 1),
                "met": figures.met,
                "verdict": figures.verdict(),
                "late_batches": figures.late_batches,
                "late_after_ms": LATE_AFTER_S * 1000.0,
                "schedule_lag_ms": {
                    "p99": round(figures.lag_p99_ms, 3),
                    "max": round(figures.lag_max_ms, 3),
                },
                "latency_from_due_ms": {
                    f"p{q}": round(stats.from_due.percentile(q), 3) for q in (50, 95, 99)
                }
                | {"max": round(stats.from_due.max, 3)},
            }
        return extra

    async def _produce(
        self,
        source: Synthetic,
        target: Target,
        planner: BatchPlanner,
        send: MemoryObjectSendStream[_Unit],
        deadline: float | None,
    ) -> None:
        async with send, anyio.create_task_group() as tg:
            while True:
                token = object()
                await self.limits.generation.acquire_on_behalf_of(token)
                step = next_step(  # after the wait: a stop or the deadline may have come
                    planner, stopping=self.stopping, now=time.perf_counter(), deadline=deadline
                )
                if step.ids is None:
                    self.limits.generation.release_on_behalf_of(token)
                    if step.stop:
                        self.stop(step.stop)
                    break
                tg.start_soon(self._generate, source, target, step.ids, send.clone(), token)

    async def _generate(
        self,
        source: Synthetic,
        target: Target,
        ids: IdRange,
        send: MemoryObjectSendStream[_Unit],
        token: object,
    ) -> None:
        unit = _Unit(functools.partial(self.limits.generation.release_on_behalf_of, token))
        try:
            async with send:
                work = source.unit(ids, target.encoding, self.settings.batch_size)
                unit.batches = await generate(self._executor, self._arena, work)
                await send.send(unit)  # the dispatcher gives the token back from here on
        except BaseException:
            unit.done()
            raise

    async def _dispatch(
        self,
        sink: AsyncSink,
        receive: MemoryObjectReceiveStream[_Unit],
        stats: RunStats,
        policy: RetryPolicy,
        pacer: Pacer | None,
        warm: Warmup,
    ) -> None:
        deliver_one = functools.partial(self._deliver_job, sink, stats, policy, warm, pacer)
        async with receive, anyio.create_task_group() as tg:
            lanes = Lanes(tg, deliver_one, self._drop_job)
            try:
                async for unit in receive:
                    try:
                        for batch in unit.batches:
                            due = None if pacer is None else await pacer.wait(
                                batch.ids.count, self._stop_event
                            )  # fmt: skip
                            borrower = await self._send_token()
                            if due is not None:
                                stats.record_sent_at(time.perf_counter() - due, LATE_AFTER_S)
                            lanes.submit((batch, borrower, due))
                    finally:
                        unit.done()
            finally:  # units left in the buffer (an abort): give their tokens back
                lanes.close()
                while True:
                    try:
                        receive.receive_nowait().done()
                    except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                        break

    async def _send_token(self) -> object:
        """A send token, taken at once when one is free (no trip through the event loop)."""
        borrower = object()
        try:
            self.limits.sends.acquire_on_behalf_of_nowait(borrower)
        except anyio.WouldBlock:
            await self.limits.sends.acquire_on_behalf_of(borrower)
        return borrower

    async def _deliver_job(
        self,
        sink: AsyncSink,
        stats: RunStats,
        policy: RetryPolicy,
        warm: Warmup,
        pacer: Pacer | None,
        job: _Job,
    ) -> None:
        batch, borrower, due = job
        stats.started_request()
        try:
            await deliver(sink, batch, stats, policy, self._random.random)
            # the warm-up ends with the first batch done after it is due, not when the
            # reporter next wakes (late when generation keeps the loop busy)
            warm.check(stats, time.perf_counter())
            if pacer is not None and due is not None:
                done = time.perf_counter()
                stats.record_from_due(done - due)
                pacer.done(done)
        finally:
            stats.in_flight -= 1
            self.limits.sends.release_on_behalf_of(borrower)

    def _drop_job(self, job: _Job) -> None:
        """A batch handed to a lane that was cancelled first (an abort): give its token back."""
        self.limits.sends.release_on_behalf_of(job[1])

    async def _report(self, stats: RunStats, handler: SnapshotHandler, warm: Warmup) -> None:
        interval = self.settings.report_interval
        while True:
            await anyio.sleep(interval)
            now = time.perf_counter()
            warm.check(stats, now)
            handler(stats.snapshot(now))


async def deliver(
    sink: AsyncSink,
    batch: EncodedBatch,
    stats: RunStats,
    policy: RetryPolicy,
    jitter: Callable[[], float],
    delivery: Delivery | None = None,
) -> Delivery:
    """Send one batch until every row is delivered, rejected, or retries run out.

    Returns the finished ``Delivery`` (its rejected rows and what was given up); pass
    ``delivery`` to keep its state when this raises or is cancelled (then its pending rows are
    abandoned: ``Delivery.abandon``).  Raises the sink's fatal ``AsyncEtlError`` (e.g. a 401 or
    an unknown table) unchanged.
    """
    d = delivery or Delivery(batch, stats, policy)
    try:
        while (current := d.pending) is not None:
            t0 = time.perf_counter()
            try:
                result = await sink.send(current, d.attempt)
            except TransientError as exc:
                delay = d.failed(exc, time.perf_counter() - t0, jitter())
                if d.pending is None:
                    log.warning("batch_given_up", first_id=batch.ids.start, reason=exc.message)
            else:
                delay = d.sent(result, time.perf_counter() - t0, jitter())
            if delay:
                await anyio.sleep(delay)
    except BaseException:
        d.abandon()  # cancelled (an abort) or failed: the pending rows got no answer
        raise
    return d


__all__ = ["Engine", "Limits", "deliver"]
