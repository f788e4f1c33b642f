"""bench over Ray actors (a local in-process Ray): exact counts in PostgreSQL and the stand-in."""

from __future__ import annotations

from typing import Any

import anyio
import asyncpg

from async_etl.config import BenchSettings
from async_etl.runtime.ray_bench import run_on_ray
from async_etl.sinks import open_sink
from async_etl.sources.synthetic import Synthetic
from tests.runtime.standin_process import standin_process


def _settings(url: str, **kw: Any) -> BenchSettings:
    base: dict[str, Any] = dict(
        sink=url,
        records=24_000,
        batch_size=1000,
        concurrency=4,
        generators=0,
        ray_actors=2,
        ray="local",
        report_interval=0.5,
    )
    return BenchSettings(**(base | kw))


async def _bench(settings: BenchSettings) -> Any:
    assert settings.sink is not None
    async with open_sink(settings.sink, settings) as sink:
        return await run_on_ray(settings, Synthetic(), sink)


async def test_two_actors_into_postgres_deliver_every_row_once(ray_local: Any, pg_dsn: str) -> None:
    """Two actors into PostgreSQL: the table holds exactly the run's ids, each once."""
    settings = _settings(pg_dsn)
    summary = await _bench(settings)
    conn = await asyncpg.connect(pg_dsn)
    try:
        count, distinct, low, high = await conn.fetchrow(
            "SELECT count(*), count(DISTINCT id), min(id), max(id) FROM async_etl_bench"
        )
    finally:
        await conn.close()
    assert summary.ok, summary.problems()
    assert (count, distinct) == (settings.records, settings.records)
    assert (low, high + 1) == summary.id_range
    assert summary.records == summary.reconciled == settings.records
    ray = summary.extra["ray"]
    assert ray["actors"] == 2 and ray["units"] * 4000 >= settings.records
    assert set(ray["rows_per_s_by_actor"]) <= {"actor-0", "actor-1"}
    assert summary.batches == settings.records // settings.batch_size


async def test_two_actors_into_the_crate_standin_deliver_every_row_once(ray_local: Any) -> None:
    """Two actors into the CrateDB stand-in (its own process): the reconcile count is exact."""
    with standin_process() as url:
        settings = _settings(url, records=20_500)
        summary = await _bench(settings)
    assert summary.ok, summary.problems()
    assert summary.records == summary.reconciled == 20_500
    assert summary.generated == 20_500


async def test_stop_finishes_the_units_out_and_counts_exactly(ray_local: Any, pg_dsn: str) -> None:
    """A stop (the CLI's first signal) mid-run: no new units, those out finish, counts exact."""
    stop = anyio.Event()
    settings = _settings(pg_dsn, records=None, report_interval=0.2)
    async with open_sink(pg_dsn, settings) as sink:
        summary = await run_on_ray(
            settings, Synthetic(), sink, on_snapshot=lambda snap: stop.set(), stop=stop
        )
    assert summary.stopped_by == "signal"
    assert summary.ok, summary.problems()
    assert 0 < summary.records == summary.reconciled == summary.generated
