"""The source boundary: a failed connect or read of a job's source is an ``ExtractError``."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager, nullcontext

import asyncpg
import pytest

from async_etl.core.chunks import Chunk
from async_etl.errors import (
    ErrorKind,
    ExtractError,
    LoadError,
    TransientError,
    TransientExtractError,
)
from async_etl.sources.port import source_connection
from async_etl.sources.postgres import PgSource
from async_etl.testing.databases import with_database

WHOLE = Chunk(0, None, None)


def _free(url: str) -> AbstractAsyncContextManager[None]:
    """A budget holder that takes no token."""
    return nullcontext()


async def test_a_missing_source_table_is_an_extract_error(pg_dsn: str) -> None:
    """Reading a table that is not there: ExtractError (not LoadError), chained, one line."""
    source = PgSource(pg_dsn, ("id",), None, "no_such_table")
    async with source_connection(source, _free, "test") as conn:
        with pytest.raises(ExtractError) as info:
            await source.columns(conn)
    err = info.value
    assert not isinstance(err, LoadError) and not err.retryable
    assert err.kind is ErrorKind.DB_PERMANENT
    assert err.message.startswith("source postgresql://") and "42P01" in err.message
    assert isinstance(err.__cause__, asyncpg.UndefinedTableError)


async def test_a_failing_row_mid_read_is_an_extract_error_of_kind_data(pg_dsn: str) -> None:
    """An error raised while the chunk's rows stream (division by zero) keeps kind DATA."""
    query = "SELECT i AS id, 10 / (i - 300) AS v FROM generate_series(1, 1000) AS i"
    source = PgSource(pg_dsn, ("id",), query, None)
    read = 0
    async with source_connection(source, _free, "test") as conn:
        with pytest.raises(ExtractError) as info:
            async for batch in source.batches(conn, WHOLE, 100):
                read += len(batch)
    assert info.value.kind is ErrorKind.DATA and "22012" in info.value.message
    assert read < 300


async def test_a_source_backend_lost_mid_run_is_a_transient_extract_error(pg_dsn: str) -> None:
    """The source's backend terminated between reads: retryable, on the source side."""
    source = PgSource(pg_dsn, ("id",), "SELECT 1 AS id", None)
    async with source_connection(source, _free, "test") as conn:
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        admin = await asyncpg.connect(pg_dsn)
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        with pytest.raises(TransientExtractError) as info:
            await source.null_keys(conn)
    assert isinstance(info.value, TransientError) and info.value.retryable


async def test_a_source_that_cannot_be_reached_is_an_extract_error(pg_dsn: str) -> None:
    """Connecting to a database that does not exist fails at the source boundary."""
    source = PgSource(with_database(pg_dsn, "floors_no_such_db"), ("id",), "SELECT 1", None)
    with pytest.raises(ExtractError) as info:
        async with source_connection(source, _free, "test"):
            pass
    assert not isinstance(info.value, LoadError) and "3D000" in info.value.message


async def test_a_target_error_inside_the_source_block_is_left_alone(pg_dsn: str) -> None:
    """What the target raises while the source connection is open stays a LoadError."""
    source = PgSource(pg_dsn, ("id",), "SELECT 1 AS id", None)
    with pytest.raises(LoadError, match="target refused"):
        async with source_connection(source, _free, "test"):
            raise LoadError("target refused")


async def test_a_target_driver_error_inside_the_source_block_is_not_named_source(
    pg_dsn: str,
) -> None:
    """A raw driver error of another connection passes untranslated, to its own boundary."""
    source = PgSource(pg_dsn, ("id",), "SELECT 1 AS id", None)
    with pytest.raises(asyncpg.CheckViolationError):
        async with source_connection(source, _free, "test"):
            raise asyncpg.CheckViolationError("new row violates a check constraint")
