"""Edge values through the PostgreSQL mapper path (binary COPY): stored exactly, re-run no-op."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from async_etl.jobs.api import JobOptions
from async_etl.jobs.runner import run_job
from tests.integration.jobs_helpers import at, spec_of

# (column, type, SQL literals of edge values: extremes, special floats, precision limits, ...)
EDGES: list[tuple[str, str, list[str]]] = [
    ("b", "bigint", ["9223372036854775807", "-9223372036854775808", "0"]),
    ("i", "integer", ["2147483647", "-2147483648"]),
    ("d", "double precision", ["'NaN'", "'Infinity'", "'-Infinity'", "'-0'", "4.9e-324",
                               "1.7976931348623157e308", "0.1"]),
    ("r", "real", ["'NaN'", "'-Infinity'", "'-0'", "1e-45", "3.4028235e38", "0.1"]),
    ("n", "numeric", ["'NaN'", "'Infinity'", "'-Infinity'", "0.000000000000000000000000000001",
                      "1" + "0" * 130 + ".5", "-0.0", "19.99"]),
    ("t", "text", ["''", "' '", "'😀 \U0010ffff é'", "repeat('x', 100000)", "E'a\\nb\\t\\\\'"]),
    ("ts", "timestamp with time zone", ["'4713-01-01 00:00:00+00 BC'", "'infinity'",
                                        "'294276-12-31 23:59:59.999999+00'",
                                        "'2024-02-29 12:00:00.000001+05:30'"]),
    ("lt", "timestamp without time zone", ["'2000-01-01 00:00:00.000001'", "'-infinity'"]),
    ("dt", "date", ["'4713-01-01 BC'", "'5874897-12-31'", "'2024-02-29'", "'infinity'"]),
    ("by", "bytea", ["''::bytea", "'\\x00ff'::bytea", "decode(repeat('ab', 5000), 'hex')"]),
    ("j", "jsonb", ["'{}'", "'{\"a\": [1, 2.5e300, null, \"😀\"]}'", "'\"\"'"]),
    ("bo", "boolean", ["true", "false"]),
    ("ar", "double precision[]", ["ARRAY['NaN', '-0', 'Infinity']::float8[]", "'{}'"]),
]  # fmt: skip
ROW = st.tuples(*(st.one_of(st.none(), st.sampled_from(values)) for _, _, values in EDGES))


async def _load(dsn: str, rows: list[tuple[str | None, ...]]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DROP TABLE IF EXISTS s")
        cols = ", ".join(f"{n} {t}" for n, t, _ in EDGES)
        await conn.execute(f"CREATE TABLE s (id integer PRIMARY KEY, {cols})")
        for i, row in enumerate(rows, 1):
            values = ", ".join("NULL" if v is None else v for v in row)
            await conn.execute(f"INSERT INTO s VALUES ({i}, {values})")
        await conn.execute("ANALYZE s")
    finally:
        await conn.close()


def _job(dsn: str, name: str) -> str:
    return f"""
name = "{name}"
[source]
url = "{dsn}"
table = "s"
key = ["id"]
[target]
url = "{dsn}"
table = "dw.edge_{name}"
[scd]
type = 2
[parallel]
enabled = true
chunk_size = 3
min_rows_for_parallel = 0
[state]
url = "{dsn}"
"""


async def _differences(dsn: str, name: str) -> list[Any]:
    """Rows whose text form differs between source and target (or exist on one side only)."""
    conn = await asyncpg.connect(dsn)
    try:
        same = " AND ".join(f"s.{n}::text IS NOT DISTINCT FROM t.{n}::text" for n, _, _ in EDGES)
        return list(
            await conn.fetch(
                f"SELECT s.id, t.id FROM s FULL JOIN dw.edge_{name} t ON s.id = t.id "
                f"WHERE s.id IS NULL OR t.id IS NULL OR NOT ({same})"
            )
        )
    finally:
        await conn.close()


@settings(
    max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=st.lists(ROW, min_size=1, max_size=8))
async def test_pg_target_stores_every_edge_value_exactly(
    pg_dsn: str, values: list[tuple[str | None, ...]]
) -> None:
    """Every edge value of every type arrives byte-exact in text form; a re-run writes nothing."""
    await _load(pg_dsn, values)
    name = uuid.uuid4().hex[:8]
    first = await run_job(spec_of(_job(pg_dsn, name)), options=JobOptions(as_of=at(0)))
    assert first.status == "SUCCEEDED", first.error
    assert (first.inserted, first.rejected) == (len(values), 0)
    assert await _differences(pg_dsn, name) == []
    again = await run_job(spec_of(_job(pg_dsn, name)), options=JobOptions(as_of=at(1)))
    assert again.status == "SUCCEEDED", again.error
    assert (again.inserted, again.updated, again.expired) == (0, 0, 0)
