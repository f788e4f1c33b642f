"""``orchestrator.synthetic``: a sleep job reserves its connections as a mapper job does."""

from __future__ import annotations

import anyio

from async_etl.jobs.api import JobResult
from async_etl.jobs.budget import LimiterBudget
from async_etl.orchestrator.plan import SyntheticJob
from async_etl.orchestrator.synthetic import SyntheticRunner

T = "postgresql://u:secret@h/t"


async def test_a_synthetic_job_stopped_while_waiting_for_its_connections_ends_stopped() -> None:
    """A sleep job whose tokens another job holds: a stop while it waits ends it STOPPED."""
    budget = LimiterBudget(2)
    limiter = budget.limiter(T)
    other = object()
    limiter.acquire_on_behalf_of_nowait(other)  # another job holds one of the two
    stop = anyio.Event()
    found: list[JobResult] = []

    async def run() -> None:
        job = SyntheticJob(connections=2)
        runner = SyntheticRunner()
        found.append(
            await runner.run(
                "s", job, T, attempt=1, stop=stop, budget=budget, on_progress=lambda _: None
            )
        )

    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(run)
                await anyio.sleep(0.05)
                assert not found  # waiting: it opened no connection (host h does not exist)
                stop.set()
    finally:
        limiter.release_on_behalf_of(other)
    assert [r.status for r in found] == ["STOPPED"], found  # FAILED without its own branch
    assert limiter.borrowed_tokens == 0
