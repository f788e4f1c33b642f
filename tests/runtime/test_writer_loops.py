"""The writer on the stdlib loop and on uvloop: same accounting, same exactly-once result."""

from __future__ import annotations

import aiohttp
import pytest

from async_etl import RetryPolicy, open_writer
from async_etl.testing.crate import CrateStandIn, StandInConfig
from async_etl.testing.crate.probe import post_sql


@pytest.mark.both_loops
async def test_writer_delivers_once_through_faults_on_either_loop() -> None:
    """Dropped connections and 503s on asyncio and uvloop: every row lands exactly once."""
    async with CrateStandIn(StandInConfig(seed=9, drop_rate=0.2, fail_rate=0.2)) as crate:
        async with open_writer(
            crate.url, table="ev", columns={"id": "BIGINT", "v": "TEXT"}, primary_key=["id"],
            batch_rows=200, retry=RetryPolicy(max_retries=30, base=0.005, cap=0.05),
        ) as writer:  # fmt: skip
            await writer.write_many((i, "v") for i in range(2000))
        crate.drop_rate = crate.fail_rate = 0.0
        async with aiohttp.ClientSession() as session:
            await post_sql(session, crate.url, "REFRESH TABLE ev")
            _, body = await post_sql(session, crate.url, "SELECT id FROM ev ORDER BY id")
    assert [row[0] for row in body["rows"]] == list(range(2000))
    assert writer.report.delivered == 2000 and writer.report.retries > 0
