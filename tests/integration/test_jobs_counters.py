"""A run's counters reconcile: every source row read ends inserted, updated, unchanged or
rejected, on PostgreSQL and CrateDB targets, NULL keys and refused rows included."""

from __future__ import annotations

import pytest

from async_etl.jobs.api import JobOptions, JobResult
from async_etl.jobs.context import unchanged_rows
from async_etl.jobs.runner import run_job
from async_etl.testing.crate import CrateStandIn, StandInConfig
from tests.integration.jobs_helpers import at, crate_rows, fetchval, spec_of
from tests.integration.test_jobs_incremental import execute

JOB = """
name = "cnt"
on_bad_row = "reject"
[source]
url = "{dsn}"
table = "src"
key = ["id"]
[target]
url = "{target}"
table = "dim"
[state]
url = "{dsn}"
[scd]
type = {kind}
[parallel]
enabled = false
"""


def reconciles(result: JobResult, unchanged: int) -> bool:
    """read = inserted + updated + unchanged + rejected (an expiry goes with its new version)."""
    counters = {"rows_read": result.rows_read, "inserted": result.inserted,
                "updated": result.updated, "rejected": result.rejected}  # fmt: skip
    return unchanged_rows(counters) == unchanged


@pytest.mark.parametrize("kind", [1, 2])
@pytest.mark.parametrize("target", ["postgresql", "cratedb"])
async def test_null_key_rows_are_read_and_rejected(pg_dsn: str, target: str, kind: int) -> None:
    """6 rows: 2 NULL keys, key 3 twice: read 6, inserted 2, rejected 4; again: 2 unchanged."""
    await execute(
        pg_dsn,
        "CREATE TABLE src (id int, v text)",
        "INSERT INTO src VALUES (1, 'a'), (2, 'b'), (3, 'c'), (3, 'd'), (NULL, 'e'), (NULL, 'f')",
    )
    async with CrateStandIn() as crate:
        url = pg_dsn if target == "postgresql" else crate.url
        spec = spec_of(JOB.format(dsn=pg_dsn, target=url, kind=kind))
        first = await run_job(spec, options=JobOptions(as_of=at(0)))
        assert first.status == "SUCCEEDED", first.error
        assert (first.rows_read, first.inserted, first.rejected) == (6, 2, 4)
        assert reconciles(first, unchanged=0)
        second = await run_job(spec, options=JobOptions(as_of=at(1)))
        assert second.status == "SUCCEEDED", second.error
        assert (second.rows_read, second.inserted, second.updated, second.rejected) == (6, 0, 0, 4)
        assert reconciles(second, unchanged=2)
    stored = await fetchval(
        pg_dsn, f"SELECT rows_read FROM async_etl_runs WHERE run_id = '{first.run_id}'"
    )
    assert stored == 6


@pytest.mark.parametrize("kind", [1, 2])
async def test_crate_refused_row_is_not_counted_inserted(pg_dsn: str, kind: int) -> None:
    """3 rows, one a 2-D array CrateDB refuses: 2 inserted (as the target holds), 1 rejected."""
    await execute(
        pg_dsn,
        "CREATE TABLE src (id int PRIMARY KEY, v int[])",
        "INSERT INTO src VALUES (1, '{1}'), (2, '{{1,2},{3,4}}'), (3, NULL)",
    )
    async with CrateStandIn() as crate:
        spec = spec_of(JOB.format(dsn=pg_dsn, target=crate.url, kind=kind))
        result = await run_job(spec, options=JobOptions(as_of=at(0)))
        held = len(await crate_rows(crate.url, "dim"))
    assert result.status == "SUCCEEDED", result.error
    assert (result.rows_read, result.inserted, result.rejected) == (3, held, 1) == (3, 2, 1)
    assert reconciles(result, unchanged=0)


async def test_crate_faults_do_not_change_the_counters(pg_dsn: str) -> None:
    """Dropped connections and item failures: inserted counts every row that landed, once."""
    await execute(
        pg_dsn,
        "CREATE TABLE src (id int PRIMARY KEY, v text)",
        "INSERT INTO src SELECT i, 'v' || i FROM generate_series(1, 3000) i",
        "ANALYZE src",
    )
    config = StandInConfig(seed=5, item_fail_rate=0.05, drop_rate=0.3, busy_rate=0.02)
    async with CrateStandIn(config) as crate:
        crate.schedule_faults("item_fail", "busy", "drop_before", "drop_after")  # each occurs
        text = JOB.format(dsn=pg_dsn, target=crate.url, kind=1).replace(
            "enabled = false", "enabled = true\nmax_workers = 2\nchunk_size = 200"
        )
        # the default attempts, with short delays: the faults, not the backoff, are tested here
        text += "[retry]\nbase_delay = 0.01\nmax_delay = 0.05\n"
        result = await run_job(spec_of(text), options=JobOptions(as_of=at(0)))
        crate.item_fail_rate = crate.drop_rate = crate.busy_rate = 0.0
        held = len(await crate_rows(crate.url, "dim"))
        faults = dict(crate.counters.faults)
    assert result.status == "SUCCEEDED", result.error
    # a request was applied and its answer lost (drop_after): the chunk was retried
    assert all(faults[k] > 0 for k in ("item_fail", "busy", "drop_before", "drop_after")), faults
    assert (result.rows_read, result.inserted, result.rejected, held) == (3000, 3000, 0, 3000)
    assert reconciles(result, unchanged=0)
