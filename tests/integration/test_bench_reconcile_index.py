"""A table bench creates gets its index on ``id`` with it, once, so reconcile counts use it."""

from __future__ import annotations

import anyio
import asyncpg
import pytest

from async_etl.errors import TransientLoadError
from async_etl.sinks.pg_sql import PgStatements
from async_etl.sinks.postgres import PostgresSink
from async_etl.sinks.postgres_sync import BlockingPostgresSink
from async_etl.testing.pgproxy import Faults, PgProxy
from tests.integration.jobs_helpers import fetchval
from tests.integration.test_bench_table_shape import bench
from tests.integration.test_sink_twins import Twin


@pytest.mark.parametrize("mode", ["async", "threads"])
async def test_a_table_bench_creates_has_its_reconcile_count_use_an_index(
    pg_dsn: str, mode: str
) -> None:
    """EXPLAIN of the count over an id range shows no Seq Scan (seq scans off: any index does)."""
    proc = await bench(pg_dsn, "--mode", mode)
    assert proc.returncode == 0, proc.stderr
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("SET enable_seqscan = off")
        count = PgStatements.for_table("shape").count.replace("$1", "1").replace("$2", "1001")
        plan = "\n".join(r[0] for r in await conn.fetch(f"EXPLAIN {count}"))
    finally:
        await conn.close()
    assert "Seq Scan" not in plan, plan


INDEXES = "SELECT array_agg(indexname ORDER BY indexname) FROM pg_indexes WHERE tablename = $1"


def _sink(blocking: bool, dsn: str, table: str) -> Twin:
    make = BlockingPostgresSink if blocking else PostgresSink
    return Twin(make(dsn, table=table, concurrency=1), blocking)


@pytest.mark.parametrize("blocking", [False, True], ids=["async", "blocking"])
async def test_a_prepare_cut_off_before_the_index_leaves_the_retry_a_table_with_its_index(
    pg_dsn: str, blocking: bool
) -> None:
    """The session dies on the index statement; the retried prepare leaves the table indexed."""
    faults = Faults()
    faults.arm(r"CREATE INDEX", nth=1)
    async with PgProxy(pg_dsn, faults) as proxy:
        twin = _sink(blocking, proxy.url, "cut")
        try:
            with pytest.raises(TransientLoadError):
                await twin.prepare()
            await twin.prepare()
        finally:
            await twin.close()
    assert await fetchval(pg_dsn, INDEXES, "cut") == ["cut_id_brin"]


@pytest.mark.parametrize("blocking", [False, True], ids=["async", "blocking"])
async def test_benches_preparing_one_new_table_at_once_give_it_one_index(
    pg_dsn: str, blocking: bool
) -> None:
    """Three sinks prepare each of four new tables together: no error, one named index each."""
    tables = [f"race_{n}" for n in range(4)]
    twins = [_sink(blocking, pg_dsn, t) for t in tables for _ in range(3)]
    try:
        async with anyio.create_task_group() as tg:
            for twin in twins:
                tg.start_soon(twin.prepare)
    finally:
        for twin in twins:
            await twin.close()
    for table in tables:
        assert await fetchval(pg_dsn, INDEXES, table) == [f"{table}_id_brin"]
