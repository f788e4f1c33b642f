"""A partitioned PostgreSQL table as a job's target: append, merge and SCD2 load it, run after run.

The target (made by hand, list-partitioned by ``region``) exists before the first run; the key is
(id, region), since a unique index on a partitioned table must include the partition key.
"""

from __future__ import annotations

import pytest

from tests.integration.jobs_helpers import fetchval, run_cli, table_rows

EXTRA = {
    "append": "",
    "merge": ", PRIMARY KEY (id, region)",
    "scd2": ", valid_from timestamptz, valid_to timestamptz, is_current boolean",
}
"""The target's columns and constraints after (id, region, v), per mode."""


async def _copy(dsn: str, mode: str) -> str:
    code, out, err = await run_cli(
        "copy", "--source", dsn, "--source-table", "public.s", "--target", dsn,
        "--target-table", "dw.p", "--mode", mode, "--key", "id,region",
    )  # fmt: skip
    assert code == 0, err
    return out


@pytest.mark.parametrize("mode", list(EXTRA))
async def test_a_partitioned_target_is_loaded_run_after_run(pg_dsn: str, mode: str) -> None:
    """append / merge / scd2 into a list-partitioned table: rows land, a change is applied."""
    for sql in (
        "CREATE TABLE public.s (id int, region text, v text, PRIMARY KEY (id, region))",
        "INSERT INTO public.s SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END, "
        "md5(g::text) FROM generate_series(1, 200) g",
        "CREATE SCHEMA dw",
        f"CREATE TABLE dw.p (id int, region text, v text{EXTRA[mode]}) PARTITION BY LIST (region)",
        "CREATE TABLE dw.p_eu PARTITION OF dw.p FOR VALUES IN ('eu')",
        "CREATE TABLE dw.p_us PARTITION OF dw.p FOR VALUES IN ('us')",
    ):
        await fetchval(pg_dsn, sql)
    assert "inserted 200," in await _copy(pg_dsn, mode)
    await fetchval(pg_dsn, "UPDATE public.s SET v = 'changed' WHERE id <= 10")
    if mode == "append":
        await fetchval(pg_dsn, "INSERT INTO public.s VALUES (201, 'us', 'new')")
    # before (merge): 'FeatureNotSupportedError: cannot retrieve a system column in this
    # context', exit 1 (RETURNING xmax from a partitioned table)
    out = await _copy(pg_dsn, mode)
    rows = await table_rows(pg_dsn, "dw.p")
    if mode == "append":
        assert "inserted 201," in out, out  # append without incremental: every row again
        assert len(rows) == 401
    elif mode == "merge":
        assert "inserted 0, updated 10," in out, out
        assert len(rows) == 200 and sum(r["v"] == "changed" for r in rows) == 10
    else:
        assert "inserted 10, updated 0, expired 10," in out, out
        current = [r for r in rows if r["is_current"]]
        assert len(rows) == 210 and len(current) == 200
        assert sum(r["v"] == "changed" for r in current) == 10
    eu = await fetchval(pg_dsn, "SELECT count(*) FROM ONLY dw.p_eu")
    assert eu == sum(r["region"] == "eu" for r in rows)
