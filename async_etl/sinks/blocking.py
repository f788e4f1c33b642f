"""Blocking sinks for the thread runner, chosen by URL scheme like ``open_sink``.

The same URLs, the same validation (``sink_scheme``) and the same settings as the async sinks,
so ``--mode threads`` changes only the concurrency model: CrateDB over urllib3, PostgreSQL over
psycopg 3 (binary COPY), and the null sink.
"""

from __future__ import annotations

from async_etl.config import BenchSettings
from async_etl.sinks import sink_scheme
from async_etl.typing import BlockingSink


def open_blocking_sink(url: str, settings: BenchSettings) -> BlockingSink:
    """The blocking sink for ``url``; raises ``ConfigError`` for an unknown or malformed URL."""
    scheme = sink_scheme(url)
    if scheme == "null":
        from async_etl.sinks.null import BlockingNullSink

        return BlockingNullSink()
    if scheme in ("postgresql", "postgres"):
        from async_etl.sinks.postgres_sync import BlockingPostgresSink

        return BlockingPostgresSink(
            url, table=settings.table, concurrency=settings.concurrency, unlogged=settings.unlogged
        )
    from async_etl.sinks.cratedb_sync import BlockingCrateDBSink

    return BlockingCrateDBSink(
        url,
        table=settings.table,
        concurrency=settings.concurrency,
        gzip_threshold=settings.gzip_threshold,
        timeout=settings.request_timeout,
    )
