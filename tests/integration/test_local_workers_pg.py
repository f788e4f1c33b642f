"""bench --processes into PostgreSQL: exact counts, killed connections, killed workers, SIGINT."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import psutil
import pytest

from async_etl.config import BenchSettings
from async_etl.core.stats import Snapshot
from async_etl.core.summary import Summary
from async_etl.errors import AsyncEtlError, LoadError
from async_etl.runtime.local_workers import run_on_processes
from async_etl.sinks import open_sink
from async_etl.sources.synthetic import Synthetic
from async_etl.testing.pgproxy import Faults, PgProxy
from tests.integration.test_transport_pg import table_counts

ROOT = Path(__file__).resolve().parents[2]


def _settings(url: str, **kw: Any) -> BenchSettings:
    base: dict[str, Any] = dict(sink=url, records=60_000, batch_size=1000, concurrency=2,
                                processes=2, report_interval=0.1, retry_base=0.01)  # fmt: skip
    return BenchSettings(**(base | kw))


async def _run(settings: BenchSettings, **kw: Any) -> Summary:
    assert settings.sink is not None
    async with open_sink(settings.sink, settings) as sink:
        return await run_on_processes(settings, Synthetic(), sink, **kw)


def _workers() -> list[int]:
    return [
        p.pid
        for p in psutil.Process().children(recursive=True)
        if any("spawn_main" in part for part in p.cmdline())
    ]


def _kill_at_first_rows(count: int) -> tuple[list[int], Any]:
    """A snapshot handler that SIGKILLs ``count`` workers once rows have landed."""
    killed: list[int] = []

    def handler(snap: Snapshot) -> None:
        if snap.rows_total > 0 and not killed:
            killed.extend(_workers()[:count])
            for pid in killed:
                os.kill(pid, signal.SIGKILL)

    return killed, handler


async def test_two_workers_store_every_row_once_and_in_the_ledger(pg_dsn: str) -> None:
    """Two workers into PostgreSQL: the table holds the run's ids once, as the ledger says."""
    summary = await _run(_settings(pg_dsn))
    assert summary.ok, summary.problems()
    assert await table_counts(pg_dsn) == (60_000, 60_000, 60_000)
    assert summary.records == summary.reconciled == 60_000 and summary.id_range == (1, 60_001)
    assert summary.extra["processes"]["workers"] == 2


@pytest.mark.parametrize(("pattern", "nth"), [(r'^COPY "async_etl_bench"', 3), (r"^COMMIT", 4)])
async def test_a_killed_connection_in_a_worker_stores_each_id_once(
    pg_dsn: str, pattern: str, nth: int
) -> None:
    """A worker's connection killed at COPY or at COMMIT: ids 1..N once each, ledger agrees."""
    faults = Faults()
    faults.arm(pattern, nth)
    async with PgProxy(pg_dsn, faults) as proxy:
        summary = await _run(_settings(proxy.url, records=12_000))
    assert faults.kills == 1
    assert summary.ok, summary.problems()
    assert await table_counts(pg_dsn) == (12_000, 12_000, 12_000)


async def test_a_killed_worker_is_resent_and_no_row_is_lost_or_doubled(pg_dsn: str) -> None:
    """SIGKILL of one worker mid-run: its units are re-sent; table = ledger = records, once."""
    killed, handler = _kill_at_first_rows(1)
    summary = await _run(_settings(pg_dsn, records=300_000), on_snapshot=handler)
    figures = summary.extra["processes"]
    assert len(killed) == 1 and len(figures["lost_workers"]) == 1
    assert figures["worker_pids"][figures["lost_workers"][0]] == killed[0]
    assert summary.ok, summary.problems()
    assert await table_counts(pg_dsn) == (300_000, 300_000, 300_000)
    assert not _workers()


async def test_every_worker_killed_fails_loudly_and_stores_only_ledgered_rows(
    pg_dsn: str,
) -> None:
    """SIGKILL of both workers: one LoadError line; the stored rows are the ledger's, once."""
    killed, handler = _kill_at_first_rows(2)
    with pytest.raises(LoadError) as info:
        await _run(_settings(pg_dsn, records=None, duration=60), on_snapshot=handler)
    assert len(killed) == 2 and "every worker died" in info.value.message
    rows, distinct, ledger = await table_counts(pg_dsn)
    assert 0 < rows == distinct == ledger
    assert not _workers()


def test_sigint_stops_the_cli_run_with_a_summary_and_no_process_left(
    pg_dsn: str, tmp_path: Path
) -> None:
    """SIGINT to `bench --processes 2`: exit 0, stopped by signal, counts exact, workers gone."""
    out = tmp_path / "summary.json"
    cmd = [sys.executable, "-m", "async_etl", "bench", "--sink", pg_dsn, "--processes", "2",
           "-T", "120", "-b", "1000", "--log-format", "json", "--json-out", str(out)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # the first progress line with rows in
            if b'"throughput"' in line and b'"rows_total":0,' not in line:
                break
        workers = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
    summary = json.loads(out.read_text())
    assert summary["stopped_by"] == "signal" and summary["ok"]
    assert 0 < summary["records"] == summary["reconciled"] == summary["generated"]
    deadline = time.monotonic() + 10
    while any(psutil.pid_exists(p) for p in workers):
        assert time.monotonic() < deadline, "a worker outlived the run"
        time.sleep(0.1)


async def test_a_unit_failing_for_good_fails_the_run_with_its_error_in_one_line(
    pg_dsn: str,
) -> None:
    """A fatal sink error inside a worker (its table renamed away): raised here, one line."""
    landed, errors = anyio.Event(), list[AsyncEtlError]()

    async def rename_once_rows_landed() -> None:
        await landed.wait()
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute("ALTER TABLE async_etl_bench RENAME TO moved_away")
        finally:
            await conn.close()

    async def bench() -> None:
        try:
            await _run(_settings(pg_dsn, records=2_000_000), on_snapshot=_rows_in(landed))
        except AsyncEtlError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(rename_once_rows_landed)
        tg.start_soon(bench)
    assert len(errors) == 1 and "async_etl_bench" in errors[0].message
    assert "\n" not in errors[0].message
    assert not _workers()


def _rows_in(event: anyio.Event) -> Any:
    def handler(snap: Snapshot) -> None:
        if snap.rows_total > 0:
            event.set()

    return handler
