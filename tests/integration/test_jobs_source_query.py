"""Any single SELECT a user writes runs as a source query, end to end on real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from async_etl.core.chunks import WHOLE
from async_etl.jobs.api import JobOptions
from async_etl.jobs.runner import run_job
from tests.integration.jobs_helpers import at, fetchval, run_cli, spec_of, table_rows, write

ROWS = [(1, "a"), (2, "b  b"), (3, "c\nc"), (None, "no key")]


def _job(dsn: str, query: str, *, kind: int = 1, workers: int = 2) -> str:
    """A job file reading ``query`` into ``dw.out`` (key ``id``), chunked finely."""
    return f"""
name = "srcq"
[source]
url = "{dsn}"
query = '''{query}'''
key = ["id"]
[target]
url = "{dsn}"
table = "dw.out"
[scd]
type = {kind}
[parallel]
max_workers = {workers}
chunk_size = 1
min_rows_for_parallel = 0
"""


async def _source(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TABLE src (id int, v text); CREATE SCHEMA dw")
        await conn.executemany("INSERT INTO src VALUES ($1, $2)", ROWS)
        await conn.execute("ANALYZE src")
    finally:
        await conn.close()


QUERIES = {
    "trailing comment": "SELECT id, v FROM src WHERE id IS NOT NULL -- keyed rows only",
    "semicolon and comments after it": "SELECT id, v FROM src WHERE id IS NOT NULL;\n"
    "-- done\n/* ; */",
    "cte, order by, limit": "WITH k AS (SELECT id, v FROM src WHERE id IS NOT NULL)\n"
    "SELECT id, v FROM k ORDER BY id DESC LIMIT 3;",
    "comments and quotes everywhere": "/* head; */ SELECT id, -- the key\n"
    "v /* value /* nested */ */ FROM src WHERE v <> ';--' AND v <> $$--;$$ AND id IS NOT NULL",
}


@pytest.mark.parametrize("case", list(QUERIES))
async def test_single_select_loads_every_keyed_row(pg_dsn: str, case: str) -> None:
    """Comments, ``;``, CTE, ORDER BY/LIMIT: the 3 keyed rows load, values byte for byte."""
    await _source(pg_dsn)
    result = await run_job(spec_of(_job(pg_dsn, QUERIES[case])), options=JobOptions(as_of=at(1)))
    assert result.status == "SUCCEEDED", result.error
    assert (result.rows_read, result.inserted, result.rejected) == (3, 3, 0)
    got = sorted((r["id"], r["v"]) for r in await table_rows(pg_dsn, "dw.out"))
    assert got == [r for r in ROWS if r[0] is not None]


async def test_trailing_comment_query_type2_rerun_writes_nothing(pg_dsn: str) -> None:
    """Type 2 with a commented query: the first run loads 3 rows, the same re-run changes none."""
    await _source(pg_dsn)
    spec = spec_of(_job(pg_dsn, QUERIES["trailing comment"], kind=2))
    first = await run_job(spec, options=JobOptions(as_of=at(1)))
    again = await run_job(spec, options=JobOptions(as_of=at(2)))
    assert (first.status, first.inserted) == ("SUCCEEDED", 3), first.error
    assert (again.status, again.inserted, again.updated, again.expired) == ("SUCCEEDED", 0, 0, 0)


async def test_two_statements_exit_2_in_one_line(pg_dsn: str, tmp_path: Path) -> None:
    """``SELECT ...; DELETE ...``: exit 2, one line naming the key, nothing run or written."""
    await _source(pg_dsn)
    path = write(tmp_path, "two.toml", _job(pg_dsn, "SELECT id, v FROM src; DELETE FROM src"))
    code, out, err = await run_cli("run", str(path))
    lines = err.strip().splitlines()
    assert code == 2, (out, err)
    assert len(lines) == 1 and "[source] query: holds 2 statements" in lines[0], err
    assert await fetchval(pg_dsn, "SELECT count(*) FROM src") == len(ROWS)
    assert await fetchval(pg_dsn, "SELECT to_regclass('async_etl_runs')") is None


async def _big(dsn: str) -> None:
    """``big`` (ids 1..200), a view picking 10 of its rows at random, and the ``dw`` schema."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TABLE big (id int PRIMARY KEY, v text); CREATE SCHEMA dw")
        await conn.execute("INSERT INTO big SELECT i, 'v' || i FROM generate_series(1, 200) i")
        await conn.execute("CREATE VIEW pick AS SELECT * FROM big ORDER BY random() LIMIT 10")
        await conn.execute("ANALYZE big")
    finally:
        await conn.close()


