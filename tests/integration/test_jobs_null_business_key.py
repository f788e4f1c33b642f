"""A NULL in a business-key column that is not a chunk key: in `reject` mode each such row is
rejected with the reason and the others load, on PostgreSQL and CrateDB targets alike."""

from __future__ import annotations

import pytest

from async_etl.jobs.api import JobOptions, JobResult
from async_etl.jobs.budget import LimiterBudget
from async_etl.jobs.context import BudgetHolder, ConnectionMeter
from async_etl.jobs.runner import run_job
from async_etl.jobs.state import StateStore
from async_etl.testing.crate import CrateStandIn
from tests.integration.jobs_helpers import at, dml_role, fetchval, spec_of
from tests.integration.test_jobs_incremental import execute

JOB = """
name = "nbk"
on_bad_row = "{mode}"
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
business_key = ["id", "b"]
[parallel]
enabled = true
max_workers = 2
chunk_size = 10
min_rows_for_parallel = 0
"""


async def _source(dsn: str) -> None:
    """``src``: 40 rows, ``b`` NULL on every fourth."""
    await execute(
        dsn,
        "CREATE TABLE src (id int PRIMARY KEY, b text, v text)",
        "INSERT INTO src SELECT i, CASE WHEN i % 4 = 0 THEN NULL ELSE 'b' END, 'v' || i "
        "FROM generate_series(1, 40) i",
        "ANALYZE src",
    )


@pytest.mark.parametrize("kind", [1, 2])
@pytest.mark.parametrize("target", ["postgresql", "cratedb"])
async def test_null_business_key_rows_are_rejects_in_reject_mode(
    pg_dsn: str, target: str, kind: int
) -> None:
    """10 of 40 rows have b NULL: 10 rejects naming the key, 30 loaded, the re-run writes none."""
    await _source(pg_dsn)
    async with CrateStandIn() as crate:
        url = pg_dsn if target == "postgresql" else crate.url
        spec = spec_of(JOB.format(mode="reject", dsn=pg_dsn, target=url, kind=kind))
        first = await run_job(spec, options=JobOptions(as_of=at(0)))
        assert first.status == "SUCCEEDED", first.error
        assert (first.rows_read, first.inserted, first.rejected) == (40, 30, 10)
        second = await run_job(spec, options=JobOptions(as_of=at(1)))
        assert second.status == "SUCCEEDED", second.error
        assert (second.inserted, second.updated, second.expired, second.rejected) == (0, 0, 0, 10)
    keys = await fetchval(
        pg_dsn, "SELECT array_agg(DISTINCT (key->>'id')::int) FROM async_etl_rejects"
    )
    assert sorted(keys) == list(range(4, 41, 4))
    reasons = await fetchval(pg_dsn, "SELECT array_agg(reason) FROM async_etl_rejects")
    assert all(" b" in r or '"b"' in r for r in reasons), reasons


async def test_null_business_key_fails_a_crate_run_naming_it_in_fail_mode(pg_dsn: str) -> None:
    """`fail` mode on a CrateDB target: the run fails and the error names the key and column."""
    await _source(pg_dsn)
    async with CrateStandIn() as crate:
        spec = spec_of(JOB.format(mode="fail", dsn=pg_dsn, target=crate.url, kind=2))
        result = await run_job(spec, options=JobOptions(as_of=at(0)))
    assert result.status == "FAILED"
    assert result.error is not None and "NULL" in result.error and "b" in result.error


@pytest.mark.parametrize("kind", [1, 2])
async def test_a_nullable_key_column_in_a_precreated_target_is_no_way_around(
    pg_dsn: str, kind: int
) -> None:
    """A precreated target with b nullable: NULL keys are still rejects; a re-run writes nothing."""
    # An unchanged re-run re-inserts no version for a key that never matches.
    await _source(pg_dsn)
    history = ", valid_from timestamptz NOT NULL, valid_to timestamptz, is_current boolean "
    await execute(
        pg_dsn,
        "CREATE TABLE dim (id int NOT NULL, b text, v text"
        + (history + "NOT NULL DEFAULT true)" if kind == 2 else ")"),
    )
    spec = spec_of(JOB.format(mode="reject", dsn=pg_dsn, target=pg_dsn, kind=kind))
    first = await run_job(spec, options=JobOptions(as_of=at(0)))
    assert (first.status, first.inserted, first.rejected) == ("SUCCEEDED", 30, 10), first.error
    second = await run_job(spec, options=JobOptions(as_of=at(1)))
    assert second.status == "SUCCEEDED", second.error
    assert (second.inserted, second.updated, second.expired, second.deleted) == (0, 0, 0, 0)
    assert await fetchval(pg_dsn, "SELECT count(*) FROM dim") == 30


