"""Exactly-once delivery into real PostgreSQL in both modes: asyncpg COPY and psycopg COPY."""

from __future__ import annotations

import anyio
import asyncpg
import pytest

from async_etl.config import BenchSettings
from async_etl.core.summary import Summary
from async_etl.runtime.engine import Engine
from async_etl.runtime.threads import run_threads
from async_etl.sinks import open_sink
from async_etl.sinks.pg_sql import LEDGER
from async_etl.sources.synthetic import Synthetic


async def run_mode(mode: str, dsn: str, **kw: object) -> Summary:
    """One run in ``mode``; thread mode runs in a worker thread (it starts no event loop)."""
    base: dict[str, object] = dict(records=20_000, batch_size=1000, concurrency=4, generators=0)
    settings = BenchSettings(sink=dsn, mode=mode, **{**base, **kw})  # type: ignore[arg-type]
    if mode == "threads":
        return await anyio.to_thread.run_sync(
            run_threads, settings, Synthetic(), dsn, limiter=anyio.CapacityLimiter(1)
        )
    sink = open_sink(dsn, settings)
    try:
        async with Engine(settings) as engine:
            return await engine.run(Synthetic(), sink)
    finally:
        await sink.aclose()


@pytest.mark.parametrize("mode", ["threads", "async"])
async def test_exact_count_distinct_ids_and_reconcile(mode: str, pg_dsn: str) -> None:
    """Two runs: every id once, contiguous across runs, ledger and reconcile agree."""
    first = await run_mode(mode, pg_dsn)
    second = await run_mode(mode, pg_dsn, records=7_500, concurrency=2)
    assert first.mode == second.mode == mode
    assert first.ok and second.ok
    assert (first.reconciled, second.reconciled) == (20_000, 7_500)
    assert second.id_range == (20_001, 27_501)
    conn = await asyncpg.connect(pg_dsn)
    try:
        total, distinct, low, high = await conn.fetchrow(
            "SELECT count(*), count(DISTINCT id), min(id), max(id) FROM async_etl_bench"
        )
        ledgered = await conn.fetchval(f"SELECT sum(rows) FROM {LEDGER}")
    finally:
        await conn.close()
    assert total == distinct == ledgered == 27_500
    assert (low, high) == (1, 27_500)
