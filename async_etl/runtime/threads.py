"""The thread runner: the async runner's pipeline, driven by threads (``--mode threads``).

Theory of operation
-------------------
Same core, two runners (``shared/STYLE.md``, point 2): this module re-implements no decision.
It uses the same ``BatchPlanner`` and ``next_step`` (which ids, when to stop), the same
generation window and queue size (``core.plan``), the same spawned process pool returning
batches through the same shared-memory arena (``runtime.transport``: what bytes, how they
travel), the same ``Delivery`` state machine and ``RetryPolicy`` (what to resend, when), the
same ``RunStats`` / ``Warmup`` (figures) and the same ``summarize`` — only the concurrency
model differs from ``async_etl.runtime.engine``::

    main thread: producer ──(2·P units in flight)──> ProcessPoolExecutor (spawn, w_warm-ed)
        └─ each finished unit, in order ──> queue.Queue(maxsize) ──> C sender threads
    sender threads (ThreadPoolExecutor(max_workers=C)): get batch -> Delivery loop -> sink.send
    reporter thread: every interval, snapshot RunStats (under the lock) -> handler

* **Backpressure**: the producer blocks in ``Queue.put`` when the C senders fall behind, while
  at most 2·P generation futures are outstanding, so memory stays flat as in async mode.
* **Stats**: ``RunStats`` is not thread-safe; every ``Delivery`` transition (which records into
  it) and every snapshot runs under one lock.  Sleeps between retries are ``Event.wait`` so an
  abort interrupts them.
* **Stop**: ``stop()`` (first SIGINT / SIGTERM, the deadline) only stops the producer; units
  already generating are still queued and delivered, in-flight sends finish.  ``abort()``
  (second signal, or a fatal error in any thread) makes the senders drop what is queued and
  give up between attempts; a send already on the wire completes (a blocking call cannot be
  cancelled), and the reconcile count says what landed.
* **Fatal errors**: the first non-transient ``AsyncEtlError`` from any thread aborts the run
  and is raised from ``run`` unchanged, so the CLI prints the same one line as in async mode.

Fairness against the async runner: the same C (sender threads = urllib3 pool size = psycopg
connections, where async has C delivery tasks = aiohttp connector limit = asyncpg pool size),
the same batch size, generator count, retry policy and warm-up.
"""

from __future__ import annotations

import functools
import queue
import random
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, contextmanager, nullcontext
from types import FrameType, TracebackType
from typing import Any, TypeVar

from async_etl.config import BenchSettings
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
from async_etl.core.stats import RunStats, Warmup
from async_etl.core.summary import Summary
from async_etl.errors import AsyncEtlError, TransientError, unusable
from async_etl.log import get_logger
from async_etl.runtime.executor import new_pool, pool_pids, w_warm
from async_etl.runtime.recount import count_open_blocking, questions_for, recount_limit
from async_etl.runtime.reporter import LiveLine, log_snapshot
from async_etl.runtime.resources import ResourceMeter
from async_etl.runtime.retrying import retrying_blocking
from async_etl.runtime.sampler import ProcessSampler, SnapshotHandler
from async_etl.runtime.stopping import Stoppable
from async_etl.runtime.summarize import describe, summarize
from async_etl.runtime.transport import Arena, Pending
from async_etl.sinks.blocking import open_blocking_sink
from async_etl.sources.synthetic import Synthetic
from async_etl.typing import BlockingSink, EncodedBatch, IdRange, Target, WorkUnit

log = get_logger(__name__)

T = TypeVar("T")
_POLL = 0.2  # seconds between abort checks while blocked on a full queue


