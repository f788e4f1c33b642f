"""Re-sent bench units (a dead actor's): a batch that had landed is counted once, written once."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from async_etl.config import BenchSettings
from async_etl.core.records import w_generate
from async_etl.core.schema import default_schema
from async_etl.runtime.ray_bench import Resending
from async_etl.sinks import open_sink
from async_etl.testing.crate import CrateStandIn, StandInConfig
from async_etl.typing import IdRange, SendResult, WorkUnit


@pytest.fixture
async def crate_url() -> AsyncIterator[str]:
    """A fault-free CrateDB stand-in's URL."""
    async with CrateStandIn(StandInConfig(seed=9)) as server:
        yield server.url


async def _send_twice(url: str) -> None:
    schema = default_schema()
    settings = BenchSettings(sink=url, table="t_resend", concurrency=2)
    async with open_sink(url, settings) as sink:
        target = await sink.prepare(schema)
        batch = w_generate(WorkUnit(3, IdRange(target.start_id, 250), schema, target.encoding))
        assert await sink.send(batch, 1) == SendResult(delivered=250)
        again = await Resending(sink).send(batch, 1)
        assert again.delivered == 250 and not again.rejected
        assert await sink.count(IdRange(target.start_id, 250)) == 250


async def test_resent_batch_that_landed_in_postgres_is_delivered_once(pg_dsn: str) -> None:
    """PostgreSQL: a batch sent, then re-sent through Resending, is reported and stored once."""
    await _send_twice(pg_dsn)


async def test_resent_batch_that_landed_in_cratedb_is_delivered_once(crate_url: str) -> None:
    """CrateDB stand-in: a batch sent, then re-sent through Resending, is stored once."""
    await _send_twice(crate_url)
