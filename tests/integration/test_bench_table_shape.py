"""``bench --table`` into an existing table of the wrong shape: one line naming it, exit 2."""

from __future__ import annotations

import subprocess
import sys

import anyio
import asyncpg
import pytest

from async_etl.drivers.cratedb import CrateDBClient
from async_etl.testing.crate import CrateStandIn

COLUMNS = (
    "id bigint NOT NULL, uid uuid, name text, city text, amount double precision, "
    "quantity integer, status text, created_at timestamptz, attrs jsonb, active boolean"
)


async def bench(sink: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    """Run ``async-etl bench`` into ``sink``'s table ``shape`` (1,000 rows), off the loop."""
    cmd = [sys.executable, "-m", "async_etl", "bench", "--sink", sink, "--table", "shape"]
    cmd += ["--records", "1000", "--generators", "0", "--log-format", "json", *args]
    with anyio.fail_after(120):
        return await anyio.run_process(cmd, check=False)


def one_line(proc: subprocess.CompletedProcess[bytes]) -> str:
    """The single ``async-etl: error:`` line of a refused run."""
    lines = [ln for ln in proc.stderr.decode().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("async-etl: error: "), proc.stderr
    return lines[0]


@pytest.mark.parametrize("mode", ["async", "threads"])
@pytest.mark.parametrize(
    ("table", "args", "needle"),
    [
        (
            COLUMNS.replace("name text", "name varchar(3)"),
            [],
            "column name is character varying(3)",
        ),
        (COLUMNS.replace("city text", "city integer"), [], "column city is integer"),
        (COLUMNS + ", extra text NOT NULL", [], "column extra (text) is NOT NULL"),
        (COLUMNS, ["--payload-bytes", "10"], "no column payload (text)"),
    ],
)
async def test_pg_table_of_the_wrong_shape_is_refused_before_the_run(
    pg_dsn: str, mode: str, table: str, args: list[str], needle: str
) -> None:
    """varchar(3), an int city, an extra NOT NULL column, no payload: exit 2, one line."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(f"CREATE TABLE shape ({table})")
        proc = await bench(pg_dsn, "--mode", mode, *args)
        rows = await conn.fetchval("SELECT count(*) FROM shape")
    finally:
        await conn.close()
    assert proc.returncode == 2
    line = one_line(proc)
    assert "table shape does not fit the records" in line and needle in line, line
    assert rows == 0


async def test_crate_table_of_the_wrong_shape_is_refused_before_the_run() -> None:
    """A CrateDB table with an integer city: exit 2, one line naming the column."""
    async with CrateStandIn() as crate:
        async with CrateDBClient(crate.url) as client:
            await client.execute("CREATE TABLE shape (id BIGINT PRIMARY KEY, city INTEGER)")
        proc = await bench(crate.url)
    assert proc.returncode == 2
    line = one_line(proc)
    assert "column city is integer" in line and "no column name (text)" in line, line
