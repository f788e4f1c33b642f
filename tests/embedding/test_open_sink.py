"""``open_sink(url, table=..., concurrency=...)`` without BenchSettings, as a context manager."""

from __future__ import annotations

import asyncpg
import pytest

from async_etl import BenchSettings, ConfigError, Engine, Synthetic, open_sink


async def test_open_sink_by_keywords_loads_the_named_table(pg_dsn: str) -> None:
    """Keywords pick the table and the pool size; ``async with`` closes the pool."""
    settings = BenchSettings(records=10_000, generators=0, concurrency=2)
    async with open_sink(pg_dsn, table="events_kw", concurrency=2) as sink, Engine(settings) as e:
        summary = await e.run(Synthetic(), sink)
    assert summary.reconciled == 10_000
    assert sink._pool is None  # type: ignore[attr-defined]
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM events_kw") == 10_000
    finally:
        await conn.close()


def test_open_sink_refuses_a_bad_concurrency_in_one_line() -> None:
    """A concurrency below 1 is a ConfigError naming the setting."""
    with pytest.raises(ConfigError, match="concurrency"):
        open_sink("null://", concurrency=0)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://x", "unknown scheme 'ftp'"),
        ("localhost:5432", "not a URL"),
        ("http://", "no host"),
        ("null://?wire=xml", "wire must be crate_json, pg_binary or none"),
        ("null://?colour=red", "unknown parameter 'colour'"),
    ],
)
def test_a_bad_url_names_the_url_argument_not_a_cli_flag(url: str, problem: str) -> None:
    """From the library a bad URL is refused under ``url`` (the argument), never ``--sink``."""
    with pytest.raises(ConfigError) as info:
        open_sink(url)
    assert str(info.value).startswith(f"url {url!r}: {problem}")
