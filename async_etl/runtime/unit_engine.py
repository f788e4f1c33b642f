"""One engine that runs whole id-range units: what a Ray actor and a worker process each hold.

Theory of operation
-------------------
A scale-out bench (``runtime.coordinator``) hands id-range units to workers that each run
this engine: its own sink connections, its own generator processes (or inline generation)
and its own send limit of ``--concurrency`` batches.  ``run_unit`` generates a unit, delivers
every batch of it under that limit, and returns the unit's ``RunStats``: every row of the unit
is then delivered, rejected or given up, and the counters say which.

A *re-sent* unit (its first worker died) goes through ``Resending``: every attempt is sent as
a retry, so the sink first checks whether the batch already landed (PostgreSQL ledger, CrateDB
``ON CONFLICT DO NOTHING``), and rows a dead worker had written are not written twice.
"""

from __future__ import annotations

import functools
import os
import random
import time
from typing import Any

import anyio

from async_etl.config import BenchSettings
from async_etl.core.delivery import Delivery
from async_etl.core.reckoning import IdOutcomes
from async_etl.core.records import w_generate_batches
from async_etl.core.retry import RetryPolicy
from async_etl.core.stats import RunStats
from async_etl.core.units import Assignment
from async_etl.errors import first_etl_error
from async_etl.runtime.engine import deliver
from async_etl.runtime.executor import InlineExecutor, ProcessExecutor, ThreadExecutor
from async_etl.runtime.retrying import retrying
from async_etl.sinks import open_sink
from async_etl.sources.synthetic import Synthetic
from async_etl.typing import AsyncSink, EncodedBatch, SendResult, Target

UNITS_PER_WORKER = 2  # the fewest units a worker holds at once: one delivering, one generating


def units_per_worker(concurrency: int) -> int:
    """Units one worker holds at once: enough to keep ``concurrency`` sends busy, plus one."""
    return max(UNITS_PER_WORKER, concurrency + 1)


class Resending:
    """A sink wrapper for re-sent units: every attempt checks whether the batch landed."""

    def __init__(self, inner: AsyncSink) -> None:
        self._inner = inner

    async def send(self, batch: EncodedBatch, attempt: int) -> SendResult:
        """Send as a retry (attempt >= 2), so the sink's exactly-once check runs first."""
        return await self._inner.send(batch, max(2, attempt + 1))


class UnitEngine:
    """One worker's engine: its own sink connections, generator processes and send limit."""

    def __init__(
        self,
        settings: BenchSettings,
        source: Synthetic,
        target: Target,
        generate_on: ThreadExecutor | None = None,
    ) -> None:
        self._settings = settings
        self._source = source
        self._target = target
        self._sink: AsyncSink | None = None
        self._executor: ProcessExecutor | InlineExecutor | ThreadExecutor = (
            generate_on or InlineExecutor()
        )
        self._sends: anyio.CapacityLimiter | None = None
        self._random = random.Random(settings.seed ^ os.getpid())

    async def start(self) -> int:
        """Open the sink and the generator processes; returns this process's pid.

        Raises the sink's ``AsyncEtlError`` when it cannot be prepared after the retries.
        """
        s = self._settings
        assert s.sink is not None
        self._sink = open_sink(s.sink, s, what="--sink")
        policy = RetryPolicy(max_retries=s.max_retries, base=s.retry_base, cap=s.retry_cap)
        await retrying(
            functools.partial(self._sink.prepare, self._source.schema),
            policy,
            self._random.random,
            what="prepare sink",
        )
        workers = min(s.generators, os.cpu_count() or 1)  # sized to this worker's node
        if workers > 0:
            self._executor = ProcessExecutor(workers)
        await self._executor.start()
        self._sends = anyio.CapacityLimiter(s.concurrency)
        return os.getpid()

    async def run_unit(self, unit: Assignment) -> RunStats:
        """Generate and deliver one unit; returns its counters (every row accounted for).

        Raises the sink's fatal ``AsyncEtlError`` (e.g. an unknown table) unchanged.
        """
        assert self._sink is not None and self._sends is not None, "start() first"
        s = self._settings
        policy = RetryPolicy(max_retries=s.max_retries, base=s.retry_base, cap=s.retry_cap)
        stats = RunStats(started_at=time.perf_counter(), ids=IdOutcomes())
        work = self._source.unit(unit.ids, self._target.encoding, s.batch_size)
        batches = await self._executor.run(w_generate_batches, work)
        sink: Any = Resending(self._sink) if unit.resend else self._sink
        sends = self._sends
        try:
            async with anyio.create_task_group() as tg:
                for batch in batches:
                    # a token, not the batch: a limiter keeps its borrowers in a set, and a
                    # batch's hash is its payload's (10 MB of 2,000-byte rows hashed per batch)
                    borrower = object()
                    await sends.acquire_on_behalf_of(borrower)
                    tg.start_soon(self._deliver, borrower, sink, batch, stats, policy)
        except BaseExceptionGroup as group:  # the sink's own error, not a group, goes back
            err = first_etl_error(group)
            if err is None:
                raise
            raise err from err.__cause__
        return stats

    async def _deliver(
        self,
        borrower: object,
        sink: AsyncSink,
        batch: EncodedBatch,
        stats: RunStats,
        policy: RetryPolicy,
    ) -> None:
        assert self._sends is not None
        stats.started_request()
        try:
            await deliver(
                sink, batch, stats, policy, self._random.random, Delivery(batch, stats, policy)
            )
        finally:
            stats.in_flight -= 1
            self._sends.release_on_behalf_of(borrower)

    def pid(self) -> int:
        """The worker's process id (tests kill it)."""
        return os.getpid()

    async def close(self) -> None:
        """Close the sink and the generator processes."""
        if self._sink is not None:
            await self._sink.aclose()
        await self._executor.aclose()


__all__ = ["Resending", "UnitEngine", "units_per_worker"]
