"""The binary COPY payload against a real PostgreSQL: what is stored is exactly rows()."""

from __future__ import annotations

import io
import uuid
from typing import Any

import asyncpg
import orjson

from async_etl.core.records import encode_pg_binary, generate_columns, rows
from async_etl.core.schema import Column, Schema, column, default_schema
from async_etl.typing import IdRange, Row

FULL = Schema(
    (
        column("id", "bigint", "sequence"),
        column("uid", "uuid", "uuid", nullable=0.2),
        column("small", "int", "int", min=-(2**31), max=2**31 - 1, nullable=0.2),
        column("amount", "double", "uniform", min=-1e6, max=1e6, nullable=0.2),
        column("status", "text", "choice", values=["a", "bé", "ccc"], nullable=0.2),
        column("note", "text", "text", min_len=0, max_len=30, nullable=0.2),
        column("name", "text", "name"),
        column("email", "text", "email", nullable=0.2),
        column("ts", "timestamptz", "timestamp", nullable=0.2),
        column("flag", "bool", "bool", nullable=0.2),
        column("attrs", "json", "json", nullable=0.2),
        column("filler", "text", "constant", width=84),
        column("motto", "text", "constant", value="hé", width=4, nullable=0.2),
        column("blank", "char", "constant", width=84),
        column("pad", "char", "constant", value="hé €", width=6, nullable=0.2),
    )
)


def _normalise(schema: Schema, record: asyncpg.Record) -> Row:
    out: list[Any] = []
    for col, value in zip(schema.columns, record.values(), strict=True):
        if value is not None and col.type == "json":
            value = orjson.loads(value)
        elif value is not None and col.type == "uuid":
            value = uuid.UUID(str(value))
        out.append(value)
    return tuple(out)


async def _copy_and_read(dsn: str, schema: Schema, table: str, ids: IdRange, seed: int) -> None:
    payload = encode_pg_binary(schema, generate_columns(schema, ids, seed))
    conn = await asyncpg.connect(dsn)
    try:
        schema_name, _, name = table.rpartition(".")
        if schema_name:
            await conn.execute(f'CREATE SCHEMA "{schema_name}"')
        await conn.execute(schema.pg_create_table(table, unlogged=True))
        await conn.copy_to_table(
            name,
            schema_name=schema_name or None,
            source=io.BytesIO(payload),
            format="binary",
            columns=list(schema.names),
        )
        cols = ", ".join(f'"{n}"' for n in schema.names)
        stored = await conn.fetch(f"SELECT {cols} FROM {table} ORDER BY id")
    finally:
        await conn.close()
    assert [_normalise(schema, r) for r in stored] == rows(schema, ids, seed)


async def test_default_schema_copies_exactly(pg_dsn: str) -> None:
    """The default schema (with a payload column) COPYs in and reads back as rows()."""
    await _copy_and_read(pg_dsn, default_schema(100), "bench", IdRange(1, 3000), 42)


async def test_every_type_and_nulls_copy_exactly(pg_dsn: str) -> None:
    """Every column type, with NULLs, into a schema-qualified table reads back as rows()."""
    await _copy_and_read(pg_dsn, FULL, "etl.every_type", IdRange(10**12, 2000), 7)


async def test_not_null_id_and_nullable_columns(pg_dsn: str) -> None:
    """The created table has id NOT NULL and the other columns nullable, with no index."""
    schema = Schema((column("id", "bigint", "sequence"), Column("v", "int", "int")))
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(schema.pg_create_table("t", unlogged=False))
        nullable = await conn.fetch(
            "SELECT column_name, is_nullable FROM information_schema.columns "
            "WHERE table_name = 't' ORDER BY ordinal_position"
        )
        indexes = await conn.fetchval("SELECT count(*) FROM pg_indexes WHERE tablename = 't'")
    finally:
        await conn.close()
    assert [tuple(r.values()) for r in nullable] == [("id", "NO"), ("v", "YES")]
    assert indexes == 0


async def test_char_filler_is_stored_padded_by_the_server(pg_dsn: str) -> None:
    """A char(84) constant sent without its blanks is stored as 84 blanks, as pgbench's filler."""
    schema = Schema(
        (column("id", "bigint", "sequence"), column("filler", "char", "constant", width=84))
    )
    payload = encode_pg_binary(schema, generate_columns(schema, IdRange(1, 500), 1))
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(schema.pg_create_table("acc", unlogged=True))
        await conn.copy_to_table("acc", source=io.BytesIO(payload), format="binary")
        stored = await conn.fetch(
            "SELECT octet_length(filler) AS n, filler::text = '' AS blank, "
            "format_type(atttypid, atttypmod) AS typ FROM acc, pg_attribute "
            "WHERE attrelid = 'acc'::regclass AND attname = 'filler' GROUP BY 1, 2, 3"
        )
    finally:
        await conn.close()
    assert [tuple(r.values()) for r in stored] == [(84, True, "character(84)")]
