"""The thread runner against the real CrateDB stand-in, side by side with the async runner."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import orjson
import pytest
import urllib3

from async_etl.config import BenchSettings
from async_etl.core.summary import Summary
from async_etl.errors import ConfigError
from async_etl.runtime.engine import Engine
from async_etl.runtime.sampler import ProcessSampler
from async_etl.runtime.threads import ThreadRunner, run_threads
from async_etl.sinks import open_sink
from async_etl.sinks.blocking import open_blocking_sink
from async_etl.sources.synthetic import Synthetic
from async_etl.testing.crate import CrateStandIn, StandInConfig

MODES = ["threads", "async"]


def _settings(**kw: Any) -> BenchSettings:
    base: dict[str, Any] = dict(
        records=3000, batch_size=100, concurrency=4, generators=0, table="t", retry_base=0.001
    )
    base.update(kw)
    return BenchSettings(**base)


def run_mode(mode: str, settings: BenchSettings, url: str) -> Summary:
    """One run in ``mode`` through the public runner entry points (no event loop for threads)."""
    settings = settings.replace(mode=mode)
    if mode == "threads":
        return run_threads(settings, Synthetic(), url)

    async def main() -> Summary:
        sink = open_sink(url, settings)
        sampler = ProcessSampler(url)  # as ``async-etl bench`` does
        try:
            async with Engine(settings) as engine:
                summary = await engine.run(Synthetic(), sink, on_snapshot=sampler.wrap(print))
            sampler.sample()
        finally:
            await sink.aclose()
        return dataclasses.replace(summary, extra={**summary.extra, **sampler.extra()})

    return anyio.run(main)


@contextmanager
def faults_while_inserting(crate: CrateStandIn, rows: int, **rates: float) -> Iterator[None]:
    """Inject ``rates`` from the first bulk insert until ``rows`` rows landed (not in prepare or
    the final count, which the runners do not retry)."""
    done = threading.Event()

    def control() -> None:
        while not done.is_set() and crate.counters.bulk_items == 0:
            time.sleep(0.001)
        for name, rate in rates.items():
            setattr(crate, name, rate)
        while not done.is_set() and crate.counters.rows_written < rows:
            time.sleep(0.001)
        for name in rates:
            setattr(crate, name, 0.0)

    thread = threading.Thread(target=control)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def stored_ids(url: str, table: str = "t") -> list[int]:
    """Every id in the stand-in's table, read back over HTTP after a refresh."""
    http = urllib3.PoolManager()
    out: list[int] = []
    for stmt in (f"REFRESH TABLE {table}", f"SELECT id FROM {table}"):
        body = orjson.dumps({"stmt": stmt})
        resp = http.request("POST", f"{url}/_sql", body=body)
        assert resp.status == 200, resp.data
        out = [row[0] for row in orjson.loads(resp.data)["rows"] if row]
    return out


def test_thread_runner_null_sink_counts_every_record() -> None:
    """A thread-mode null run delivers exactly --records rows and says mode=threads."""
    summary = run_threads(_settings(records=12_345, batch_size=1000), Synthetic(), "null://")
    assert summary.mode == "threads" and not summary.uvloop
    assert summary.records == summary.generated == 12_345 and summary.batches == 13
    assert summary.ok and summary.extra["threads"] >= 4


@pytest.mark.parametrize("mode", MODES)
def test_faults_deliver_every_row_exactly_once(mode: str) -> None:
    """503s, 429s, per-item failures and drops before/after apply: every id stored once."""
    rates = dict(drop_rate=0.1, fail_rate=0.1, busy_rate=0.05, item_fail_rate=0.05)
    kinds = ("fail", "busy", "item_fail", "drop_before", "drop_after")
    with CrateStandIn(StandInConfig(seed=7)) as crate:
        crate.schedule_faults(*kinds)  # each kind surely occurs, whatever the draws
        with faults_while_inserting(crate, 3000, **rates):
            summary = run_mode(mode, _settings(max_retries=20), crate.url)
        ids = stored_ids(crate.url)
        faults = dict(crate.counters.faults)
    assert summary.mode == mode and summary.ok, summary.problems()
    assert len(ids) == len(set(ids)) == 3000 == summary.records == summary.reconciled
    assert sorted(ids) == list(range(1, 3001))
    assert summary.retries > 0 and all(faults.get(kind, 0) > 0 for kind in kinds), faults


@pytest.mark.parametrize("mode", MODES)
def test_senders_hold_at_most_concurrency_connections(mode: str) -> None:
    """The sink never holds more connections than --concurrency, counted by the server."""
    with CrateStandIn(StandInConfig(latency_ms=5, count_only=True)) as crate:
        summary = run_mode(mode, _settings(records=4000, report_interval=0.05), crate.url)
        counted = crate.counters.peak_connections
    assert summary.ok
    assert 1 <= counted <= 4


def test_stop_finishes_in_flight_batches_and_accounts_for_all() -> None:
    """A stop mid-run delivers what was generated; the target holds exactly the reported rows."""
    with CrateStandIn(StandInConfig(latency_ms=10, count_only=True)) as crate:
        settings = _settings(records=None, duration=30, mode="threads")
        runner = ThreadRunner(settings)
        sink = open_blocking_sink(crate.url, settings)
        threading.Timer(0.7, runner.stop).start()
        t0 = time.perf_counter()
        try:
            summary = runner.run(Synthetic(), sink)
        finally:
            sink.close()
    assert time.perf_counter() - t0 < 10
    assert summary.stopped_by == "stop requested"
    assert summary.records == summary.generated == summary.reconciled > 0
    assert summary.ok


def test_an_abort_after_a_graceful_stop_says_abort() -> None:
    """Thread runner: stop, then abort (a second signal) ends 'stopped by abort'."""
    with CrateStandIn(StandInConfig(latency_ms=10, count_only=True)) as crate:
        settings = _settings(records=None, duration=30, mode="threads")
        runner = ThreadRunner(settings)
        sink = open_blocking_sink(crate.url, settings)

        def second_signal() -> None:
            runner.stop("signal")
            runner.abort()

        threading.Timer(0.7, second_signal).start()
        try:
            summary = runner.run(Synthetic(), sink)
        finally:
            sink.close()
    assert summary.stopped_by == "abort"
    assert summary.records == summary.reconciled > 0


def test_fatal_error_aborts_the_run_and_is_raised() -> None:
    """Bad credentials at start fail the thread runner with one line: ConfigError (exit 2)."""
    with CrateStandIn(StandInConfig(user="crate", password="right")) as crate:
        url = crate.url.replace("http://", "http://crate:wrong@")
        with pytest.raises(ConfigError) as info:
            run_threads(_settings(), Synthetic(), url)
    assert "401" in info.value.message and "wrong" not in info.value.message
