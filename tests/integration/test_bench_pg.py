from __future__ import annotations

import asyncio

import anyio
import asyncpg
import pytest

from async_etl.config import BenchSettings
from async_etl.errors import ConfigError, ErrorKind
from async_etl.runtime.engine import Engine
from async_etl.sinks import open_sink
from async_etl.sources.synthetic import Synthetic


def _settings(dsn: str, **kw: object) -> BenchSettings:
    base: dict[str, object] = dict(
        sink=dsn, records=50_000, batch_size=2_000, concurrency=4, generators=1, retry_base=0.01
    )
    base.update(kw)
    return BenchSettings(**base)  # type: ignore[arg-type]


async def _ids(dsn: str, table: str = "async_etl_bench") -> tuple[int, int, int, int]:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            f"SELECT count(*), count(DISTINCT id), min(id), max(id) FROM {table}"
        )
    finally:
        await conn.close()
    assert row is not None
    return row[0], row[1], row[2], row[3]


async def _bench(settings: BenchSettings, source: Synthetic | None = None):  # type: ignore[no-untyped-def]
    assert settings.sink is not None
    sink = open_sink(settings.sink, settings)
    try:
        async with Engine(settings) as engine:
            return await engine.run(source or Synthetic(), sink)
    finally:
        await sink.aclose()


async def test_postgres_gets_exactly_the_records_with_distinct_ids(pg_dsn: str) -> None:
    """Every record lands once: count == distinct ids == records, ids contiguous from 1."""
    summary = await _bench(_settings(pg_dsn))
    assert summary.ok and summary.records == 50_000 and summary.reconciled == 50_000
    assert await _ids(pg_dsn) == (50_000, 50_000, 1, 50_000)


async def test_a_second_run_continues_the_id_range(pg_dsn: str) -> None:
    """A second run into the same table starts after the first run's last id."""
    await _bench(_settings(pg_dsn, records=10_000))
    second = await _bench(_settings(pg_dsn, records=5_000))
    assert second.id_range == (10_001, 15_001)
    assert second.reconciled == 5_000
    assert await _ids(pg_dsn) == (15_000, 15_000, 1, 15_000)


async def test_schema_qualified_unlogged_table_is_created(pg_dsn: str) -> None:
    """--table schema.name --unlogged creates the schema and an UNLOGGED table."""
    summary = await _bench(_settings(pg_dsn, records=3_000, table="bench.t1", unlogged=True))
    assert summary.ok
    conn = await asyncpg.connect(pg_dsn)
    try:
        persistence = await conn.fetchval(
            "SELECT relpersistence::text FROM pg_class WHERE oid = 'bench.t1'::regclass"
        )
    finally:
        await conn.close()
    assert persistence == "u"


async def test_killed_backends_mid_run_still_deliver_every_row_exactly_once(pg_dsn: str) -> None:
    """Terminating the sink's connections mid-run is retried; no row is lost or duplicated."""
    settings = _settings(pg_dsn, records=400_000, batch_size=1_000, max_retries=20)
    admin = await asyncpg.connect(pg_dsn)
    killed = 0

    async def killer() -> None:
        nonlocal killed
        while killed < 4:  # keep trying until a few COPYs were cut (the run outlasts this)
            await anyio.sleep(0.03)
            killed += len(
                await admin.fetch(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND state = 'active' AND query LIKE 'COPY%'"
                )
            )

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(killer)
            summary = await _bench(settings)
            tg.cancel_scope.cancel()
    finally:
        await admin.close()
    assert killed > 0, "the test must actually kill backends"
    assert summary.retries > 0
    assert summary.ok, summary.problems()
    assert await _ids(pg_dsn) == (400_000, 400_000, 1, 400_000)


async def test_wrong_table_shape_is_a_permanent_one_line_error(pg_dsn: str) -> None:
    """A pre-existing table of the wrong shape stops the run at start with PostgreSQL's message."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("CREATE TABLE async_etl_bench (id text, something int)")
    finally:
        await conn.close()
    with pytest.raises(ConfigError) as info:
        await _bench(_settings(pg_dsn, records=2_000))
    message = info.value.message
    assert "\n" not in message and "async_etl_bench" in message


async def test_unreachable_database_is_a_one_line_error_without_password() -> None:
    """A refused connection at start: ConfigError (exit 2) of kind network, password masked."""
    dsn = "postgresql://postgres:secret@127.0.0.1:1/none"
    with pytest.raises(ConfigError) as info:
        await asyncio.wait_for(_bench(_settings(dsn, records=10, max_retries=1)), 30)
    assert "secret" not in info.value.message and "***" in info.value.message
    assert info.value.kind is ErrorKind.NETWORK
