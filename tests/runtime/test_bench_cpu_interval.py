"""The summary's cpu % is measured over the load, not over the reconcile count that follows."""

from __future__ import annotations

import time

import anyio

from async_etl.config import BenchSettings
from async_etl.runtime.engine import Engine
from async_etl.runtime.threads import ThreadRunner
from async_etl.sinks.null import BlockingNullSink, NullSink
from async_etl.sources.synthetic import Synthetic
from async_etl.typing import IdRange

PAUSE = 3.0
"""Seconds the counts below take, idle: a slow reconcile over a big unindexed table."""


class _SlowCount(NullSink):
    async def count(self, ids: IdRange) -> int | None:
        await anyio.sleep(PAUSE)
        return None


class _SlowCountBlocking(BlockingNullSink):
    def count(self, ids: IdRange) -> int | None:  # type: ignore[override]
        time.sleep(PAUSE)
        return None


def _settings() -> BenchSettings:
    return BenchSettings(records=50_000, batch_size=1000, concurrency=2, generators=0)


def _ceiling_if_idle_counted(seconds: float) -> float:
    """The most cpu % a one-core load of ``seconds`` can show if the idle PAUSE is counted."""
    return 100.0 * seconds / (seconds + PAUSE)


async def test_async_cpu_percent_leaves_out_the_reconcile_wait() -> None:
    """Async runner: an idle 3 s reconcile does not dilute cpu % below the load's own use."""
    async with Engine(_settings()) as engine:
        summary = await engine.run(Synthetic(), _SlowCount())
    assert summary.cpu_percent > _ceiling_if_idle_counted(summary.seconds), summary.cpu_percent


def test_threads_cpu_percent_leaves_out_the_reconcile_wait() -> None:
    """Thread runner: an idle 3 s reconcile does not dilute cpu % below the load's own use."""
    summary = ThreadRunner(_settings()).run(Synthetic(), _SlowCountBlocking())
    assert summary.cpu_percent > _ceiling_if_idle_counted(summary.seconds), summary.cpu_percent
