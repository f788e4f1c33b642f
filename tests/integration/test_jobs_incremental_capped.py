"""An incremental source whose rows are picked before the window applies is refused in preflight.

The cursor window wraps the source query, so a LIMIT / OFFSET / FETCH FIRST in a subquery, a
CTE or a view, or a TABLESAMPLE, picks the same first rows in every run: the cursor stops at
them and later rows are never read (``core.incremental``, "Rows capped before the window").
A per-row ``LATERAL (... LIMIT 1)`` look-up and an ``OFFSET 0`` fence cap nothing and run on.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.jobs_helpers import fetchval, run_cli, write
from tests.integration.test_jobs_incremental import current, execute, inc_toml, make_source, run

CAPPED = [  # the [source] line, what the refusal names
    ('query = "SELECT * FROM (SELECT * FROM src.ev ORDER BY id LIMIT 5) s"', "a LIMIT"),
    ('query = "WITH f AS (SELECT * FROM src.ev ORDER BY v LIMIT 5) SELECT * FROM f"', "a LIMIT"),
    (
        'query = "WITH f AS MATERIALIZED (SELECT * FROM src.ev ORDER BY v LIMIT 5) '
        'SELECT * FROM f"',
        "a LIMIT",
    ),
    (
        'query = "SELECT * FROM (SELECT * FROM src.ev ORDER BY v FETCH FIRST 5 ROWS ONLY) s"',
        "FETCH FIRST",
    ),
    ('query = "SELECT * FROM (SELECT * FROM src.ev ORDER BY v OFFSET 2) s"', "OFFSET"),
    ('query = "SELECT * FROM src.ev TABLESAMPLE SYSTEM (50)"', "a TABLESAMPLE on ev"),
    (
        'query = "SELECT e.* FROM (SELECT * FROM src.ev ORDER BY v LIMIT 5) e '
        'JOIN src.tag t USING (id)"',
        "a LIMIT",
    ),
    ('table = "src.first_five"', "a LIMIT"),
]

RUNS_ON = [
    'query = "SELECT e.*, t.label FROM src.ev e CROSS JOIN LATERAL (SELECT t.label FROM src.tag t '
    'WHERE t.id = e.id ORDER BY t.label LIMIT 1) t"',
    'query = "SELECT * FROM (SELECT * FROM src.ev OFFSET 0) s"',
    'query = "SELECT e.*, (SELECT t.label FROM src.tag t WHERE t.id = e.id LIMIT 1) AS label '
    'FROM src.ev e"',
]


async def make_tables(dsn: str) -> None:
    """``src.ev`` (ids 1..20, cursor v = id), ``src.tag`` (a label per id, 1..30), a view."""
    await make_source(dsn, 20)
    await execute(
        dsn,
        "CREATE TABLE src.tag (id integer, label text)",
        "INSERT INTO src.tag SELECT i, 'l' || i FROM generate_series(1, 30) i",
        "CREATE VIEW src.first_five AS SELECT * FROM src.ev ORDER BY v LIMIT 5",
    )


def job_text(name: str, dsn: str, line: str) -> str:
    """``inc_toml``'s job over ``src.ev`` with ``line`` as its source query or table."""
    return inc_toml(name, dsn).replace('query = "SELECT * FROM src.ev"', line, 1)


@pytest.mark.parametrize(("line", "named"), CAPPED)
async def test_a_source_capped_before_the_window_is_refused_in_one_line(
    pg_dsn: str, tmp_path: Path, line: str, named: str
) -> None:
    """A LIMIT / FETCH / OFFSET in a subquery, CTE, join side or view, or a TABLESAMPLE: exit 2."""
    await make_tables(pg_dsn)
    job = write(tmp_path, "capped.toml", job_text("capped", pg_dsn, line))
    code, out, err = await run_cli("run", str(job))
    assert code == 2 and out == "", (code, out, err)
    assert len(err.strip().splitlines()) == 1, err
    assert "job capped: [source] incremental: the source's rows are picked by " in err, err
    assert named in err and "later rows would never be read" in err, err
    runs = "SELECT count(*) FROM async_etl_runs WHERE job = 'capped'"
    tables = await fetchval(pg_dsn, "SELECT to_regclass('async_etl_runs') IS NOT NULL")
    assert not tables or await fetchval(pg_dsn, runs) == 0


@pytest.mark.parametrize("line", RUNS_ON)
async def test_a_per_row_limit_or_an_offset_0_fence_runs_on(pg_dsn: str, line: str) -> None:
    """A LATERAL / scalar per-row LIMIT 1 or OFFSET 0 caps nothing: run 2 reads the new rows."""
    await make_tables(pg_dsn)
    text = job_text("per_row", pg_dsn, line)
    first = await run(text, 0)
    assert (first.rows_read, first.cursor) == (20, "20")
    await execute(pg_dsn, "INSERT INTO src.ev SELECT i, 'a' || i, i FROM generate_series(21, 25) i")
    second = await run(text, 1)
    assert second.cursor == "25"
    assert sorted(await current(pg_dsn, "dw.per_row")) == list(range(1, 26))
