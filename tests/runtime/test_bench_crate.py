from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from async_etl.config import BenchSettings
from async_etl.errors import ConfigError
from async_etl.runtime.engine import Engine
from async_etl.sinks.cratedb import CrateDBSink
from async_etl.sources.synthetic import Synthetic
from async_etl.testing.crate import CrateStandIn, StandInConfig
from async_etl.testing.crate.probe import post_sql


def _settings(url: str, **kw: object) -> BenchSettings:
    base: dict[str, object] = dict(
        sink=url,
        records=30_000,
        batch_size=500,
        concurrency=8,
        generators=0,
        retry_base=0.001,
        retry_cap=0.01,
        max_retries=30,
    )
    base.update(kw)
    return BenchSettings(**base)  # type: ignore[arg-type]


async def _run(settings: BenchSettings, source: Synthetic | None = None) -> object:
    assert settings.sink
    sink = CrateDBSink(settings.sink, table=settings.table, concurrency=settings.concurrency)
    try:
        async with Engine(settings) as engine:
            return await engine.run(source or Synthetic(), sink)
    finally:
        await sink.aclose()


async def _table_stats(url: str) -> tuple[int, int, int]:
    async with aiohttp.ClientSession() as s:
        await post_sql(s, url, "REFRESH TABLE async_etl_bench")
        _, body = await post_sql(s, url, "SELECT count(*), min(id), max(id) FROM async_etl_bench")
    count, low, high = body["rows"][0]
    return count, low, high


@pytest.mark.parametrize(
    "faults",
    [
        {"fail_rate": 0.2},
        {"busy_rate": 0.2},
        {"item_fail_rate": 0.05},
        {"drop_rate": 0.1},
        {"fail_rate": 0.05, "item_fail_rate": 0.02, "drop_rate": 0.05},
    ],
    ids=["503", "429", "per-item", "drops", "mixed"],
)
async def test_injected_faults_still_deliver_every_row_exactly_once(
    faults: dict[str, float],
) -> None:
    """With 503s, 429s, per-item failures and dropped connections, each row lands once."""
    async with CrateStandIn(StandInConfig(seed=11, **faults)) as crate:  # type: ignore[arg-type]
        summary = await _run(_settings(crate.url))
        injected = sum(crate.counters.faults.values())
        for knob in faults:  # faults off: the verification query must not meet one
            setattr(crate, knob, 0.0)
        stats = await _table_stats(crate.url)
    assert injected > 0, "the stand-in must have injected faults"
    assert summary.retries > 0  # type: ignore[attr-defined]
    assert summary.ok, summary.problems()  # type: ignore[attr-defined]
    assert stats == (30_000, 1, 30_000)  # PK-unique table: count == records means no dupes


async def test_count_only_stand_in_reconciles_a_large_run() -> None:
    """Against the counting stand-in the run's id range is counted exactly."""
    async with CrateStandIn(StandInConfig(count_only=True)) as crate:
        summary = await _run(_settings(crate.url, records=100_000, batch_size=5_000))
    assert summary.reconciled == 100_000 and summary.ok  # type: ignore[attr-defined]


async def test_wrong_table_type_is_a_permanent_error() -> None:
    """A pre-existing table whose id column is not numeric: one ConfigError before the run."""
    async with CrateStandIn() as crate:
        async with aiohttp.ClientSession() as s:
            await post_sql(s, crate.url, "CREATE TABLE async_etl_bench (id BOOLEAN PRIMARY KEY)")
        with pytest.raises(ConfigError) as info:
            await _run(_settings(crate.url, records=1_000))
    assert "\n" not in info.value.message
    assert "column id is boolean, the records' is bigint" in info.value.message


async def test_a_schema_column_crate_reserves_is_refused_in_one_line(tmp_path: Path) -> None:
    """A bench schema column starting with _ is one ConfigError, nothing created (was a 4008)."""
    schema = tmp_path / "s.toml"
    schema.write_text('[columns]\nid = { type = "bigint", gen = "sequence" }\n'
                      '_tag = { type = "text", gen = "choice", values = ["a"] }\n')  # fmt: skip
    async with CrateStandIn() as crate:
        with pytest.raises(ConfigError) as info:
            await _run(_settings(crate.url, records=10),
                       Synthetic.from_options(schema_file=str(schema)))  # fmt: skip
        assert not crate.catalog.tables
    assert "\n" not in info.value.message and "column '_tag'" in info.value.message
