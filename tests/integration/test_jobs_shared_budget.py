"""Jobs sharing one connection budget (real PostgreSQL): two jobs whose chunks take the two
databases' tokens in opposite orders both finish, where each used to hold what the other
waited for; a budget that can never fit a job's minimum is refused in one line."""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import anyio

from async_etl.jobs.api import JobOptions, JobResult
from async_etl.jobs.budget import LimiterBudget, database_key
from async_etl.jobs.runner import run_job
from async_etl.orchestrator import Orchestrator, load_plan
from async_etl.testing.databases import fresh_database
from tests.integration.jobs_helpers import (
    at,
    cols_of,
    history,
    job_toml,
    load_source,
    norm,
    reference,
    spec_of,
    table_rows,
)

GUARD_S = 60
"""A pair of runs that waits for ever fails the test here (not a timing assertion)."""


class YieldingBudget(LimiterBudget):
    """``default`` tokens per database; a waiting grab lets other tasks run once it got one.

    As a busy event loop would: a task that took one database's token is descheduled before
    it asks for the next, so two jobs' grabs interleave every way they can.
    """

    def __init__(self, default: int) -> None:
        super().__init__(default)
        self._mine: dict[str, anyio.CapacityLimiter] = {}

    def limiter(self, url: str) -> anyio.CapacityLimiter:
        """The limiter of ``url``'s database (same database, same limiter)."""
        key = database_key(url)
        if key not in self._mine:
            self._mine[key] = _yielding_class()(self.default)
        return self._mine[key]


@functools.cache
def _yielding_class() -> Any:
    """The running backend's ``CapacityLimiter`` class, yielding after a grab that waited."""
    base: Any = type(anyio.CapacityLimiter(1))

    class Yielding(base):  # type: ignore[misc, valid-type]
        async def acquire_on_behalf_of(self, borrower: object) -> None:
            await super().acquire_on_behalf_of(borrower)
            with anyio.CancelScope(shield=True):  # never cancelled holding an unreported token
                await anyio.sleep(0.05)

    return Yielding


def crossed(name: str, source: str, target: str, table: str) -> str:
    """A job reading ``src.t`` of ``source`` into ``table`` of ``target`` (state: the target)."""
    text = job_toml(name, source, table, kind=2, workers=4, chunk_size=15)
    return text.replace(f'[target]\nurl = "{source}"', f'[target]\nurl = "{target}"', 1)


async def test_two_jobs_crossing_two_databases_share_a_budget_of_three(
    pg_dsn: str, pg_server_dsn: str
) -> None:
    """A: S -> T and B: T -> S, 4 workers each, budget 3 per database: both succeed, rows exact."""
    states = history(seed=40, n_keys=300, runs=1)
    await load_source(pg_dsn, states[0])
    async with fresh_database(pg_server_dsn) as other:
        await load_source(other, states[0])
        specs = {
            "a": spec_of(crossed("cross_a", pg_dsn, other, "dw.a")),
            "b": spec_of(crossed("cross_b", other, pg_dsn, "dw.b")),
        }
        budget = YieldingBudget(3)
        results: dict[str, JobResult] = {}

        async def one(name: str) -> None:
            options = JobOptions(as_of=at(0))
            results[name] = await run_job(specs[name], options=options, budget=budget)

        with anyio.fail_after(GUARD_S):
            async with anyio.create_task_group() as tg:
                tg.start_soon(one, "a")
                tg.start_soon(one, "b")
        assert results["a"].status == "SUCCEEDED", results["a"].error
        assert results["b"].status == "SUCCEEDED", results["b"].error
        assert results["a"].chunks_total > 4
        want = norm(reference(states, cols_of(2)), cols_of(2))
        assert norm(await table_rows(other, "dw.a"), cols_of(2)) == want
        assert norm(await table_rows(pg_dsn, "dw.b"), cols_of(2)) == want


async def test_an_orchestrated_plan_of_two_crossing_jobs_shares_a_budget_of_three(
    pg_dsn: str, pg_server_dsn: str, tmp_path: Path
) -> None:
    """A plan running A: S -> T and B: T -> S at once on a budget of 3 each: both succeed."""
    states = history(seed=41, n_keys=300, runs=1)
    await load_source(pg_dsn, states[0])
    async with fresh_database(pg_server_dsn) as other:
        await load_source(other, states[0])
        (tmp_path / "a.toml").write_text(crossed("cross_a", pg_dsn, other, "dw.a"))
        (tmp_path / "b.toml").write_text(crossed("cross_b", other, pg_dsn, "dw.b"))
        (tmp_path / "plan.toml").write_text(
            f'name = "crossed"\nstate = "{pg_dsn}"\nlocal_max = 2\nglobal_max = 2\n'
            '[budgets]\ndefault = 3\n[[jobs]]\nfile = "a.toml"\n[[jobs]]\nfile = "b.toml"\n'
        )
        orch = Orchestrator(load_plan(tmp_path / "plan.toml"), options=JobOptions(as_of=at(0)))
        orch.budget = YieldingBudget(3)
        with anyio.fail_after(GUARD_S):
            outcome = await orch.run()
        assert {n: s.status for n, s in outcome.jobs.items()} == {
            "cross_a": "SUCCEEDED",
            "cross_b": "SUCCEEDED",
        }, {n: s.error for n, s in outcome.jobs.items()}
        want = norm(reference(states, cols_of(2)), cols_of(2))
        assert norm(await table_rows(other, "dw.a"), cols_of(2)) == want
        assert norm(await table_rows(pg_dsn, "dw.b"), cols_of(2)) == want


async def test_a_budget_lifted_to_unlimited_at_run_time_still_runs_the_job(pg_dsn: str) -> None:
    """A limit set to math.inf (anyio's "no limit") before the run: the job runs, rows exact."""
    states = history(seed=42, n_keys=120, runs=1)
    await load_source(pg_dsn, states[0])
    budget = LimiterBudget(3)
    budget.limiter(pg_dsn).total_tokens = math.inf
    spec = spec_of(job_toml("unlimited", pg_dsn, "dw.u", kind=2, workers=4, chunk_size=15))
    with anyio.fail_after(GUARD_S):
        result = await run_job(spec, options=JobOptions(as_of=at(0)), budget=budget)
    assert result.status == "SUCCEEDED", result.error
    want = norm(reference(states, cols_of(2)), cols_of(2))
    assert norm(await table_rows(pg_dsn, "dw.u"), cols_of(2)) == want
