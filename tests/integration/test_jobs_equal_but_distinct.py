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
    """Source rows whose target value is not the same as stored (its output text, byte for byte:
    ``format`` keeps a ``bpchar``'s trailing blanks, which ``::text`` drops)."""
    current = " AND t.is_current" if kind == 2 else ""
    exact = "format('%s', {}." + column + ') COLLATE "C"'
    same = f"{exact.format('s')} IS NOT DISTINCT FROM {exact.format('t')}"
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


async def _each_way(
    conn: asyncpg.Connection, dsn: str, table: str, kind: int, column: str, values: tuple[str, str]
) -> None:
    """Load ``table`` (holding ``before``), change it to ``after`` and back, then run unchanged."""
    name = table.removeprefix("s_")
    before, after = values
    steps = ((None, 1), (after, 1), (before, 1), (None, 0))
    for day, (value, changed) in enumerate(steps):
        if value is not None:
            await conn.execute(f"UPDATE {table} SET {column} = {value}")
        report = await run_job(
            spec_of(_job(dsn, table, name, kind)), options=JobOptions(as_of=at(day))
        )
        assert report.status == "SUCCEEDED", report.error
        wrote = report.inserted if day == 0 else report.updated + report.inserted
        assert (day, wrote) == (day, changed)
        assert (day, await _differences(dsn, table, name, kind, column)) == (day, [])


CI = "cfd_ci"
"""A nondeterministic (case-insensitive) ICU collation the tests create."""

# (column, source type, an existing target's type or None, value before, an equal-by-= after)
STORED = [
    ("ci", f'text COLLATE "{CI}"', f'text COLLATE "{CI}"', "'abc'", "'ABC'"),
    ("civ", "character varying(9)", f'character varying(9) COLLATE "{CI}"', "'abc'", "'aBc'"),
    ("cia", f'text[] COLLATE "{CI}"', f'text[] COLLATE "{CI}"', "'{abc}'", "'{ABC}'"),
    ("bp", "bpchar", None, "'a'", "'a  '"),
    ("iv", "interval", None, "'1 day'", "'24 hours'"),  # by text already before
]
CASES = [(c, t, None, b, a) for c, t, b, a in PAIRS] + STORED


@pytest.mark.parametrize("column", [p[0] for p in CASES])
@pytest.mark.parametrize("kind", [1, 2])
async def test_a_change_between_equal_values_is_applied(
    pg_dsn: str, kind: int, column: str
) -> None:
    """-0/0, 1.0/1.00, jsonb 1/1.0, ci 'abc'/'ABC', bpchar 'a'/'a  ': a change; unchanged: none."""
    table = f"s_eq_{uuid.uuid4().hex[:8]}"
    stype, ttype, before, after = next((s, t, b, a) for c, s, t, b, a in CASES if c == column)
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(f"CREATE COLLATION IF NOT EXISTS {CI} (provider = icu, "
                           "locale = 'und-u-ks-level2', deterministic = false)")  # fmt: skip
        await conn.execute(f"CREATE TABLE {table} (id integer PRIMARY KEY, {column} {stype})")
        await conn.execute(f"INSERT INTO {table} VALUES (1, {before})")
        if ttype is not None:  # a target the job finds: its column's collation is the user's
            scd = (", valid_from timestamptz NOT NULL, valid_to timestamptz, "
                   "is_current boolean NOT NULL DEFAULT true") if kind == 2 else ""  # fmt: skip
            await conn.execute(f"CREATE SCHEMA dw; CREATE TABLE dw.{table.removeprefix('s_')} "
                               f"(id integer NOT NULL, {column} {ttype}{scd})")  # fmt: skip
        await _each_way(conn, pg_dsn, table, kind, column, (before, after))
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.close()
