"""A later run sends no target DDL when the target is there: a role with only DML loads it."""

from __future__ import annotations

import pytest

from async_etl.core.retry import RetryPolicy
from async_etl.jobs.api import JobOptions
from async_etl.jobs.runner import run_job
from async_etl.testing.databases import fresh_database
from tests.integration.jobs_helpers import (
    at,
    dml_role,
    fetchval,
    history,
    job_toml,
    load_source,
    spec_of,
)

FAST = RetryPolicy(max_retries=2, base=0.01, cap=0.1)
OWN_KEY = (
    "CREATE TABLE dw.t (a bigint, b text, name text, city text, tier integer, PRIMARY KEY (a, b))"
)
"""A type-1 target made beforehand with its own primary key (the engine adds no ``t_bk``)."""


def _job(kind: int, source: str, target: str, state: str, table: str) -> str:
    """Job ``dml_kind`` reading ``source`` into ``target``'s ``table``, its state in ``state``."""
    text = job_toml(f"dml_{kind}", source, table, kind=kind, workers=2, chunk_size=50)
    text = text.replace(f'[target]\nurl = "{source}"', f'[target]\nurl = "{target}"', 1)
    return text + f'[state]\nurl = "{state}"\n'


@pytest.mark.parametrize(
    ("kind", "made", "table"),
    [(2, "", "dw.t"), (1, "", "dw.t"), (1, OWN_KEY, "dw.t"), (2, "", "t")],
)
async def test_a_dml_only_target_role_runs_an_existing_job_again(
    pg_dsn: str, pg_server_dsn: str, kind: int, made: str, table: str
) -> None:
    """Run 1 as the owner makes the target (and its ledger); run 2 as a DML-only role succeeds."""
    states = history(seed=11, n_keys=150, runs=2)
    async with fresh_database(pg_server_dsn) as target:
        await fetchval(target, "CREATE SCHEMA dw")
        if made:
            await fetchval(target, made)
        await load_source(pg_dsn, states[0])
        first = await run_job(spec_of(_job(kind, pg_dsn, target, pg_dsn, table)),
                              options=JobOptions(as_of=at(0), retry=FAST))  # fmt: skip
        assert first.status == "SUCCEEDED", first.error
        await load_source(pg_dsn, states[1])
        schema = table.rpartition(".")[0] or "public"
        async with dml_role(target, pg_server_dsn, schema=schema) as as_role:
            spec = spec_of(_job(kind, pg_dsn, as_role, pg_dsn, table))
            second = await run_job(spec, options=JobOptions(as_of=at(1), retry=FAST))
            # before: 'permission denied for database' (CREATE SCHEMA IF NOT EXISTS dw), or
            # for schema public (CREATE TABLE IF NOT EXISTS t)
            assert second.status == "SUCCEEDED", second.error
        assert second.rows_read == len(states[1])
        current = f"SELECT count(*) FROM {table}" + (" WHERE is_current" if kind == 2 else "")
        assert await fetchval(target, current) == len(states[1])
        ledger = table.replace("t", "async_etl_landed")  # beside the target, emptied at the end
        assert await fetchval(target, f"SELECT count(*) FROM {ledger}") == 0


@pytest.mark.parametrize("kind", [1, 2])
async def test_an_index_dropped_by_hand_is_made_again_by_the_next_run(
    pg_dsn: str, pg_server_dsn: str, kind: int
) -> None:
    """The target's unique indexes dropped between two runs: the second run makes them again."""
    states = history(seed=12, n_keys=150, runs=2)
    names = ["t_version", "t_current"] if kind == 2 else ["t_bk"]
    made = "SELECT count(*) FROM pg_indexes WHERE schemaname = 'dw' AND indexname = ANY($1)"
    async with fresh_database(pg_server_dsn) as target:
        spec = spec_of(_job(kind, pg_dsn, target, pg_dsn, "dw.t"))
        for i, rows in enumerate(states):
            await load_source(pg_dsn, rows)
            result = await run_job(spec, options=JobOptions(as_of=at(i), retry=FAST))
            assert result.status == "SUCCEEDED", result.error
            assert await fetchval(target, made, names) == len(names)
            if i == 0:
                for name in names:
                    await fetchval(target, f"DROP INDEX dw.{name}")
                assert await fetchval(target, made, names) == 0
