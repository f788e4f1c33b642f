"""Pooled generation through shared memory into PostgreSQL: faults, and a killed generator."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import psutil
import pytest

from async_etl.config import BenchSettings
from async_etl.errors import LoadError
from async_etl.runtime.engine import Engine
from async_etl.runtime.threads import ThreadRunner
from async_etl.runtime.transport import ARENA_PREFIX, WORKER_DIED
from async_etl.sinks import open_sink
from async_etl.sinks.blocking import open_blocking_sink
from async_etl.sources.synthetic import Synthetic
from async_etl.testing.pgproxy import Faults, PgProxy
from async_etl.typing import EncodedBatch, SendResult

RECORDS = 60_000


def _settings(url: str, mode: str) -> BenchSettings:
    return BenchSettings(sink=url, records=RECORDS, batch_size=1000, concurrency=2,
                         generators=2, retry_base=0.01, mode=mode)  # fmt: skip


def _kill_a_generator() -> None:
    """SIGKILL one generator process of this test process (not the resource tracker)."""
    workers = [
        p
        for p in psutil.Process().children(recursive=True)
        if any("spawn_main" in part for part in p.cmdline())
    ]
    assert workers, "no generator process to kill"
    os.kill(workers[0].pid, signal.SIGKILL)


class _KillOnSend:
    """Wraps a sink: on the ``nth`` send, kill a generator process first."""

    def __init__(self, inner: Any, nth: int) -> None:
        self.inner, self.nth, self.sends = inner, nth, 0

    def _tick(self) -> None:
        self.sends += 1
        if self.sends == self.nth:
            _kill_a_generator()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class _AsyncKill(_KillOnSend):
    async def send(self, batch: EncodedBatch, attempt: int) -> SendResult:
        self._tick()
        result: SendResult = await self.inner.send(batch, attempt)
        return result


class _BlockingKill(_KillOnSend):
    def send(self, batch: EncodedBatch, attempt: int) -> SendResult:
        self._tick()
        result: SendResult = self.inner.send(batch, attempt)
        return result


async def table_counts(dsn: str) -> tuple[int, int, int]:
    """Rows, distinct ids and ledgered rows of the bench table."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow("SELECT count(*), count(DISTINCT id) FROM async_etl_bench")
        ledger = await conn.fetchval("SELECT coalesce(sum(rows), 0) FROM async_etl_bench_ledger")
    finally:
        await conn.close()
    assert row is not None
    return int(row[0]), int(row[1]), int(ledger)


def _segments() -> list[str]:
    prefix = f"{ARENA_PREFIX}{os.getpid()}-"
    return [p.name for p in Path("/dev/shm").iterdir() if p.name.startswith(prefix)]


@pytest.mark.parametrize("mode", ["async", "threads"])
async def test_a_killed_generator_fails_the_run_loudly_and_loses_or_doubles_nothing(
    pg_dsn: str, mode: str
) -> None:
    """SIGKILL of a generator mid-run: one LoadError line; stored rows = ledger rows, each once."""
    settings = _settings(pg_dsn, mode)
    with pytest.raises(LoadError) as info:
        if mode == "threads":
            sink = open_blocking_sink(pg_dsn, settings)
            try:
                runner = ThreadRunner(settings)
                await anyio.to_thread.run_sync(runner.run, Synthetic(), _BlockingKill(sink, 5))
            finally:
                sink.close()
        else:
            async with open_sink(pg_dsn, settings) as sink, Engine(settings) as engine:
                await engine.run(Synthetic(), _AsyncKill(sink, 5))  # type: ignore[arg-type]
    assert info.value.message == WORKER_DIED
    rows, distinct, ledger = await table_counts(pg_dsn)
    assert 0 < rows < RECORDS  # it stopped part-way
    assert rows == distinct == ledger  # every landed batch is whole and in the ledger, once
    assert not _segments()


@pytest.mark.parametrize("mode", ["async", "threads"])
@pytest.mark.parametrize(("step", "pattern", "nth"), [
    ("copy", r'^COPY "async_etl_bench"', 3), ("commit", r"^COMMIT", 4),
])  # fmt: skip
async def test_a_killed_connection_with_pooled_generation_stores_each_id_once(
    pg_dsn: str, mode: str, step: str, pattern: str, nth: int
) -> None:
    """A connection killed at COPY or COMMIT, batches from shared memory: ids 1..N once each."""
    faults = Faults()
    faults.arm(pattern, nth)
    async with PgProxy(pg_dsn, faults) as proxy:
        settings = _settings(proxy.url, mode).replace(records=12_000)
        if mode == "threads":
            from async_etl.runtime.threads import run_threads

            summary = await anyio.to_thread.run_sync(run_threads, settings, Synthetic(), proxy.url)
        else:
            async with open_sink(proxy.url, settings) as sink, Engine(settings) as engine:
                summary = await engine.run(Synthetic(), sink)
    assert faults.kills == 1
    assert summary.ok and summary.generators == 2
    assert await table_counts(pg_dsn) == (12_000, 12_000, 12_000)
    assert not _segments()
