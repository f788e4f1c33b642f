from __future__ import annotations

import asyncpg

import async_etl
from async_etl import BenchSettings, Engine, Synthetic, default_schema, open_sink


async def test_readme_embedding_example_loads_postgres(pg_dsn: str) -> None:
    """The README's embedding example runs as written and loads every record."""
    settings = BenchSettings(records=25_000, generators=1)
    async with (
        open_sink(pg_dsn, table="async_etl_bench", concurrency=4) as sink,
        Engine(settings) as engine,
    ):
        summary = await engine.run(Synthetic(default_schema(), seed=7), sink)
    assert summary.ok and summary.reconciled == 25_000
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert await conn.fetchval("SELECT count(DISTINCT id) FROM async_etl_bench") == 25_000
    finally:
        await conn.close()


def test_public_names_are_exported() -> None:
    """Everything in __all__ is importable from the package root."""
    for name in async_etl.__all__:
        assert hasattr(async_etl, name), name
