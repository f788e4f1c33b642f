"""Chunk keys of every orderable type: interval, inet, cidr and array keys plan, store and
resume their chunks; keys whose values cannot be chunk bounds are refused in one line."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from async_etl.jobs.api import JobOptions
from async_etl.jobs.runner import run_job
from tests.integration.jobs_helpers import at, fetchval, run_cli, spec_of, write

VALUES = {
    "interval": "i * interval '1 hour 7 seconds'",
    "inet": "('10.0.' || (i / 256) || '.' || (i % 256) || '/24')::inet",
    "cidr": "('10.' || i || '.0.0/16')::cidr",
    "integer[]": "ARRAY[i % 7, i]",
}


def _job(dsn: str, key_type: str) -> str:
    return f"""
name = "keys"
[source]
url = "{dsn}"
table = "src"
key = ["k"]
[target]
url = "{dsn}"
table = "dim"
[scd]
type = 2
deletes = "expire"
[parallel]
enabled = true
max_workers = 3
chunk_size = 40
min_rows_for_parallel = 0
"""


async def _source(dsn: str, key_type: str, expr: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"CREATE TABLE src (k {key_type} PRIMARY KEY, v int)")
        await conn.execute(f"INSERT INTO src SELECT {expr}, i FROM generate_series(1, 200) i")
        await conn.execute("ANALYZE src")
    finally:
        await conn.close()


@pytest.mark.parametrize("key_type", list(VALUES))
async def test_orderable_key_types_chunk_and_rerun_writes_nothing(
    pg_dsn: str, key_type: str
) -> None:
    """Each key type: every row read once over several chunks; an unchanged re-run writes none."""
    await _source(pg_dsn, key_type, VALUES[key_type])
    spec = spec_of(_job(pg_dsn, key_type))
    first = await run_job(spec, options=JobOptions(as_of=at(0)))
    assert first.status == "SUCCEEDED", first.error
    assert first.chunks_total > 1 and first.rows_read == first.inserted == 200
    await fetchval(pg_dsn, "UPDATE src SET v = -v WHERE v % 10 = 0")
    second = await run_job(spec, options=JobOptions(as_of=at(1)))
    assert second.status == "SUCCEEDED", second.error
    assert (second.rows_read, second.inserted, second.expired) == (200, 20, 20)
    third = await run_job(spec, options=JobOptions(as_of=at(2)))
    assert (third.inserted, third.updated, third.expired) == (0, 0, 0)


@pytest.mark.parametrize(
    ("key_type", "expr"),
    [("int4range", "int4range(i, i + 1)"), ("bit(8)", "i::bit(8)")],
)
async def test_keys_without_storable_bounds_are_one_line(
    pg_dsn: str, tmp_path: Path, key_type: str, expr: str
) -> None:
    """A range or bit-string chunk key: one line naming the column, exit 2, nothing recorded."""
    await _source(pg_dsn, key_type, expr)
    code, out, err = await run_cli("run", str(write(tmp_path, "j.toml", _job(pg_dsn, key_type))))
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "[source] key: column k has type" in lines[0], err
    assert "Traceback" not in err
    assert await fetchval(pg_dsn, "SELECT to_regclass('dim') IS NULL")
