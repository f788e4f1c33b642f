"""Values that PostgreSQL's ``=`` calls equal but that store differently are a change."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from async_etl.jobs.api import JobOptions
from async_etl.jobs.runner import run_job
from tests.integration.jobs_helpers import at, spec_of

# (column, type, value before, an equal-by-= value after)
PAIRS = [
    ("f8", "double precision", "'-0'", "'0'"),
    ("f4", "real", "'0'", "'-0'"),
    ("fa", "double precision[]", "'{-0,NaN}'", "'{0,NaN}'"),
    ("n", "numeric", "1.0", "1.00"),
    ("j", "jsonb", """'{"a": 1}'""", """'{"a": 1.0}'"""),
]


def _job(dsn: str, table: str, name: str, kind: int) -> str:
    return f"""
name = "{name}"
[source]
url = "{dsn}"
table = "{table}"
key = ["id"]
[target]
url = "{dsn}"
table = "dw.{name}"
[scd]
type = {kind}
[state]
url = "{dsn}"
"""


async def _differences(
    dsn: str, table: str, name: str, kind: int, column: str
) -> list[asyncpg.Record]:
    current = " AND t.is_current" if kind == 2 else ""
    same = f"s.{column}::text IS NOT DISTINCT FROM t.{column}::text"
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET extra_float_digits = 3")
        return list(
            await conn.fetch(
                f"SELECT s.id FROM {table} s JOIN dw.{name} t ON s.id = t.id{current} "
                f"WHERE NOT ({same})"
            )
        )
    finally:
        await conn.close()


@pytest.mark.parametrize("column", [p[0] for p in PAIRS])
@pytest.mark.parametrize("kind", [1, 2])
async def test_a_change_between_equal_values_is_applied(
    pg_dsn: str, kind: int, column: str
) -> None:
    """-0 vs 0, 1.0 vs 1.00, {"a": 1} vs {"a": 1.0}: each way a change; unchanged: nothing."""
    name = f"eq_{uuid.uuid4().hex[:8]}"
    table = f"s_{name}"
    ctype, before, after = next((t, b, a) for c, t, b, a in PAIRS if c == column)
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(f"CREATE TABLE {table} (id integer PRIMARY KEY, {column} {ctype})")
        await conn.execute(f"INSERT INTO {table} VALUES (1, {before})")
        steps = ((None, 1), (after, 1), (before, 1), (None, 0))
        for day, (value, changed) in enumerate(steps):
            if value is not None:
                await conn.execute(f"UPDATE {table} SET {column} = {value}")
            report = await run_job(
                spec_of(_job(pg_dsn, table, name, kind)), options=JobOptions(as_of=at(day))
            )
            assert report.status == "SUCCEEDED", report.error
            wrote = report.inserted if day == 0 else report.updated + report.inserted
            assert (day, wrote) == (day, changed)
            assert await _differences(pg_dsn, table, name, kind, column) == []
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.close()
