"""Chunk bounds of float keys are inlined exactly into the COPY of a PostgreSQL source.

A session whose ``extra_float_digits`` is below 1 (set here on the database, as an operator
would) prints a float in 15 (float8) or 6 (float4) digits: a bound read back from that text
is another number, and the rows between the two move to the neighbouring chunk.  Every key
sits next to its float neighbours (one unit in the last place either side), so a bound that
is off in either direction moves a row.
"""

from __future__ import annotations

import io
import math
import struct
from decimal import Decimal, localcontext
from typing import Any

import asyncpg
import pytest

from async_etl.core import scd_sql_pg as pg
from async_etl.core.chunks import ChunkPlan, plan_chunks, row_in_chunk
from async_etl.sources.postgres import PgSource


def _float4(x: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


def _float4_next(x: float, step: int) -> float:
    bits = struct.unpack("<i", struct.pack("<f", x))[0]
    return float(struct.unpack("<f", struct.pack("<i", bits + step))[0])


def _keys(kind: str) -> list[Any]:
    """Keys g/7 for g in 1..400, each with its neighbours just below and just above."""
    out: list[Any] = []
    for g in range(1, 401):
        if kind == "float8":
            x = g / 7
            out += [math.nextafter(x, -math.inf), x, math.nextafter(x, math.inf)]
        elif kind == "real":
            x = _float4(g / 7)
            out += [_float4_next(x, -1), x, _float4_next(x, 1)]
        else:
            with localcontext(prec=60):
                x = Decimal(g) / Decimal(7)
                out += [x - Decimal("1e-50"), x, x + Decimal("1e-50")]
    return out


async def _copy(conn: Any, source: PgSource, plan: ChunkPlan) -> list[list[Any]]:
    """Each chunk's keys as its binary COPY out of ``source`` gives them."""
    found: list[list[Any]] = []
    for chunk in plan.chunks:
        data: list[bytes] = []

        async def out(part: bytes, data: list[bytes] = data) -> None:
            data.append(part)

        await source.copy_out(conn, chunk, out)
        await conn.execute("TRUNCATE src.fk_copy")
        await conn.copy_to_table(
            "fk_copy", schema_name="src", source=io.BytesIO(b"".join(data)), format="binary"
        )
        found.append([r[0] for r in await conn.fetch("SELECT k FROM src.fk_copy ORDER BY k")])
    return found


@pytest.mark.parametrize("kind", ["float8", "real", "numeric"])
async def test_float_bounds_copy_each_row_in_its_own_chunk_whatever_extra_float_digits(
    pg_dsn: str, kind: str
):
    """With extra_float_digits = 0 on the database, each chunk's COPY holds exactly its rows."""
    admin = await asyncpg.connect(pg_dsn)
    try:
        await admin.execute(
            "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET extra_float_digits = 0', "
            "current_database()); END $$"
        )
    finally:
        await admin.close()
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert await conn.fetchval("SHOW extra_float_digits") == "0"
        keys = _keys(kind)
        await conn.execute(
            f"CREATE SCHEMA src; CREATE TABLE src.fk (k {kind}, v int); "
            f"CREATE TABLE src.fk_copy (k {kind}, v int)"
        )
        await conn.copy_records_to_table(
            "fk", schema_name="src", records=[(k, i) for i, k in enumerate(keys)]
        )
        cuts = await conn.fetch(pg.boundaries_sql(None, "src.fk", ("k",)).text, 7)
        plan = plan_chunks([tuple(r) for r in cuts])
        assert len(plan) == 7
        if kind != "numeric":  # the session's own text of the cuts is not their value
            lossy = f"SELECT count(*) FROM unnest($1::{kind}[]) c WHERE c::text::{kind} <> c"
            assert await conn.fetchval(lossy, [r[0] for r in cuts]) > 0
        want = [sorted(k for k in keys if row_in_chunk((k,), c)) for c in plan.chunks]
        query = PgSource(pg_dsn, ("k",), "SELECT k, v FROM src.fk", None)
        assert await _copy(conn, query, plan) == want
        assert sum(len(w) for w in want) == len(keys)
        async with conn.transaction():  # inside a transaction: its setting is left as it was
            assert await _copy(conn, PgSource(pg_dsn, ("k",), None, "src.fk"), plan) == want
            assert await conn.fetchval("SHOW extra_float_digits") == "0"
        assert await conn.fetchval("SHOW extra_float_digits") == "0"
    finally:
        await conn.close()
