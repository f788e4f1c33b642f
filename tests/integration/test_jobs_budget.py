"""A connection budget below a job's minimum (real PostgreSQL): one line from run_job before
anything is written, instead of a run that waits for ever; the minimum itself runs."""

from __future__ import annotations

import dataclasses

import anyio
import pytest

from async_etl.core.chunks import Chunk
from async_etl.errors import ConfigError
from async_etl.jobs.api import JobOptions
from async_etl.jobs.budget import LimiterBudget, database_key
from async_etl.jobs.context import ChunkResult, JobContext
from async_etl.jobs.crate_driver import INNER_RETRIES
from async_etl.jobs.ray_chunks import LOCAL_FIELDS, ChunkActor
from async_etl.jobs.runner import run_job
from async_etl.jobs.spec import JobSpec
from async_etl.sources.port import Source
from async_etl.testing.crate import CrateStandIn, StandInConfig
from async_etl.testing.databases import fresh_database
from tests.integration.jobs_helpers import (
    at,
    cols_of,
    fetchval,
    history,
    job_toml,
    load_source,
    norm,
    reference,
    spec_of,
    table_rows,
)

GUARD_S = 60
"""A run that hangs fails the test here instead of hanging it (not a timing assertion)."""

USER_TABLES = (
    "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
)


def cross_job(name: str, source: str, target: str, kind: int) -> str:
    """``job_toml`` reading ``source`` into ``target`` (the state store: the target)."""
    text = job_toml(name, source, "dw.dim", kind=kind, workers=2, chunk_size=40)
    return text.replace(f'[target]\nurl = "{source}"', f'[target]\nurl = "{target}"', 1)


@pytest.mark.parametrize("kind", [1, 2])
async def test_budget_one_is_refused_in_one_line_before_anything_is_written(
    pg_dsn: str, pg_server_dsn: str, kind: int
) -> None:
    """Budget 1, source and target in two databases: ConfigError naming the target's database."""
    await load_source(pg_dsn, history(seed=3, n_keys=90, runs=1)[0])
    async with fresh_database(pg_server_dsn) as target:
        spec = spec_of(cross_job("tight", pg_dsn, target, kind))
        with anyio.fail_after(GUARD_S), pytest.raises(ConfigError) as err:
            await run_job(spec, options=JobOptions(as_of=at(0)), budget=LimiterBudget(1))
        assert err.value.message == (
            f"job tight: the connection budget for {database_key(target)} is 1; this job needs "
            "at least 2 connections there at once (its state store's (held for the whole run, "
            "with the job's lock); a chunk's target connection), so it could never finish: "
            "give that database a budget of at least 2"
        )
        assert await fetchval(target, USER_TABLES) == 0  # no state tables, no target


@pytest.mark.parametrize("kind", [1, 2])
async def test_budget_two_runs_a_cross_database_job(
    pg_dsn: str, pg_server_dsn: str, kind: int
) -> None:
    """Budget 2 everywhere, 2 workers: the job succeeds, never above 2 connections to the target."""
    states = history(seed=4, n_keys=300, runs=1)
    await load_source(pg_dsn, states[0])
    async with fresh_database(pg_server_dsn) as target:
        spec = spec_of(cross_job("two", pg_dsn, target, kind))
        with anyio.fail_after(GUARD_S):
            result = await run_job(spec, options=JobOptions(as_of=at(0)), budget=LimiterBudget(2))
        assert result.status == "SUCCEEDED", result.error
        assert result.chunks_total > 2
        assert result.max_connections is not None
        assert result.max_connections[database_key(target)] == 2
        got = await table_rows(target, "dw.dim")
    assert norm(got, cols_of(kind)) == norm(reference(states, cols_of(kind)), cols_of(kind))


async def test_one_database_runs_on_its_minimum_of_two_and_refuses_one(pg_dsn: str) -> None:
    """Source, target and state in one database: budget 2 runs (not the 3 roles); 1 is refused."""
    states = history(seed=5, n_keys=300, runs=1)
    await load_source(pg_dsn, states[0])
    spec = spec_of(job_toml("one", pg_dsn, "dw.dim", workers=3, chunk_size=40))
    with anyio.fail_after(GUARD_S), pytest.raises(ConfigError, match="needs at least 2 conn"):
        await run_job(spec, options=JobOptions(as_of=at(0)), budget=LimiterBudget(1))
    assert await fetchval(pg_dsn, "SELECT to_regclass('dw.dim') IS NULL")
    with anyio.fail_after(GUARD_S):
        result = await run_job(spec, options=JobOptions(as_of=at(0)), budget=LimiterBudget(2))
    assert result.status == "SUCCEEDED", result.error
    assert result.max_connections == {database_key(pg_dsn): 2}
    got = await table_rows(pg_dsn, "dw.dim")
    assert norm(got, cols_of(2)) == norm(reference(states, cols_of(2)), cols_of(2))


