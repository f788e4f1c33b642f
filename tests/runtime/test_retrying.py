"""The one retry loop (async and blocking twins) that every database round trip goes through."""

from __future__ import annotations

import pytest

from async_etl.core.retry import RetryPolicy
from async_etl.errors import LoadError, TransientLoadError
from async_etl.runtime import retrying as retrying_module
from async_etl.runtime.retrying import retrying, retrying_blocking

POLICY = RetryPolicy(max_retries=3, base=0.0)


class Script:
    """Fails transiently ``failures`` times, then returns 42; counts calls and resets."""

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures, self.error = failures, error
        self.calls = self.resets = 0

    def __call__(self) -> int:
        self.calls += 1
        if self.error is not None:
            raise self.error
        if self.calls <= self.failures:
            raise TransientLoadError(f"scripted: down {self.calls}")
        return 42

    def reset(self) -> None:
        self.resets += 1


def test_blocking_retries_transient_failures_resetting_before_each_new_attempt() -> None:
    """A call that fails twice succeeds on the third attempt after two resets."""
    call = Script(failures=2)
    assert retrying_blocking(call, POLICY, reset=call.reset) == 42
    assert (call.calls, call.resets) == (3, 2)


def test_blocking_gives_up_after_the_policy_allows() -> None:
    """With max_retries=3 the fourth transient failure is raised: four calls in all."""
    call = Script(failures=10)
    with pytest.raises(TransientLoadError, match="down 4"):
        retrying_blocking(call, POLICY)
    assert call.calls == 4


def test_blocking_never_retries_a_permanent_error() -> None:
    """A permanent error is raised at once, after one call and no reset."""
    call = Script(failures=0, error=LoadError("relation does not exist"))
    with pytest.raises(LoadError, match="does not exist"):
        retrying_blocking(call, POLICY, reset=call.reset)
    assert (call.calls, call.resets) == (1, 0)


async def test_async_retries_and_resets_like_the_blocking_twin() -> None:
    """The async helper retries twice with two awaited resets, then returns the value."""
    call = Script(failures=2)

    async def once() -> int:
        return call()

    async def reset() -> None:
        call.reset()

    assert await retrying(once, POLICY, reset=reset) == 42
    assert (call.calls, call.resets) == (3, 2)


async def test_async_gives_up_and_never_retries_a_permanent_error() -> None:
    """The async helper raises the last transient error after the retries, a permanent at once."""
    down, broken = Script(failures=10), Script(0, LoadError("syntax error"))

    async def once(script: Script) -> int:
        return script()

    with pytest.raises(TransientLoadError, match="down 4"):
        await retrying(lambda: once(down), POLICY)
    with pytest.raises(LoadError, match="syntax error"):
        await retrying(lambda: once(broken), POLICY)
    assert (down.calls, broken.calls) == (4, 1)


class Ordered:
    """Records the order of calls, backoff sleeps and resets; fails transiently once."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def __call__(self) -> int:
        self.events.append("call")
        if self.events.count("call") == 1:
            raise TransientLoadError("scripted: cut")
        return 42

    def reset(self) -> None:
        self.events.append("reset")

    def sleep(self, _delay: float) -> None:
        self.events.append("sleep")


def test_blocking_resets_after_the_backoff_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """The blocking twin sleeps first, then resets (reconnects) right before the next call."""
    call = Ordered()
    monkeypatch.setattr(retrying_module.time, "sleep", call.sleep)
    assert retrying_blocking(call, POLICY, reset=call.reset) == 42
    assert call.events == ["call", "sleep", "reset", "call"]


async def test_async_resets_after_the_backoff_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """The async helper sleeps first, then awaits reset right before the next call."""
    call = Ordered()

    async def once() -> int:
        return call()

    async def reset() -> None:
        call.reset()

    async def sleep(delay: float) -> None:
        call.sleep(delay)

    monkeypatch.setattr(retrying_module.anyio, "sleep", sleep)
    assert await retrying(once, POLICY, reset=reset) == 42
    assert call.events == ["call", "sleep", "reset", "call"]
