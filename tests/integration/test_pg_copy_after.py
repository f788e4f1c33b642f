"""``drivers.postgres_copy.copy_after``: a statement and a binary COPY as one simple query."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from async_etl.core.pg_native import wire_rows
from async_etl.core.row_codecs import PgColumn, encode_pg_rows
from async_etl.core.scd_sql_common import ident
from async_etl.drivers.postgres_copy import copy_after

LEDGER = "INSERT INTO ledger VALUES (1)"


async def _setup(dsn: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(dsn)
    await conn.execute(
        "CREATE TABLE t (id bigint PRIMARY KEY, v text); CREATE TABLE ledger (k int PRIMARY KEY)"
    )
    return conn


async def _state(conn: asyncpg.Connection) -> tuple[list[tuple[Any, ...]], list[int]]:
    rows = [tuple(r) for r in await conn.fetch("SELECT id, v FROM t ORDER BY id")]
    keys = [r[0] for r in await conn.fetch("SELECT k FROM ledger ORDER BY k")]
    return rows, keys


async def test_the_statement_and_the_copy_land_together_from_one_query(pg_dsn: str) -> None:
    """Both land, sent as one query text (seen by a trigger), and the connection is left idle."""
    conn = await _setup(pg_dsn)
    try:
        await conn.execute(
            "CREATE TABLE seen (q text); "
            "CREATE FUNCTION see() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN INSERT INTO seen VALUES (current_query()); RETURN NULL; END $$; "
            "CREATE TRIGGER see AFTER INSERT ON t FOR EACH STATEMENT EXECUTE FUNCTION see()"
        )
        status = await copy_after(conn, LEDGER, "t", ["id", "v"], records=[(1, "a"), (2, "b")])
        assert status == "COPY 2"
        assert await _state(conn) == ([(1, "a"), (2, "b")], [1])
        assert not conn.is_in_transaction()
        seen = await conn.fetchval("SELECT q FROM seen")
        assert seen == f'{LEDGER}; COPY "t" ("id", "v") FROM STDIN (FORMAT binary)'
    finally:
        await conn.close()


async def test_a_refused_copy_keeps_nothing_of_either(pg_dsn: str) -> None:
    """A duplicate key in the COPY: the statement before it is rolled back with it."""
    conn = await _setup(pg_dsn)
    try:
        with pytest.raises(asyncpg.UniqueViolationError):
            await copy_after(conn, LEDGER, "t", ["id", "v"], records=[(1, "a"), (1, "b")])
        assert not conn.is_in_transaction()
        assert await _state(conn) == ([], [])
        await copy_after(conn, LEDGER, "t", ["id", "v"], records=[(1, "a")])  # still usable
        assert await _state(conn) == ([(1, "a")], [1])
    finally:
        await conn.close()


async def test_a_refused_statement_keeps_the_rows_out(pg_dsn: str) -> None:
    """The statement before the COPY fails: no row lands; the COPY data sent after is ignored."""
    conn = await _setup(pg_dsn)
    try:
        await conn.execute(LEDGER)
        with pytest.raises(asyncpg.UniqueViolationError):
            await copy_after(conn, LEDGER, "t", ["id", "v"], records=[(1, "a"), (2, "b")])
        assert not conn.is_in_transaction()
        assert await _state(conn) == ([], [1])
        assert await conn.fetchval("SELECT 41 + 1") == 42  # the connection answers in step
    finally:
        await conn.close()


async def test_a_value_the_encoder_refuses_aborts_the_copy_and_its_statement(pg_dsn: str) -> None:
    """asyncpg refusing a value on the client raises it; nothing of the query is kept."""
    conn = await _setup(pg_dsn)
    try:
        with pytest.raises((TypeError, ValueError)):
            await copy_after(conn, LEDGER, "t", ["id", "v"], records=[(1, "a"), ("2", "b")])
        assert await _state(conn) == ([], [])
        assert not conn.is_in_transaction()
    finally:
        await conn.close()


async def test_a_payload_and_async_records_are_copied_too(pg_dsn: str) -> None:
    """A whole binary COPY stream, and rows from an async iterable, in a schema-qualified table."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(
            'CREATE SCHEMA "s p"; CREATE TABLE "s p"."odd""t" ("i""d" bigint, v text); '
            "CREATE TABLE ledger (k int PRIMARY KEY)"
        )
        cols = (PgColumn('i"d', "int8"), PgColumn("v", "text"))
        encoded = encode_pg_rows(cols, [(1, "x"), (2, None)])
        assert encoded.kept == (0, 1)
        payload = encoded.payload
        names: Sequence[str] = [c.name for c in cols]
        await copy_after(conn, LEDGER, 'odd"t', names, schema="s p", payload=payload)

        async def more() -> AsyncIterator[tuple[Any, ...]]:
            for row in [(3, "y"), (4, "z")]:
                yield row

        before = "INSERT INTO ledger VALUES (2)"
        await copy_after(conn, before, 'odd"t', names, schema="s p", records=more())
        await copy_after(conn, None, 'odd"t', names, schema="s p", records=[(5, "w")])
        got = await conn.fetch('SELECT "i""d", v FROM "s p"."odd""t" ORDER BY 1')
        assert [tuple(r) for r in got] == [(1, "x"), (2, None), (3, "y"), (4, "z"), (5, "w")]
        assert [r[0] for r in await conn.fetch("SELECT k FROM ledger ORDER BY k")] == [1, 2]
    finally:
        await conn.close()


async def test_a_column_cast_for_the_introspection_goes_through_that_types_encoder(
    pg_dsn: str,
) -> None:
    """``encode_as``: naive UTC values through the timestamp encoder land as the same instants."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(
            "CREATE TABLE ts (id int, at timestamptz); CREATE TABLE ledger (k int PRIMARY KEY)"
        )
        await conn.execute("SET TimeZone = 'America/New_York'")  # binary: it must not matter
        berlin = ZoneInfo("Europe/Berlin")
        at = [
            datetime(2024, 10, 27, 2, 30, tzinfo=berlin),
            datetime(2024, 10, 27, 2, 30, fold=1, tzinfo=berlin),
            datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
            datetime(9999, 12, 31, 23, 59, 59, 999998, tzinfo=UTC),
            None,
        ]
        cast = (None, "timestamp")
        records = list(wire_rows(list(enumerate(at)), cast))
        assert all(r[1] is None or r[1].tzinfo is None for r in records)
        await copy_after(conn, LEDGER, "ts", ["id", "at"], records=records, encode_as=cast)
        got = [r[0] for r in await conn.fetch("SELECT at FROM ts ORDER BY id")]
        epoch = datetime(2000, 1, 1, tzinfo=UTC)
        assert [None if g is None else g - epoch for g in got] == [
            None if v is None else v - epoch for v in at
        ]
        assert [r[0] for r in await conn.fetch("SELECT k FROM ledger")] == [1]
    finally:
        await conn.close()


def test_ident_doubles_inner_quotes() -> None:
    """An identifier is double-quoted with its inner quotes doubled."""
    assert ident('a"b') == '"a""b"'
    assert ident("plain") == '"plain"'
