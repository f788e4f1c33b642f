"""Two writers and an engine share one event loop; snapshots reach a metrics callback."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import asyncpg

from async_etl import BenchSettings, Engine, Synthetic, WriterSnapshot, open_sink, open_writer
from async_etl.testing.crate import CrateStandIn


async def test_two_writers_and_an_engine_run_together(pg_dsn: str) -> None:
    """A PG writer, a CrateDB writer and a bench engine interleave and each lands everything."""
    snaps: list[WriterSnapshot] = []
    cols = {"id": "bigint", "v": "text"}
    async with CrateStandIn() as crate:
        pg = open_writer(
            pg_dsn, table="a", columns=cols, primary_key=["id"], batch_rows=300,
            on_snapshot=snaps.append, snapshot_interval=0.01,
        )  # fmt: skip
        cr = open_writer(crate.url, table="b", columns=cols, primary_key=["id"], batch_rows=300)
        settings = BenchSettings(records=20_000, generators=0, concurrency=2)
        summary = None

        async def bench() -> None:
            nonlocal summary
            async with open_sink(pg_dsn, settings, table="bench") as sink, Engine(settings) as e:
                summary = await e.run(Synthetic(), sink)

        async def feed(writer: object, n: int) -> None:
            for i in range(n):
                await writer.write((i, f"v{i}"))  # type: ignore[attr-defined]
                if i % 500 == 0:
                    await anyio.lowlevel.checkpoint()

        async with pg, cr, anyio.create_task_group() as tg:
            tg.start_soon(bench)
            tg.start_soon(feed, pg, 6000)
            tg.start_soon(feed, cr, 4000)
        assert pg.report.delivered == 6000 and pg.report.ok
        assert cr.report.delivered == 4000 and cr.report.ok
        assert summary is not None and summary.reconciled == 20_000
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert await conn.fetchval("SELECT count(DISTINCT id) FROM a") == 6000
    finally:
        await conn.close()
    assert snaps, "the snapshot callback was called"
    assert all(s.accepted == s.buffered + s.in_flight_rows + s.delivered for s in snaps)
    assert max(s.accepted for s in snaps) <= 6000
