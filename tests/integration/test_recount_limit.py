"""The end-of-run recount stops at its limit; the ranges it did not count confirm nothing."""

from __future__ import annotations

import anyio

from async_etl.config import BenchSettings
from async_etl.core.reckoning import Questions
from async_etl.core.retry import RetryPolicy
from async_etl.runtime.recount import Found, count_open, count_open_blocking, recount_limit
from async_etl.sinks.postgres import PostgresSink
from async_etl.sinks.postgres_sync import BlockingPostgresSink
from async_etl.sources.synthetic import Synthetic
from async_etl.typing import IdRange
from tests.integration.jobs_helpers import fetchval

POLICY = RetryPolicy(max_retries=0)
QUESTIONS = Questions(
    unanswered=(IdRange(1, 10), IdRange(41, 20)), given_up=(IdRange(21, 5), IdRange(90, 30))
)
"""Rows 1-100 are in the table: 10 + 20 unanswered ids found, 5 + 11 given-up ones."""


async def _table(dsn: str) -> None:
    await fetchval(dsn, "INSERT INTO counted (id) SELECT generate_series(1, 100)")


async def test_the_async_recount_counts_every_range_within_its_limit_and_none_past_it(
    pg_dsn: str,
) -> None:
    """Within the limit: both sums, nothing uncounted; a limit of 0: every row uncounted."""
    sink = PostgresSink(pg_dsn, table="counted", concurrency=1)
    try:
        await sink.prepare(Synthetic(seed=7).schema)
        await _table(pg_dsn)
        whole = await count_open(sink.count, QUESTIONS, POLICY, lambda: 0.0, 60.0)
        cut = await count_open(sink.count, QUESTIONS, POLICY, lambda: 0.0, 0.0)
    finally:
        await sink.aclose()
    assert whole == Found(30, 16, 0)
    assert cut == Found(0, 0, 65)


async def test_the_blocking_recount_starts_no_count_past_its_limit(pg_dsn: str) -> None:
    """The thread runner's twin: the same sums within the limit, every row uncounted at 0."""
    sink = BlockingPostgresSink(pg_dsn, table="counted", concurrency=1)
    try:
        await anyio.to_thread.run_sync(sink.prepare, Synthetic(seed=7).schema)
        await _table(pg_dsn)
        whole = await anyio.to_thread.run_sync(
            count_open_blocking, sink.count, QUESTIONS, POLICY, lambda: 0.0, 60.0
        )
        cut = await anyio.to_thread.run_sync(
            count_open_blocking, sink.count, QUESTIONS, POLICY, lambda: 0.0, 0.0
        )
    finally:
        sink.close()
    assert whole == Found(30, 16, 0)
    assert cut == Found(0, 0, 65)


def test_the_recount_is_bounded_by_the_request_timeout_setting() -> None:
    """The limit is ``request_timeout``: one setting, no new knob."""
    assert recount_limit(BenchSettings(request_timeout=7.5)) == 7.5
