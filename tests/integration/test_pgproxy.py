"""The fault proxy's lost replies: only a simple Query loses its answer, and no session is kept."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from async_etl.testing.pgproxy import Faults, PgProxy

APP = "aetl-pgproxy-test"


async def _sessions(admin: asyncpg.Connection) -> int:
    sql = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
    return int(await admin.fetchval(sql, APP))


async def test_a_lost_reply_rule_passes_a_prepared_statement_and_keeps_no_session(
    pg_dsn: str,
) -> None:
    """A Parse matching lose_reply runs and answers; the same text as a Query loses its reply."""
    faults = Faults()
    rule = faults.lose_reply(r"SELECT 7")
    admin = await asyncpg.connect(pg_dsn)
    try:
        async with PgProxy(pg_dsn, faults) as proxy:
            conn = await asyncpg.connect(proxy.url, server_settings={"application_name": APP})
            try:  # extended protocol (Parse, later Bind / Execute / Sync): answered as usual
                assert await asyncio.wait_for(conn.fetchval("SELECT 7 + $1", 1), 10) == 8
                assert not rule.fired
                with pytest.raises(asyncpg.ConnectionDoesNotExistError):
                    await asyncio.wait_for(conn.execute("SELECT 7"), 10)  # a simple Query
                assert rule.fired and faults.kills == 1
            finally:
                conn.terminate()
            for _ in range(200):  # the proxy closed the server side too
                if await _sessions(admin) == 0:
                    break
                await asyncio.sleep(0.02)
            assert await _sessions(admin) == 0
    finally:
        await admin.close()
