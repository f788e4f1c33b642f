"""A batch whose COMMIT lands in PostgreSQL while its answer is lost, with no retry left.

The sink reaches PostgreSQL through a ``PgProxy`` that lets the first batch's ``COMMIT`` run
and cuts the session before its answer (``Faults.lose_reply``); ``max_retries=0`` leaves no
attempt to ask the ledger, so the client gives those rows up although they are in the
target.  The summary must count what is in the target by each kind's own ids: the landed
given-up rows are delivered, never-sent rows (an abort) are not.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import anyio
import asyncpg
import pytest

from async_etl.config import BenchSettings
from async_etl.core.summary import Summary
from async_etl.runtime.engine import Engine
from async_etl.runtime.threads import run_threads
from async_etl.sinks import open_sink
from async_etl.sources.synthetic import Synthetic
from async_etl.testing.pgproxy import Faults, PgProxy
from async_etl.typing import EncodedBatch, IdRange, SendResult, Target

BATCH = 1_000


def _settings(url: str, **kw: Any) -> BenchSettings:
    base: dict[str, Any] = dict(sink=url, batch_size=BATCH, concurrency=1, generators=0,
                                max_retries=0, retry_base=0.01)  # fmt: skip
    return BenchSettings(**(base | kw))


def _lose_first_commit() -> Faults:
    faults = Faults()
    faults.lose_reply(r"^COMMIT", after=r"^INSERT INTO async_etl_bench_ledger")
    return faults


async def _in_target(dsn: str) -> set[int]:
    conn = await asyncpg.connect(dsn)
    try:
        return {r[0] for r in await conn.fetch("SELECT id FROM async_etl_bench")}
    finally:
        await conn.close()


def _agrees_with_target(summary: Summary, held: set[int]) -> None:
    assert summary.records == summary.reconciled == len(held)
    assert summary.records + summary.rejected + summary.undelivered == summary.generated
    assert not any(p.startswith("target holds") for p in summary.problems()), summary.problems()


@dataclasses.dataclass
class _AbortOnThird:
    """The real PostgreSQL sink; its third send aborts the run instead of sending."""

    inner: Any
    engine: Engine | None = None
    sends: int = 0

    async def prepare(self, schema: Any) -> Target:
        return await self.inner.prepare(schema)  # type: ignore[no-any-return]

    async def send(self, batch: EncodedBatch, attempt: int) -> SendResult:
        self.sends += 1
        if self.sends == 3 and self.engine is not None:
            self.engine.abort()
            await anyio.sleep_forever()  # cancelled by the abort: this batch is never sent
        return await self.inner.send(batch, attempt)  # type: ignore[no-any-return]

    async def count(self, ids: IdRange) -> int | None:
        return await self.inner.count(ids)  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_an_abort_after_a_lost_commit_claims_no_never_sent_row(pg_dsn: str) -> None:
    """Lost COMMIT of batch 1, batch 2 delivered, abort: 2,000 delivered, all the rest not."""
    faults = _lose_first_commit()
    async with PgProxy(pg_dsn, faults) as proxy:
        settings = _settings(proxy.url, records=None, duration=30)
        sink = _AbortOnThird(open_sink(proxy.url, settings))
        try:
            async with Engine(settings) as engine:
                sink.engine = engine
                summary = await engine.run(Synthetic(), sink)
        finally:
            await sink.aclose()
    held = await _in_target(pg_dsn)
    assert faults.kills == 1 and held == set(range(1, 2 * BATCH + 1))
    assert summary.stopped_by == "abort" and summary.generated > 3 * BATCH
    _agrees_with_target(summary, held)
    assert summary.confirmed == BATCH  # the given-up batch, found by its own ids
    assert summary.undelivered == summary.interrupted == summary.generated - 2 * BATCH
    assert not any("after retries" in p for p in summary.problems()), summary.problems()


@pytest.mark.parametrize("mode", ["async", "threads"])
async def test_a_given_up_batch_that_landed_is_delivered(pg_dsn: str, mode: str) -> None:
    """No abort: the lost-COMMIT batch is in the target, so the run is ok and says so."""
    faults = _lose_first_commit()
    async with PgProxy(pg_dsn, faults) as proxy:
        settings = _settings(proxy.url, records=3 * BATCH, mode=mode)
        if mode == "threads":
            summary = await anyio.to_thread.run_sync(run_threads, settings, Synthetic(), proxy.url)
        else:
            sink = open_sink(proxy.url, settings)
            try:
                async with Engine(settings) as engine:
                    summary = await engine.run(Synthetic(), sink)
            finally:
                await sink.aclose()
    held = await _in_target(pg_dsn)
    assert faults.kills == 1 and held == set(range(1, 3 * BATCH + 1))
    assert summary.errors == 1 and summary.confirmed == BATCH
    _agrees_with_target(summary, held)
    assert summary.undelivered == summary.interrupted == 0 and summary.ok