@pytest.mark.parametrize(
    "query",
    [
        "SELECT id, v FROM big ORDER BY random() LIMIT 10",
        "SELECT id, v FROM big ORDER BY random() FETCH FIRST 10 ROWS ONLY",
        "SELECT id, v FROM big ORDER BY random() OFFSET 190 -- the last ten",
        # inside a subquery, a CTE, a view: cut into key ranges, each chunk ran the inner pick
        # again ('chunks 10/10, read 7', or 8, or 13)
        "SELECT id, v FROM (SELECT * FROM big ORDER BY random() LIMIT 10) s",
        "WITH k AS (SELECT * FROM big ORDER BY random() OFFSET 190) SELECT id, v FROM k",
        "SELECT id, v FROM pick",
    ],
)
async def test_a_limited_query_is_read_once_not_per_chunk(pg_dsn: str, query: str) -> None:
    """A LIMIT / FETCH / OFFSET, at the top or inside, picks its rows once: 10 rows, one chunk."""
    await _big(pg_dsn)
    result = await run_job(spec_of(_job(pg_dsn, query)), options=JobOptions(as_of=at(1)))
    assert result.status == "SUCCEEDED", result.error
    assert (result.chunks_total, result.rows_read, result.inserted) == (1, 10, 10)
    rows = await table_rows(pg_dsn, "dw.out")
    assert len({r["id"] for r in rows}) == len(rows) == 10


async def test_check_of_a_limited_query_says_every_row_and_refuses_it_incremental(
    pg_dsn: str, tmp_path: Path
) -> None:
    """A LIMIT job: check says every row is one chunk; made incremental it is one line, exit 2."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("CREATE TABLE big (id int PRIMARY KEY, v text, u int); CREATE SCHEMA dw")
        await conn.execute("INSERT INTO big SELECT i, 'v' || i, i FROM generate_series(1, 50) i")
    finally:
        await conn.close()
    text = _job(pg_dsn, "SELECT id, v, u FROM big ORDER BY id LIMIT 10")
    first = await run_job(spec_of(text), options=JobOptions(as_of=at(1)))
    assert first.status == "SUCCEEDED", first.error
    assert (first.rows_read, first.chunks_total) == (10, 1)
    code, out, err = await run_cli("check", str(write(tmp_path, "q.toml", text)))
    assert code == 0, err
    (line,) = [x for x in out.splitlines() if x.startswith("  rows per chunk")]
    assert line == ("  rows per chunk: every row (one chunk: the source query has a "
                    "top-level LIMIT / OFFSET / FETCH)")  # fmt: skip
    assert (first.chunk_size, first.chunk_size_why) == (None, WHOLE)  # --json-out: null
    # incremental: the window wraps the query, after its LIMIT; the cursor stalled at u = 10
    # and rows 11.. were never read (replayed before the refusal: every later run read 1 row)
    inc = text.replace('key = ["id"]', 'key = ["id"]\nincremental = "u"', 1)
    code, out, err = await run_cli("check", str(write(tmp_path, "inc.toml", inc)))
    assert code == 2 and out == "", (out, err)
    assert len(err.strip().splitlines()) == 1, err
    assert "[source] incremental: not with a source query that has a top-level LIMIT" in err


SAMPLED = "SELECT id, v FROM (SELECT * FROM big TABLESAMPLE BERNOULLI (50) REPEATABLE (7)) s"


async def test_a_sampled_query_loads_one_evaluation_and_check_says_why(
    pg_dsn: str, tmp_path: Path
) -> None:
    """A TABLESAMPLE subquery loads exactly its sample in one chunk; check names the sample."""
    await _big(pg_dsn)
    text = _job(pg_dsn, SAMPLED).replace("type = 1", 'type = 2\ndeletes = "expire"')
    code, out, err = await run_cli("check", str(write(tmp_path, "s.toml", text)))
    assert code == 0, err
    (line,) = [x for x in out.splitlines() if x.startswith("  rows per chunk")]
    assert line == ("  rows per chunk: every row (one chunk: the source's rows are picked "
                    "by a TABLESAMPLE on big inside it, which each key range would run "
                    "again)")  # fmt: skip
    result = await run_job(spec_of(text), options=JobOptions(as_of=at(1)))
    assert result.status == "SUCCEEDED", result.error
    conn = await asyncpg.connect(pg_dsn)
    try:
        sample = {r["id"] for r in await conn.fetch(SAMPLED)}
    finally:
        await conn.close()
    assert (result.chunks_total, result.rows_read, result.inserted) == (1, len(sample), len(sample))
    assert {r["id"] for r in await table_rows(pg_dsn, "dw.out")} == sample


async def test_a_table_source_that_is_a_limited_view_is_read_once(pg_dsn: str) -> None:
    """``table = "pick"``, a view with ORDER BY random() LIMIT 10: 10 distinct rows, one chunk."""
    await _big(pg_dsn)
    text = _job(pg_dsn, "-").replace("query = '''-'''", 'table = "pick"')
    result = await run_job(spec_of(text), options=JobOptions(as_of=at(1)))
    assert result.status == "SUCCEEDED", result.error
    assert (result.chunks_total, result.rows_read, result.inserted) == (1, 10, 10)
    rows = await table_rows(pg_dsn, "dw.out")
    assert len({r["id"] for r in rows}) == len(rows) == 10
