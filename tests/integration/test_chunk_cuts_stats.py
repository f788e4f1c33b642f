"""Chunk cuts from the key's statistics (no scan) when fresh, a sample when not; rows once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
import pytest_asyncio

from async_etl.core import scd_sql_pg as pg
from async_etl.core.chunks import Cuts, plan_chunks
from async_etl.core.scd_sql_common import chunk_values
from async_etl.sources.postgres import PgSource
from tests.integration.jobs_helpers import fetchval, run_cli, write

ROWS = 120_000  # over twice the sample (``sample_percent``): a table that would be sampled
STATS = "the key's statistics (pg_stats histogram"

TYPES = {  # key type -> its value from g (unique), the chunk collation
    "integer": ("g", None),
    "bigint": ("g::bigint * 1000000007", None),
    "text": ("md5(g::text)", "C"),
    "uuid": ("md5(g::text)::uuid", None),
    "timestamp": ("timestamp '2020-01-01' + g * interval '1.234567 second'", None),
    "timestamptz": ("timestamptz '2020-01-01 00:00+00' + g * interval '1.234567 second'", None),
    "numeric": ("g / 7.0", None),
}


@pytest_asyncio.fixture
async def conn(pg_dsn: str) -> AsyncIterator[Any]:
    """A connection to ``pg_dsn``, closed after the test."""
    c = await asyncpg.connect(pg_dsn)
    try:
        yield c
    finally:
        await c.close()


async def make_table(conn: Any, key_type: str, value: str, rows: int = ROWS) -> None:
    """``src.t (k <key_type>, v int)`` of ``rows`` rows, ``v`` 1..rows; autovacuum off."""
    await conn.execute(
        f"CREATE SCHEMA IF NOT EXISTS src; CREATE TABLE src.t (k {key_type}, v int) "
        f"WITH (autovacuum_enabled = off); "
        f"INSERT INTO src.t SELECT {value}, g FROM generate_series(1, {rows}) g"
    )


async def analyze(conn: Any) -> None:
    """``ANALYZE src.t`` once this session's counts of its writes are in the shared statistics.

    (Counts flushed after the ANALYZE would read as rows changed since it: stale.)
    """
    await conn.execute("SELECT pg_stat_force_next_flush()")
    await conn.execute("ANALYZE src.t")


async def cut(dsn: str, conn: Any, n: int, collate: str | None, **kw: Any) -> Cuts:
    """The source's cuts of ``n`` chunks of ``src.t`` over ``k`` (its estimate as a run's)."""
    source = PgSource(dsn, ("k",), kw.get("query"), None if "query" in kw else "src.t")
    estimate = (await source.estimate(conn)).rows
    return await source.boundaries(conn, n, (collate,), estimate)


async def read_once(conn: Any, cuts: Cuts, collate: str | None) -> list[int]:
    """Rows per chunk of the plan of ``cuts``; asserts every non-NULL-key row read once."""
    plan = plan_chunks(cuts.values, (collate,))
    assert plan.chunks[0].lower is None and plan.chunks[-1].upper is None
    seen: list[int] = []
    sizes = []
    for chunk in plan.chunks:
        st = pg.extract_sql(None, "src.t", ("k",), chunk)
        got = await conn.fetchval(f"SELECT array_agg(v) FROM ({st.text}) AS c",
                                  *st.args(chunk_values(chunk)))  # fmt: skip
        seen += got or []
        sizes.append(len(got or []))
    expect = await conn.fetchval("SELECT array_agg(v ORDER BY v) FROM src.t WHERE k IS NOT NULL")
    assert sorted(seen) == expect
    return sizes


@pytest.mark.parametrize("key_type", list(TYPES))
async def test_fresh_statistics_cut_without_a_scan_and_every_row_is_read_once(
    pg_dsn: str, conn: Any, key_type: str
) -> None:
    """An analyzed table of each key type: cuts from its histogram, balanced, rows once."""
    value, collate = TYPES[key_type]
    await make_table(conn, key_type, value)
    await analyze(conn)
    cuts = await cut(pg_dsn, conn, 4, collate)
    assert cuts.source.startswith(STATS), cuts.source
    sizes = await read_once(conn, cuts, collate)
    assert len(sizes) == 4 and all(0.8 * ROWS / 4 < s < 1.2 * ROWS / 4 for s in sizes), sizes


async def test_stale_statistics_are_not_used_and_the_table_is_sampled(
    pg_dsn: str, conn: Any
) -> None:
    """Statistics from before the table doubled: sampled instead, said so, rows once."""
    await make_table(conn, "bigint", "g")
    await conn.execute("ANALYZE src.t; INSERT INTO src.t SELECT g, g "
                       f"FROM generate_series({ROWS + 1}, {2 * ROWS}) g")  # fmt: skip
    cuts = await cut(pg_dsn, conn, 4, None)
    assert cuts.source.startswith("a ") and "% block sample; not the statistics: stale" in (
        cuts.source
    ), cuts.source
    sizes = await read_once(conn, cuts, None)
    assert len(sizes) >= 3 and max(sizes) < ROWS  # balanced by the sample, not the old stats
    query = await cut(pg_dsn, conn, 4, None, query="SELECT k, v FROM src.t")
    assert query.source == "every row (ntile)"


async def test_misleading_statistics_still_read_every_row_once(pg_dsn: str, conn: Any) -> None:
    """Stats that look fresh but miss new keys above, below, and NULL keys: rows read once."""
    await make_table(conn, "bigint", "g")
    await analyze(conn)
    await conn.execute(
        "INSERT INTO src.t SELECT g, g FROM generate_series("
        f"{ROWS + 1}, {ROWS + 5000}) g; INSERT INTO src.t SELECT -g, {2 * ROWS} + g "
        f"FROM generate_series(1, 2000) g; INSERT INTO src.t SELECT NULL, {3 * ROWS} + g "
        "FROM generate_series(1, 500) g"
    )
    cuts = await cut(pg_dsn, conn, 4, None)
    assert cuts.source.startswith(STATS), cuts.source  # within 10 %: trusted
    sizes = await read_once(conn, cuts, None)
    assert sum(sizes) == ROWS + 7000  # the NULL keys are in no chunk (counted apart)


async def test_a_table_without_statistics_is_sampled(pg_dsn: str, conn: Any) -> None:
    """Never analyzed: no histogram, so cut as before (not from statistics), rows once."""
    await make_table(conn, "integer", "g")
    cuts = await cut(pg_dsn, conn, 4, None)
    assert not cuts.source.startswith(STATS) and "no histogram" in cuts.source, cuts.source
    await read_once(conn, cuts, None)


async def test_a_histogram_in_another_collation_is_not_used(pg_dsn: str, conn: Any) -> None:
    """Text histogrammed in an ICU order, chunked in code-point order: sampled, rows once."""
    value = "CASE WHEN g % 2 = 0 THEN 'M' ELSE 'm' END || md5(g::text)"
    await make_table(conn, 'text COLLATE "en-x-icu"', value)
    await analyze(conn)
    cuts = await cut(pg_dsn, conn, 4, "C")
    assert "ordered in another collation" in cuts.source, cuts.source
    await read_once(conn, cuts, "C")


async def test_check_says_the_cuts_came_from_statistics_and_the_run_copies_all(
    pg_dsn: str, conn: Any, tmp_path: Path
) -> None:
    """``check`` names the statistics as the cuts' source; the SCD2 load then copies all."""
    await make_table(conn, "bigint", "g")
    await conn.execute("ALTER TABLE src.t ADD PRIMARY KEY (k); CREATE SCHEMA dw")
    await analyze(conn)
    path = write(tmp_path, "s.toml", f'name = "s"\n[source]\nurl = "{pg_dsn}"\n'
                 f'table = "src.t"\nkey = ["k"]\n[target]\nurl = "{pg_dsn}"\ntable = "dw.s"\n'
                 '[scd]\ntype = 2\ndeletes = "expire"\n[parallel]\nmax_workers = 2\n')  # fmt: skip
    code, out, err = await run_cli("check", str(path))
    assert code == 0, err
    (line,) = [x for x in out.splitlines() if x.startswith("  cuts from ")]
    assert line.startswith(f"  cuts from {STATS}"), line
    code, _, err = await run_cli("run", str(path))
    assert code == 0, err
    assert await fetchval(pg_dsn, "SELECT count(DISTINCT v) FROM dw.s") == ROWS
    plan = await fetchval(pg_dsn, "SELECT plan FROM async_etl_runs WHERE job = 's'")
    assert orjson.loads(plan)["cuts_from"].startswith(STATS)
