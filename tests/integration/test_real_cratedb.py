"""Against a real CrateDB: runs only when CRATEDB_URL is set (none can run on our machines)."""

from __future__ import annotations

import os
import uuid

import pytest

from async_etl.config import BenchSettings
from async_etl.runtime.engine import Engine
from async_etl.sinks.cratedb import CrateDBSink
from async_etl.sources.synthetic import Synthetic

URL = os.environ.get("CRATEDB_URL")
pytestmark = [
    pytest.mark.cratedb,
    pytest.mark.skipif(not URL, reason="CRATEDB_URL is not set: no real CrateDB to test against"),
]


async def test_bench_against_real_cratedb_reconciles() -> None:
    """A bench run into a fresh table of a real CrateDB delivers and reconciles every row."""
    assert URL
    table = f"async_etl_test_{uuid.uuid4().hex[:8]}"
    settings = BenchSettings(
        sink=URL, table=table, records=20_000, batch_size=1_000, concurrency=8, generators=1
    )
    sink = CrateDBSink(URL, table=table, concurrency=8)
    try:
        async with Engine(settings) as engine:
            summary = await engine.run(Synthetic(), sink)
    finally:
        await sink.aclose()
    assert summary.ok, summary.problems()
    assert summary.reconciled == 20_000
