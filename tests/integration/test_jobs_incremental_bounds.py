"""A date or time cursor at 9999-12-31 or 0001-01-01: every window bound reaches PostgreSQL exactly.

asyncpg binds ``date.max`` / ``datetime.max`` as ``infinity`` and the minimums as
``-infinity``; a window bound sent that way read ``c >= 'infinity'`` after a 9999-12-31 cursor
(a later row at 9999-12-31 was never read) and ``c <= '-infinity'`` under a 0001-01-01 top.
"""

from __future__ import annotations

import pytest

from async_etl.jobs.api import JobResult
from async_etl.testing.crate import CrateStandIn, StandInConfig
from tests.integration.test_jobs_crate import crate_rows
from tests.integration.test_jobs_incremental import current, inc_toml, run
from tests.integration.test_jobs_incremental_endless import add_row, make_source

SENTINELS = [  # type, an ordinary cursor, the sentinel at the type's maximum
    ("date", "'2024-01-01'", "'9999-12-31'"),
    ("timestamp", "'2024-01-01 00:00'", "'9999-12-31 23:59:59.999999'"),
    ("timestamptz", "'2024-01-01 00:00+00'", "'9999-12-31 23:59:59.999999+00'"),
]


async def first_run(dsn: str, name: str, sql_type: str, *values: str) -> tuple[str, JobResult]:
    """``src.ev`` with cursors ``values``, and the first run of job ``name``: it reads them all."""
    await make_source(dsn, sql_type, *values)
    text = inc_toml(name, dsn)
    result = await run(text, 0)
    assert (result.rows_read, result.inserted) == (len(values), len(values))
    return text, result


async def next_run(dsn: str, text: str, sql_type: str, day: int, **rows: str) -> JobResult:
    """Add the source ``rows`` (``id<n>`` = cursor), then run the job as of ``day``."""
    for name, value in rows.items():
        await add_row(dsn, sql_type, int(name[2:]), value)
    return await run(text, day)


@pytest.mark.parametrize(("sql_type", "low", "top"), SENTINELS)
async def test_a_later_row_at_a_9999_12_31_cursor_is_read(
    pg_dsn: str, sql_type: str, low: str, top: str
) -> None:
    """Cursor 9999-12-31(…): a row added at that very value is read by the next run."""
    text, first = await first_run(pg_dsn, "sentinel", sql_type, low, top)
    assert first.cursor is not None and first.cursor.startswith("9999-12-31")
    second = await next_run(pg_dsn, text, sql_type, 1, id3=top)
    assert (second.rows_read, second.inserted, second.cursor) == (2, 1, first.cursor)
    assert sorted(await current(pg_dsn, "dw.sentinel")) == [1, 2, 3]
    third = await next_run(pg_dsn, text, sql_type, 2, id4=low, id5=top)  # 4: below the cursor
    assert (third.rows_read, third.inserted) == (3, 1)
    assert sorted(await current(pg_dsn, "dw.sentinel")) == [1, 2, 3, 5]


async def test_a_9999_12_31_cursor_reads_later_rows_into_cratedb(pg_dsn: str) -> None:
    """The same into CrateDB (rows read through the exact codecs): the later row is read."""
    # a date only: CrateDB keeps milliseconds, so it refuses 23:59:59.999999
    await make_source(pg_dsn, "date", "'2024-01-01'", "'9999-12-31'")
    async with CrateStandIn(StandInConfig(seed=5)) as crate:
        text = inc_toml("cr", pg_dsn, kind=2, target=crate.url)
        assert (await run(text, 0)).rows_read == 2
        await add_row(pg_dsn, "date", 3, "'9999-12-31'")
        second = await run(text, 1)
        assert (second.rows_read, second.inserted) == (2, 1)
        rows = await crate_rows(crate.url, "dw.cr")
    assert sorted(r["id"] for r in rows if r["is_current"]) == [1, 2, 3]


@pytest.mark.parametrize(
    ("sql_type", "bottom", "later"),
    [
        ("date", "'0001-01-01'", "'2024-01-01'"),
        ("timestamp", "'0001-01-01 00:00'", "'2024-01-01 00:00'"),
        ("timestamptz", "'0001-01-01 00:00+00'", "'2024-01-01 00:00+00'"),
    ],
)
async def test_a_0001_01_01_top_is_read_by_its_own_run(
    pg_dsn: str, sql_type: str, bottom: str, later: str
) -> None:
    """A source whose highest cursor is 0001-01-01 reads that row at once, then runs on."""
    text, _ = await first_run(pg_dsn, "bottom", sql_type, bottom, bottom)
    assert sorted(await current(pg_dsn, "dw.bottom")) == [1, 2]
    second = await next_run(pg_dsn, text, sql_type, 1, id3=bottom, id4=later)
    assert (second.rows_read, second.inserted) == (4, 2)
    assert sorted(await current(pg_dsn, "dw.bottom")) == [1, 2, 3, 4]


async def test_an_infinity_cursor_row_is_still_read_beside_9999_12_31(pg_dsn: str) -> None:
    """Rows at 9999-12-31 and 'infinity' under one window: both read, the top is 'infinity'."""
    text, _ = await first_run(pg_dsn, "both", "date", "'2024-01-01'", "'9999-12-31'")
    second = await next_run(pg_dsn, text, "date", 1, id3="'9999-12-31'", id4="'infinity'")
    assert (second.rows_read, second.inserted, second.cursor) == (3, 2, "infinity")
    assert sorted(await current(pg_dsn, "dw.both")) == [1, 2, 3, 4]
