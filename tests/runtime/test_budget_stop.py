from __future__ import annotations

import anyio
import pytest
from anyio import wait_all_tasks_blocked
from anyio.lowlevel import checkpoint

from async_etl.errors import StopRequested
from async_etl.jobs.budget import hold


async def test_waiting_for_a_budget_token_answers_a_stop() -> None:
    """A job waiting for a connection token gives up with StopRequested when asked to stop."""
    limiter = anyio.CapacityLimiter(1)
    stop = anyio.Event()
    outcome: list[str] = []

    async def waiter() -> None:
        with pytest.raises(StopRequested):
            async with hold(limiter, stop):
                outcome.append("got a token")  # pragma: no cover - must not happen
        outcome.append("stopped")

    async with hold(limiter), anyio.create_task_group() as tg:  # the only token is taken
        tg.start_soon(waiter)
        await anyio.sleep(0.05)
        assert outcome == []
        stop.set()
    assert outcome == ["stopped"]
    assert limiter.borrowed_tokens == 0


async def test_a_free_token_is_taken_and_given_back_with_a_stop_event() -> None:
    """With a token free, hold() takes it at once, and releases it after the block."""
    limiter = anyio.CapacityLimiter(2)
    stop = anyio.Event()
    async with hold(limiter, stop):
        assert limiter.borrowed_tokens == 1
    assert limiter.borrowed_tokens == 0


async def test_a_cancel_right_after_the_token_is_granted_does_not_leak_it() -> None:
    """Cancelled between the grant and the block (stop event given): the token goes back."""
    limiter = anyio.CapacityLimiter(1)
    other = object()
    limiter.acquire_on_behalf_of_nowait(other)
    scopes: list[anyio.CancelScope] = []

    async def holder() -> None:
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            async with hold(limiter, anyio.Event()):
                await anyio.sleep_forever()  # pragma: no cover - cancelled before the block

    async with anyio.create_task_group() as tg:
        tg.start_soon(holder)
        await wait_all_tasks_blocked()  # the holder waits for the only token
        limiter.release_on_behalf_of(other)  # granted: its taker runs next ...
        await checkpoint()
        scopes[0].cancel()  # ... and the holder is cancelled before it leaves the wait
    assert limiter.borrowed_tokens == 0
