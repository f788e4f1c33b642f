"""Sampling how many async-etl connections a database has open (pg_stat_activity)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import asyncpg

COUNT_SQL = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 "
    "AND application_name LIKE 'async-etl:%'"
)


def database_of(dsn: str) -> str:
    """The database name of ``dsn``."""
    return dsn.split("?", 1)[0].rsplit("/", 1)[1]


async def open_connections(dsn: str, *, settle_s: float = 5.0) -> int:
    """``async-etl:*`` sessions on the DSN's database, waiting up to ``settle_s`` for zero.

    A closed session leaves ``pg_stat_activity`` a moment after the client let go.
    """
    conn = await asyncpg.connect(dsn)
    try:
        n = -1
        with anyio.move_on_after(settle_s):
            while (n := int(await conn.fetchval(COUNT_SQL, database_of(dsn)))) > 0:
                await anyio.sleep(0.05)
        return n
    finally:
        await conn.close()


@dataclass
class Peak:
    """The highest number of ``async-etl:*`` connections seen so far."""

    value: int = 0


@asynccontextmanager
async def peak_connections(dsn: str, every: float = 0.005) -> AsyncIterator[Peak]:
    """Sample the DSN's database every ``every`` s while the block runs; yield the peak."""
    database = database_of(dsn)
    peak = Peak()

    async def sample() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            while True:
                n = await conn.fetchval(COUNT_SQL, database)
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


WAITING_SQL = (
    "SELECT count(*) > 0 FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 "
    "AND NOT granted "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


async def until_waiting_on(conn: asyncpg.Connection, key: int, *, limit_s: float = 60.0) -> None:
    """Return once a session of ``conn``'s database waits on advisory lock ``key`` (or time out)."""
    with anyio.fail_after(limit_s):
        while not await conn.fetchval(WAITING_SQL, key):
            await anyio.sleep(0.01)
