"""A text cursor in a collation unlike code-point order: the window's top and the committed
cursor follow the collation, so no row is skipped."""

from __future__ import annotations

from async_etl.jobs.api import JobOptions
from async_etl.jobs.runner import run_job
from tests.integration.jobs_helpers import at, fetchval, spec_of
from tests.integration.test_jobs_incremental import execute

JOB = """
name = "tc"
[source]
url = "{dsn}"
table = "src"
key = ["id"]
incremental = "c"
[target]
url = "{dsn}"
table = "dim"
[scd]
type = 1
"""


async def test_icu_text_cursor_reads_a_row_above_the_cursor_in_collation_order(
    pg_dsn: str,
) -> None:
    """en-x-icu puts 'B' after 'b' (code points put it before): the row with 'B' is loaded."""
    await execute(
        pg_dsn,
        'CREATE TABLE src (id int PRIMARY KEY, c text COLLATE "en-x-icu")',
        "INSERT INTO src VALUES (1, 'a'), (2, 'b')",
    )
    spec = spec_of(JOB.format(dsn=pg_dsn))
    first = await run_job(spec, options=JobOptions(as_of=at(0)))
    assert (first.status, first.cursor) == ("SUCCEEDED", "b"), first.error
    await execute(pg_dsn, "INSERT INTO src VALUES (3, 'B')")
    second = await run_job(spec, options=JobOptions(as_of=at(1)))
    assert (second.status, second.inserted, second.cursor) == ("SUCCEEDED", 1, "B"), second.error
    assert await fetchval(pg_dsn, "SELECT count(*) FROM dim") == 3
