"""The reconcile count of a table bench creates reads an index on ``id``, not the whole table."""

from __future__ import annotations

import asyncpg
import pytest

from async_etl.sinks.pg_sql import PgStatements
from tests.integration.test_bench_table_shape import bench


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
