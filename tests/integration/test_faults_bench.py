"""A killed connection at any step of a PostgreSQL bench run is retried, in both runner modes.

The sink reaches PostgreSQL through a ``PgProxy`` that kills the session carrying the Nth
statement of a step (``FATAL 57P01``).  The run must end ok with exactly the ids a run without
faults writes: 1..records, each once.
"""

from __future__ import annotations

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

RECORDS = 12_000

BENCH_STEPS = {
    "create table": (r'^DO .*CREATE TABLE IF NOT EXISTS "async_etl_bench"', 1),  # one DO block
    "create ledger": (r"^DO .*CREATE TABLE IF NOT EXISTS async_etl_bench_ledger", 1),
    "next id": (r"^SELECT max\(start_id \+ rows\)", 1),
    "copy": (r'^COPY "async_etl_bench"', 3),
    "ledger row": (r"^INSERT INTO async_etl_bench_ledger", 2),
    "commit": (r"^COMMIT", 4),
    "reconcile": (r'^SELECT count\(\*\) FROM "async_etl_bench"', 1),
}


async def _bench(url: str, mode: str) -> Summary:
    """One bench run of ``RECORDS`` rows into ``url`` in ``mode`` (async or threads)."""
    settings = BenchSettings(sink=url, records=RECORDS, batch_size=2_000, concurrency=2,
                             generators=0, retry_base=0.01, mode=mode)  # fmt: skip
    if mode == "threads":
        return await anyio.to_thread.run_sync(run_threads, settings, Synthetic(), url)
    sink = open_sink(url, settings)
    try:
        async with Engine(settings) as engine:
            return await engine.run(Synthetic(), sink)
    finally:
        await sink.aclose()


@pytest.mark.parametrize("mode", ["async", "threads"])
@pytest.mark.parametrize("step", list(BENCH_STEPS))
async def test_bench_survives_a_killed_connection(pg_dsn: str, step: str, mode: str) -> None:
    """Bench into PostgreSQL: a connection killed at this step is retried; ids 1..N once each."""
    faults = Faults()
    pattern, nth = BENCH_STEPS[step]
    faults.arm(pattern, nth)
    async with PgProxy(pg_dsn, faults) as proxy:
        summary = await _bench(proxy.url, mode)
    assert faults.kills == 1
    assert summary.ok and summary.records == summary.reconciled == RECORDS
    conn = await asyncpg.connect(pg_dsn)
    try:
        row = await conn.fetchrow("SELECT count(*), count(DISTINCT id), min(id), max(id) "
                                  "FROM async_etl_bench")  # fmt: skip
    finally:
        await conn.close()
    assert tuple(row or ()) == (RECORDS, RECORDS, 1, RECORDS)