class _Generators(AbstractContextManager["_Generators"]):
    """``P`` spawned generator processes (warmed with ``w_warm``), or inline when ``P == 0``."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.pids: list[int] = []
        self._pool: ProcessPoolExecutor | None = None
        self.arena: Arena | None = None  # set per run, as in the async runner

    def __enter__(self) -> _Generators:
        if self.workers > 0:
            self._pool = new_pool(self.workers)
            list(self._pool.map(w_warm, range(self.workers * 2)))
            self.pids = pool_pids(self._pool)
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        arena, self.arena = self.arena, None
        if arena is not None:
            arena.close()

    def open_arena(self, probe: WorkUnit) -> None:
        """Batches come back through shared memory sized for units like ``probe``."""
        if self.workers > 0 and probe.encoding.wire != "none":
            self.arena = Arena.for_units(generation_window(self.workers), probe)

    def submit(self, unit: WorkUnit) -> Pending:
        """Start generating ``unit`` (inline: generate it now)."""
        return Pending(self._pool, self.arena, unit)


class ThreadRunner(Stoppable):
    """Runs bench workloads with threads: ``ThreadRunner(settings).run(source, sink)``."""

    def __init__(self, settings: BenchSettings | None = None) -> None:
        self.settings = settings or BenchSettings(mode="threads")
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._stop_reason = ""
        self._lock = threading.Lock()  # guards RunStats and the first failure
        self._failure: BaseException | None = None
        self._random = random.Random(self.settings.seed)
        self.stats: RunStats | None = None

    def abort(self) -> None:
        """Stop at once: drop queued batches, no further attempts (sends on the wire finish)."""
        self.stop("abort")
        self._stop_reason = "abort"  # also after a graceful stop (a second signal)
        self._abort.set()

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            if self._failure is None:
                self._failure = exc
        self.abort()

    def run(
        self,
        source: Synthetic,
        sink: BlockingSink,
        *,
        on_snapshot: SnapshotHandler | None = None,
        sampler: ProcessSampler | None = None,
    ) -> Summary:
        """Generate ``source`` into ``sink`` until the records, the duration or a stop run out.

        Raises ``ConfigError`` (exit 2) when the sink cannot be prepared (as ``Engine.run``),
        ``LoadError`` (or another fatal ``AsyncEtlError``) when the sink fails for good later;
        rows that were rejected or given up are reported in the summary instead.
        """
        s = self.settings
        sampler = sampler or ProcessSampler(None)
        policy = RetryPolicy(max_retries=s.max_retries, base=s.retry_base, cap=s.retry_cap)
        with _Generators(s.generators) as gen:
            try:
                prepare = functools.partial(sink.prepare, source.schema)
                target = retrying_blocking(
                    prepare, policy, self._random.random, what="prepare sink"
                )
            except AsyncEtlError as exc:  # unreachable or unusable at start: bad input, exit 2
                raise unusable(f"cannot use the sink: {exc.message}", exc) from exc
            unit_rows = s.batch_size * batches_per_unit(s.batch_size)
            planner = BatchPlanner(start=target.start_id, batch_size=unit_rows, total=s.records)
            gen.open_arena(
                source.unit(IdRange(target.start_id, unit_rows), target.encoding, s.batch_size)
            )
            meter = ResourceMeter(gen.pids)
            meter.start()
            started = time.perf_counter()
            stats = self.stats = RunStats(started_at=started, ids=IdOutcomes())
            deadline = started + s.duration if s.duration else None
            warm = Warmup(s.warmup, started)
            batches: queue.Queue[EncodedBatch | None] = queue.Queue(queue_size(gen.workers))
            done = threading.Event()
            reporter = threading.Thread(
                target=self._report,
                args=(stats, on_snapshot or log_snapshot, warm, done, sampler),
                name="aetl-reporter",
                daemon=True,
            )
            reporter.start()
            try:
                with ThreadPoolExecutor(s.concurrency, thread_name_prefix="aetl-send") as pool:
                    senders = [
                        pool.submit(self._send_loop, sink, batches, stats, policy)
                        for _ in range(s.concurrency)
                    ]
                    try:
                        self._produce(gen, source, target, planner, batches, deadline)
                    except BaseException as exc:
                        self._fail(exc)
                    finally:
                        for _ in senders:
                            batches.put(None)  # the senders always drain: this never hangs
                        wait(senders)
                    sampler.sample()
            finally:
                done.set()
                reporter.join()
            finished = time.perf_counter()
            meter.stop()  # cpu % over the load, as rows/s: not the reconcile after it
            if self._failure is not None:
                raise self._failure
            ids = planner.issued_range
            reconciled = retrying_blocking(
                lambda: sink.count(ids), policy, self._random.random, what="reconcile count"
            )
            asked = questions_for(ids, stats, reconciled)
            found = count_open_blocking(
                sink.count, asked, policy, self._random.random, recount_limit(s)
            )
            return summarize(  # while the workers live: their CPU and memory count
                s,
                mode="threads",
                sink=target.description or describe(sink),
                issued=planner.issued_range,
                stats=stats,
                meter=meter,
                warm=warm,
                finished=finished,
                reconciled=reconciled,
                found=found,
                stopped_by=self._stop_reason or "records",
                uvloop=False,
                extra=sampler.extra(),
            )

    def _produce(
        self,
        gen: _Generators,
        source: Synthetic,
        target: Target,
        planner: BatchPlanner,
        batches: queue.Queue[EncodedBatch | None],
        deadline: float | None,
    ) -> None:
        pending: deque[Pending] = deque()
        window = generation_window(gen.workers)
        exhausted = False
        while not self._abort.is_set():
            if not exhausted and len(pending) < window:
                step = next_step(
                    planner, stopping=self.stopping, now=time.perf_counter(), deadline=deadline
                )
                if step.ids is None:
                    exhausted = True
                    if step.stop:
                        self.stop(step.stop)
                else:
                    unit = source.unit(step.ids, target.encoding, self.settings.batch_size)
                    pending.append(gen.submit(unit))
                continue
            if not pending:
                return
            for batch in pending.popleft().result():
                while not self._abort.is_set():
                    try:
                        batches.put(batch, timeout=_POLL)
                        break
                    except queue.Full:
                        continue

    def _send_loop(
        self,
        sink: BlockingSink,
        batches: queue.Queue[EncodedBatch | None],
        stats: RunStats,
        policy: RetryPolicy,
    ) -> None:
        while (batch := batches.get()) is not None:
            if self._abort.is_set():
                continue  # drain without sending, so the producer never blocks for good
            with self._lock:
                stats.in_flight += 1
            try:
                deliver_blocking(
                    sink, batch, stats, policy, self._random.random, self._lock, self._abort
                )
            except BaseException as exc:
                self._fail(exc)
            finally:
                with self._lock:
                    stats.in_flight -= 1

    def _report(
        self,
        stats: RunStats,
        handler: SnapshotHandler,
        warm: Warmup,
        done: threading.Event,
        sampler: ProcessSampler,
    ) -> None:
        while not done.wait(self.settings.report_interval):
            now = time.perf_counter()
            with self._lock:
                warm.check(stats, now)
                snap = stats.snapshot(now)
            sampler.sample()
            handler(snap)


def deliver_blocking(
    sink: BlockingSink,
    batch: EncodedBatch,
    stats: RunStats,
    policy: RetryPolicy,
    jitter: Callable[[], float],
    lock: threading.Lock,
    abort: threading.Event,
) -> None:
    """Send one batch until every row is delivered, rejected, or retries run out (or abort).

    The blocking twin of ``engine.deliver``: the same ``Delivery`` transitions, made under
    ``lock``.  Raises the sink's fatal ``AsyncEtlError`` unchanged.
    """
    d = Delivery(batch, stats, policy)
    try:
        while (current := d.pending) is not None:
            t0 = time.perf_counter()
            try:
                result = sink.send(current, d.attempt)
            except TransientError as exc:
                with lock:
                    delay = d.failed(exc, time.perf_counter() - t0, jitter())
                if d.pending is None:
                    log.warning("batch_given_up", first_id=batch.ids.start, reason=exc.message)
            else:
                with lock:
                    delay = d.sent(result, time.perf_counter() - t0, jitter())
            if delay and abort.wait(delay):
                return
    finally:
        if d.pending is not None:  # an abort between attempts, or a fatal error
            with lock:
                d.abandon()


@contextmanager
def stop_on_signals(runner: ThreadRunner) -> Iterator[None]:
    """First SIGINT/SIGTERM: finish in-flight batches and stop; second: abort.

    Handlers can only be installed from the main thread; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        if runner.stopping:
            runner.abort()
        else:
            runner.stop("signal")

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_threads(settings: BenchSettings, source: Synthetic, url: str) -> Summary:
    """Run one bench in thread mode against ``url``: open the blocking sink, report, close.

    Runs no event loop.  Raises ``ConfigError`` for a bad URL and the sink's fatal
    ``AsyncEtlError`` when it fails for good.
    """
    settings = settings.replace(mode="threads")
    sink = open_blocking_sink(url, settings)
    runner = ThreadRunner(settings)
    live = settings.log_format == "auto" and sys.stderr.isatty()
    view: AbstractContextManager[Any] = LiveLine() if live else nullcontext(log_snapshot)
    try:
        with stop_on_signals(runner), view as handler:
            return runner.run(source, sink, on_snapshot=handler, sampler=ProcessSampler(url))
    finally:
        sink.close()


__all__ = ["ThreadRunner", "deliver_blocking", "run_threads", "stop_on_signals"]
