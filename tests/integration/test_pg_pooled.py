"""``pooled``: a cancelled operation is cancelled on the server too, not left running alone."""

from __future__ import annotations

import anyio
import asyncpg

from async_etl.drivers.postgres import open_pool, pooled
from tests.integration.pg_activity import until_waiting_on


async def test_a_statement_cancelled_while_it_waits_never_commits(pg_dsn: str) -> None:
    """An INSERT cut off while it waits on a lock is cancelled: freed, it still inserts nothing."""
    holder = await asyncpg.connect(pg_dsn)
    pool = await open_pool(pg_dsn, min_size=1, max_size=1)
    try:
        await holder.execute("CREATE TABLE t (v int); SELECT pg_advisory_lock(9)")

        async def insert() -> None:
            async with pooled(pool) as conn:
                await conn.execute("INSERT INTO t SELECT 1 FROM pg_advisory_xact_lock(9)")

        async with anyio.create_task_group() as tg:
            tg.start_soon(insert)
            await until_waiting_on(holder, 9)
            tg.cancel_scope.cancel()
        await holder.execute("SELECT pg_advisory_unlock(9)")
        with anyio.fail_after(30):  # taken again once no transaction of the INSERT holds it
            await holder.execute("SELECT pg_advisory_lock(9)")
        assert await holder.fetchval("SELECT count(*) FROM t") == 0
        async with pooled(pool) as conn:  # the connection went back to the pool, usable
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        await pool.close()
        await holder.close()
