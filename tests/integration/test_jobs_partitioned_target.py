"""A partitioned PostgreSQL table as a job's target: append, merge and SCD2 load it, run after run.

The target (made by hand, list-partitioned by ``region``) exists before the first run; the key is
(id, region), since a unique index on a partitioned table must include the partition key.
"""

from __future__ import annotations

from pathlib import Path

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


async def _two_rows_into_two_partitions(dsn: str, id_key: str, kept_key: str) -> None:
    """public.s with two rows, an empty dw.p list-partitioned by region into p_eu and p_us."""
    for sql in (
        f"CREATE TABLE public.s (id int {id_key}, region text, v text)",
        "INSERT INTO public.s VALUES (1, 'eu', 'a'), (2, 'us', 'b')",
        "CREATE SCHEMA dw",
        f"CREATE TABLE dw.p (id int, region text, v text{kept_key}) PARTITION BY LIST (region)",
        "CREATE TABLE dw.p_eu PARTITION OF dw.p FOR VALUES IN ('eu')",
        "CREATE TABLE dw.p_us PARTITION OF dw.p FOR VALUES IN ('us')",
    ):
        await fetchval(dsn, sql)


@pytest.mark.parametrize("kept_key", [", PRIMARY KEY (id, region)", ""])
async def test_a_merge_key_without_the_partition_key_is_refused_in_preflight(
    pg_dsn: str, tmp_path: Path, kept_key: str
) -> None:
    """check and run refuse key (id) into a table partitioned by region: one line, no run."""
    await _two_rows_into_two_partitions(pg_dsn, "PRIMARY KEY", kept_key)
    job = tmp_path / "p.toml"
    job.write_text(
        f'name = "p"\n[source]\nurl = "{pg_dsn}"\ntable = "public.s"\nkey = ["id"]\n'
        f'[target]\nurl = "{pg_dsn}"\ntable = "dw.p"\n[scd]\ntype = 1\n'
    )
    for command in ("check", "run"):
        # before: check exit 0; run exit 1 after the run was recorded, with PostgreSQL's
        # 'there is no unique or exclusion constraint matching the ON CONFLICT specification'
        # or 'unique constraint on partitioned table must include all partitioning columns'
        code, out, err = await run_cli(command, str(job))
        assert code == 2, (command, out, err)
        line = err.strip().splitlines()[-1]
        assert "dw.p" in line and "key (id)" in line and "partition key (region)" in line, line
        assert "Traceback" not in err
    assert await fetchval(pg_dsn, "SELECT to_regclass('async_etl_runs') IS NULL") or (
        await fetchval(pg_dsn, "SELECT count(*) FROM async_etl_runs") == 0
    )
    assert await fetchval(pg_dsn, "SELECT count(*) FROM dw.p") == 0


@pytest.mark.parametrize("command", ["check", "run"])
async def test_a_full_refresh_into_a_partitioned_target_is_refused_in_preflight(
    pg_dsn: str, tmp_path: Path, command: str
) -> None:
    """A full refresh into a partitioned table: one line, no run, the table still partitioned."""
    await _two_rows_into_two_partitions(pg_dsn, "", "")
    await fetchval(pg_dsn, "INSERT INTO dw.p VALUES (9, 'eu', 'kept')")
    job = tmp_path / "p.toml"
    job.write_text(
        f'name = "p"\nmode = "full_refresh"\n[source]\nurl = "{pg_dsn}"\ntable = "public.s"\n'
        f'key = ["id", "region"]\n[target]\nurl = "{pg_dsn}"\ntable = "dw.p"\n'
    )
    code, out, err = await run_cli(command, str(job))
    # before: check exit 0, 'check: OK, nothing was written'; run refused at prepare
    # naming the new table ('... dw.p_etl_new: a full refresh replaces dw.p by a new table,
    # which would not keep: inheritance; partitioning; ...')
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "dw.p is partitioned" in lines[0] and "full refresh" in lines[0], lines[0]
    assert (
        await fetchval(pg_dsn, "SELECT relkind::text FROM pg_class WHERE oid = 'dw.p'::regclass")
        == "p"
    )
    assert await fetchval(pg_dsn, "SELECT string_agg(v, ',') FROM dw.p") == "kept"
