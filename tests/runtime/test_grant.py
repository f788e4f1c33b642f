"""``jobs.grant``: a job's minimum is reserved at once, extras never wait on the shared budget."""

from __future__ import annotations

from contextlib import AsyncExitStack

import anyio
import pytest

from async_etl.errors import ConfigError, StopRequested
from async_etl.jobs.budget import LimiterBudget
from async_etl.jobs.grant import Grant, reserved

S = "postgresql://u:secret@h/s"
T = "postgresql://u:secret@h/t"


async def test_crossed_jobs_on_reservations_both_finish() -> None:
    """A (T then S) and B (S then T), 4 lanes each, 2 tokens per database: both finish."""
    budget = LimiterBudget(2)
    done: list[str] = []

    async def job(name: str, first: str, second: str) -> None:
        async with reserved(budget, {first: 1, second: 1}) as grant:

            async def lane() -> None:
                async with grant.hold(first):
                    await anyio.sleep(0.001)
                    async with grant.hold(second):
                        await anyio.sleep(0.001)

            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(lane)
        done.append(name)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(job, "a", T, S)
            tg.start_soon(job, "b", S, T)
    assert sorted(done) == ["a", "b"]
    assert budget.limiter(S).borrowed_tokens == budget.limiter(T).borrowed_tokens == 0


async def test_a_stop_while_reserving_raises_and_gives_every_token_back() -> None:
    """Waiting for T's token, holding S's: a stop raises StopRequested; nothing stays held."""
    budget = LimiterBudget(1)
    stop = anyio.Event()
    async with reserved(budget, {T: 1}):
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(_set_soon, stop)
                with pytest.raises(StopRequested):
                    async with reserved(budget, {S: 1, T: 1}, stop):
                        pass
        assert budget.limiter(S).borrowed_tokens == 0
    assert budget.limiter(T).borrowed_tokens == 0


async def _set_soon(event: anyio.Event) -> None:
    await anyio.sleep(0.05)
    event.set()


async def test_a_limit_below_the_minimum_is_refused_in_one_line_without_a_password() -> None:
    """Two connections wanted on T, limit 1: ConfigError naming T's key and the numbers."""
    with pytest.raises(ConfigError) as err:
        async with reserved(LimiterBudget(1), {T: 1, T.replace("u:secret@", ""): 1}):
            pass
    assert err.value.message == (
        "the connection budget for postgresql://h:5432/t is 1; 2 connections are needed "
        "there at once, so this could never run"
    )


async def test_extras_come_from_free_tokens_and_go_back_when_the_budget_wants_them() -> None:
    """Minimum 1, limit 3: 3 lent at once; a reservation waiting gets the 2 extras back."""
    budget = LimiterBudget(3)
    got, done = anyio.Event(), anyio.Event()

    async def reserve_two() -> None:
        async with reserved(budget, {T: 2}):
            got.set()
            await done.wait()

    async with reserved(budget, {T: 1}) as grant, anyio.create_task_group() as tg:
        async with AsyncExitStack() as lent:
            for _ in range(3):
                await lent.enter_async_context(grant.hold(T))
            assert budget.limiter(T).borrowed_tokens == 3  # all three the grant's
            tg.start_soon(reserve_two)
            await anyio.sleep(0.01)
            assert not got.is_set()  # none free: it waits
        with anyio.fail_after(5):
            await got.wait()
            assert budget.limiter(T).borrowed_tokens == 3  # its 2, and the grant's minimum
            async with grant.hold(T):  # which the grant kept: served without waiting
                done.set()
    assert budget.limiter(T).borrowed_tokens == 0


async def test_steps_with_two_connections_on_one_database_take_both_at_once() -> None:
    """Grant 2 on T, 4 lanes each holding T twice (one at a time): all finish, all given back."""
    budget = LimiterBudget(2)
    done = 0

    async def lane(grant: Grant) -> None:
        nonlocal done
        async with grant.step([T, T]), grant.hold(T):
            await anyio.sleep(0.01)  # every lane's first connection is open before a second
            async with grant.hold(T):
                done += 1

    with anyio.fail_after(5):
        async with reserved(budget, {T: 2}) as grant, anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(lane, grant)
    assert done == 4
    assert budget.limiter(T).borrowed_tokens == 0


async def test_a_steps_unused_token_goes_back_and_one_held_past_it_returns_to_the_grant() -> None:
    """A step of two on T opening one: the other is free again at its end; a kept one too."""
    budget = LimiterBudget(2)
    async with reserved(budget, {T: 2}) as grant, AsyncExitStack() as kept:
        async with grant.step([T, T]):
            await kept.enter_async_context(grant.hold(T))  # outlives the step (a kept connection)
        with anyio.fail_after(5):
            async with grant.hold(T):  # the unused one is free again
                pass
        await kept.aclose()
        with anyio.fail_after(5):
            async with grant.hold(T), grant.hold(T):  # and the kept one is back
                assert budget.limiter(T).borrowed_tokens == 2
    assert budget.limiter(T).borrowed_tokens == 0