async def test_fail_mode_refuses_null_keys_before_a_first_load_into_a_nullable_target(
    pg_dsn: str,
) -> None:
    """`fail` mode, empty target with b nullable: fails naming the key, stores no NULL key."""
    # The target is created beforehand; the first run leaves no row with a NULL key in it.
    await _source(pg_dsn)
    await execute(pg_dsn, "CREATE TABLE dim (id int NOT NULL, b text, v text)")
    spec = spec_of(JOB.format(mode="fail", dsn=pg_dsn, target=pg_dsn, kind=1))
    result = await run_job(spec, options=JobOptions(as_of=at(0)))
    assert result.status == "FAILED"
    assert result.error is not None and "NULL in business key column(s) b" in result.error
    assert await fetchval(pg_dsn, "SELECT count(*) FROM dim WHERE b IS NULL") == 0


async def test_fail_mode_null_source_key_leaves_no_run_marked_running(pg_dsn: str) -> None:
    """`fail` mode, a NULL in the [source] key: the FAILED run is not left RUNNING in the state."""
    await execute(
        pg_dsn,
        "CREATE TABLE src (id int, b text, v text)",
        "INSERT INTO src VALUES (1, 'b', 'v'), (NULL, 'b', 'w')",
    )
    spec = spec_of(JOB.format(mode="fail", dsn=pg_dsn, target=pg_dsn, kind=1))
    result = await run_job(spec, options=JobOptions(as_of=at(0)))
    assert result.status == "FAILED"
    assert result.error is not None and "NULL in key column(s) id" in result.error
    running = "SELECT count(*) FROM async_etl_runs WHERE job = 'nbk' AND status = 'RUNNING'"
    assert await fetchval(pg_dsn, running) == 0


async def _run_keyed_on_id_and_b(pg_dsn: str, mode: str, values: str) -> JobResult:
    """A type-1 run in ``mode`` of a source src (id, b, v) holding ``values``, keyed (id, b)."""
    await execute(
        pg_dsn, "CREATE TABLE src (id int, b text, v text)", f"INSERT INTO src VALUES {values}"
    )
    text = JOB.format(mode=mode, dsn=pg_dsn, target=pg_dsn, kind=1)
    spec = spec_of(text.replace('key = ["id"]', 'key = ["id", "b"]'))
    return await run_job(spec, options=JobOptions(as_of=at(0)))


async def test_reject_reason_names_only_the_null_source_key_columns(pg_dsn: str) -> None:
    """[source] key (id, b), one row NULL in b, one in id: each reason names its NULL column."""
    result = await _run_keyed_on_id_and_b(
        pg_dsn, "reject", "(1, 'b', 'v'), (2, NULL, 'w'), (NULL, 'c', 'x'), (NULL, NULL, 'y')"
    )
    assert result.status == "SUCCEEDED" and result.rejected == 3, result.error
    reasons = await fetchval(
        pg_dsn, "SELECT string_agg(reason, '|' ORDER BY reason) FROM async_etl_rejects"
    )
    assert reasons == (
        "NULL in key column(s) b|NULL in key column(s) id|NULL in key column(s) id, b"
    )


async def test_fail_mode_error_names_only_the_null_source_key_columns(pg_dsn: str) -> None:
    """`fail` mode, [source] key (id, b), b NULL only: the error names b, as its reject would."""
    result = await _run_keyed_on_id_and_b(pg_dsn, "fail", "(1, 'b', 'v'), (2, NULL, 'w')")
    assert result.status == "FAILED" and result.error is not None
    assert 'row {"id": 2, "b": null}: NULL in key column(s) b' in result.error, result.error
    assert "id, b" not in result.error


async def test_a_failure_recording_null_key_rejects_ends_the_run_failed(
    pg_dsn: str, pg_server_dsn: str
) -> None:
    """Recording NULL-key rejects refused (INSERT revoked): the run ends FAILED, not RUNNING."""
    await execute(
        pg_dsn,
        "CREATE TABLE src (id int, b text, v text)",
        "INSERT INTO src VALUES (1, 'b', 'v'), (NULL, 'b', 'w')",
    )
    holder = BudgetHolder(LimiterBudget(1), ConnectionMeter())
    async with StateStore(pg_dsn, holder, app="async-etl:test") as store:
        await store.ensure()  # the state tables, made by their owner
    async with CrateStandIn() as crate, dml_role(pg_dsn, pg_server_dsn) as as_role:
        role = as_role.split("://", 1)[1].split("@", 1)[0]
        await execute(pg_dsn, f'REVOKE INSERT ON async_etl_rejects FROM "{role}"')
        spec = spec_of(JOB.format(mode="reject", dsn=as_role, target=crate.url, kind=1))
        result = await run_job(spec, options=JobOptions(as_of=at(0)))
        assert result.status == "FAILED", result
        assert result.error is not None and "permission denied" in result.error, result.error
        # before: FAILED returned, the run left RUNNING (resumed at its old as-of)
        status = await fetchval(pg_dsn, "SELECT status FROM async_etl_runs WHERE job = 'nbk'")
        error = await fetchval(pg_dsn, "SELECT error FROM async_etl_runs WHERE job = 'nbk'")
        assert status == "FAILED" and "permission denied" in error, (status, error)