async def test_state_beside_the_source_runs_on_one_target_connection(
    pg_dsn: str, pg_server_dsn: str
) -> None:
    """State store in the source's database: 2 there and 1 on the target run; 1 there is refused."""
    states = history(seed=6, n_keys=300, runs=1)
    await load_source(pg_dsn, states[0])
    async with fresh_database(pg_server_dsn) as target:
        text = cross_job("beside", pg_dsn, target, 2) + f'[state]\nurl = "{pg_dsn}"\n'
        spec = spec_of(text)
        with anyio.fail_after(GUARD_S), pytest.raises(ConfigError, match="needs at least 2 conn"):
            await run_job(spec, budget=LimiterBudget(1, {pg_dsn: 1}))
        with anyio.fail_after(GUARD_S):
            result = await run_job(
                spec, options=JobOptions(as_of=at(0)), budget=LimiterBudget(1, {pg_dsn: 2})
            )
        assert result.status == "SUCCEEDED", result.error
        assert result.max_connections == {database_key(pg_dsn): 2, database_key(target): 1}
        got = await table_rows(target, "dw.dim")
    assert norm(got, cols_of(2)) == norm(reference(states, cols_of(2)), cols_of(2))


class HoldingApart:
    """A chunk executor that holds a source then a target token, as ``RayChunks`` does, and
    runs the chunk here (``ChunkActor``, on its own unbounded budget)."""

    def __init__(self, spec: JobSpec) -> None:
        self.actor = ChunkActor(spec, None)

    async def run_chunk(self, ctx: JobContext, chunk: Chunk, source: Source) -> ChunkResult:
        """Hold both tokens (one at a time, a pause between), then run ``chunk``."""
        fields = {f.name: getattr(ctx, f.name) for f in dataclasses.fields(ctx)}
        fields = {k: v for k, v in fields.items() if k not in LOCAL_FIELDS}
        async with ctx.hold(ctx.spec.source.url):
            await anyio.sleep(0.05)  # every worker holds its first token before any asks again
            async with ctx.hold(ctx.spec.target.url):
                return await self.actor.run_chunk(fields, chunk)

    async def aclose(self) -> None:
        """Nothing started."""


async def test_two_workers_holding_two_tokens_on_one_database_finish_on_the_minimum(
    pg_dsn: str,
) -> None:
    """One database, chunks holding a source and a target token, budget = minimum 3: no deadlock."""
    states = history(seed=7, n_keys=300, runs=1)
    await load_source(pg_dsn, states[0])
    spec = spec_of(job_toml("apart", pg_dsn, "dw.dim", workers=3, chunk_size=40))
    with anyio.fail_after(GUARD_S):
        result = await run_job(spec, options=JobOptions(as_of=at(0)), budget=LimiterBudget(3),
                               executor=HoldingApart(spec))  # fmt: skip
    assert result.status == "SUCCEEDED", result.error
    assert result.chunks_done == result.chunks_total > 3
    assert result.max_connections == {database_key(pg_dsn): 3}  # the state's and one chunk's
    got = await table_rows(pg_dsn, "dw.dim")
    assert norm(got, cols_of(2)) == norm(reference(states, cols_of(2)), cols_of(2))


async def test_a_chunk_retried_after_its_source_connection_went_idle_gets_its_token(
    pg_dsn: str,
) -> None:
    """Budget at the minimum, a CrateDB chunk's writes fail: the retry reconnects, the run ends."""
    # the chunk gave its source connection back to the run's shelf before its writes failed;
    # the retry connects afresh and must not wait for the token that idle connection holds
    states = history(seed=7, n_keys=120, runs=1)
    await load_source(pg_dsn, states[0])
    async with CrateStandIn(StandInConfig(seed=1)) as crate:
        text = job_toml("retried", pg_dsn, "dw.dim", kind=2, workers=1, chunk_size=40,
                        parallel=False)  # fmt: skip
        text = text.replace(f'url = "{pg_dsn}"\ntable', f'url = "{crate.url}"\ntable', 1)
        text += f'[state]\nurl = "{pg_dsn}"\n[retry]\nbase_delay = 0.01\nmax_delay = 0.05\n'
        crate.schedule_faults(*["fail"] * (INNER_RETRIES + 1))  # the first write's every try
        with anyio.fail_after(GUARD_S):
            result = await run_job(
                spec_of(text), options=JobOptions(as_of=at(0)), budget=LimiterBudget(1, {pg_dsn: 2})
            )
        assert result.status == "SUCCEEDED", result.error
        assert crate.counters.faults["fail"] == INNER_RETRIES + 1
        assert result.inserted == len(states[0])
