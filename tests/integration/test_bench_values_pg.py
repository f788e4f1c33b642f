"""The load generator's binary COPY with edge values, into a real PostgreSQL: exactly rows()."""

from __future__ import annotations

import io
import uuid

import asyncpg
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from async_etl.core.records import encode_crate_json, encode_pg_binary, generate_columns, rows
from async_etl.core.schema import Column, Schema, column
from async_etl.typing import IdRange

EDGES: tuple[Column, ...] = (
    column("i4", "int", "int", min=-(2**31), max=2**31 - 1),
    column("i4lo", "int", "choice", values=[-(2**31), 2**31 - 1, 0]),
    column("i8", "bigint", "int", min=-(2**63), max=2**63 - 1),
    column("i8lo", "bigint", "choice", values=[-(2**63), 2**63 - 1]),
    column("huge", "double", "uniform", min=-8e307, max=8e307, decimals=0),
    column("tiny", "double", "choice", values=[5e-324, -0.0, 2.2250738585072014e-308]),
    column("uni", "text", "choice", values=["", "😀", "\U0010ffff", "é\u0301", "'\"\\\n"]),
    column("long", "text", "text", min_len=0, max_len=70_000),
    column("empty", "text", "text", min_len=0, max_len=0),
    column("ts", "timestamptz", "timestamp", days=739_251),
    column("j", "json", "json"),
    column("u", "uuid", "uuid"),
)


@st.composite
def edge_schemas(draw: st.DrawFn) -> Schema:
    """The id plus a random subset of the edge columns, some nullable."""
    picked = draw(st.lists(st.sampled_from(EDGES), unique=True, min_size=1))
    cols = [column("id", "bigint", "sequence")]
    for col in picked:
        p = draw(st.sampled_from([0.0, 0.5]))
        cols.append(
            Column(col.name, col.type, col.gen, (*col.params, ("nullable", p)) if p else col.params)
        )
    return Schema(tuple(cols))


def _py(col: Column, value: object) -> object:
    if value is not None and col.type == "json":
        return orjson.loads(str(value))
    if value is not None and col.type == "uuid":
        return uuid.UUID(str(value))
    return value


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(schema=edge_schemas(), seed=st.integers(-(2**63), 2**64), count=st.integers(1, 40))
async def test_edge_values_copy_exactly(pg_dsn: str, schema: Schema, seed: int, count: int) -> None:
    """Int extremes, subnormal/huge doubles, astral/empty/70 kB text, year-1 timestamps: exact."""
    ids = IdRange(2**62, count)
    cols = generate_columns(schema, ids, seed)
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("DROP TABLE IF EXISTS edge")
        await conn.execute(schema.pg_create_table("edge", unlogged=True))
        await conn.copy_to_table("edge", source=io.BytesIO(encode_pg_binary(schema, cols)),
                                 format="binary", columns=list(schema.names))  # fmt: skip
        names = ", ".join(f'"{n}"' for n in schema.names)
        stored = await conn.fetch(f"SELECT {names} FROM edge ORDER BY id")
    finally:
        await conn.close()
    got = [
        tuple(_py(c, v) for c, v in zip(schema.columns, r.values(), strict=True)) for r in stored
    ]
    assert got == rows(schema, ids, seed)
    body = orjson.loads(encode_crate_json("INSERT INTO edge VALUES (?)", schema, cols))
    assert [item[0] for item in body["bulk_args"]] == list(range(ids.start, ids.stop))
