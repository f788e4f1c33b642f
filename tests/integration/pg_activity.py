"""Sampling how many async-etl connections a database has open (pg_stat_activity)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import asyncpg


@dataclass
class Peak:
    """The highest number of ``async-etl:*`` connections seen so far."""

    value: int = 0


@asynccontextmanager
async def peak_connections(dsn: str, every: float = 0.005) -> AsyncIterator[Peak]:
    """Sample the DSN's database every ``every`` s while the block runs; yield the peak."""
    database = dsn.split("?", 1)[0].rsplit("/", 1)[1]
    peak = Peak()

    async def sample() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            while True:
                n = await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 "
                    "AND application_name LIKE 'async-etl:%'",
                    database,
                )
                peak.value = max(peak.value, int(n))
                await anyio.sleep(every)
        finally:
            with anyio.CancelScope(shield=True):
                await conn.close()

    async with anyio.create_task_group() as tg:
        tg.start_soon(sample)
        try:
            yield peak
        finally:
            tg.cancel_scope.cancel()
