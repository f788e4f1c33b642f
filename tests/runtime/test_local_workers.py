"""bench --processes: shared-nothing worker processes, fed id-range units by the coordinator."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnProcess
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

from async_etl.cli import main
from async_etl.config import BenchSettings
from async_etl.core.stats import Snapshot
from async_etl.core.summary import Summary
from async_etl.errors import ConfigError, LoadError
from async_etl.runtime import local_workers
from async_etl.runtime.local_workers import (
    EXIT_WAIT_S,
    LINGERED,
    _Channel,
    portable,
    run_on_processes,
)
from async_etl.sinks import open_sink
from async_etl.sources.synthetic import Synthetic
from async_etl.testing.crate import CrateStandIn, StandInConfig
from tests.runtime.test_threads import faults_while_inserting, stored_ids

_JOINED_ON: list[threading.Thread] = []
"""The threads ``_JoinWatched.join`` was called on (in this, the parent, process)."""


class _JoinWatched(SpawnProcess):
    """A spawned process that records the thread each ``join`` runs on."""

    def join(self, timeout: float | None = None) -> None:
        """Record the calling thread, then join."""
        _JOINED_ON.append(threading.current_thread())
        super().join(timeout)


def w_close_pipe_then_linger(conn: Connection, linger_s: float) -> None:
    """A worker that closes its pipe without saying ``closed``, then takes ``linger_s`` to exit."""
    conn.close()
    time.sleep(linger_s)


def w_die_by_signal(conn: Connection, signum: int) -> None:
    """A worker killed by ``signum`` (its default action: terminate) before it says anything."""
    os.kill(os.getpid(), signum)
    time.sleep(30)


def w_send_garbage(conn: Connection) -> None:
    """A worker whose first message is bytes that do not unpickle, then waits to be killed."""
    conn.send_bytes(b"not a pickle")
    time.sleep(30)


def w_start_then_close_pipe_and_linger(
    conn: Connection, settings: BenchSettings, source: Synthetic, target: Any
) -> None:
    """A worker (``w_serve``'s signature) that starts, takes a unit, closes its pipe, lingers."""
    conn.send(("ready", os.getpid()))
    conn.recv()
    conn.close()
    time.sleep(120)


def _settings(url: str, **kw: Any) -> BenchSettings:
    base: dict[str, Any] = dict(sink=url, records=24_000, batch_size=1000, concurrency=2,
                                processes=2, report_interval=0.1, retry_base=0.001,
                                table="t")  # fmt: skip
    return BenchSettings(**(base | kw))


def _workers() -> list[psutil.Process]:
    """This test process's spawned worker processes."""
    return [
        p
        for p in psutil.Process().children(recursive=True)
        if any("spawn_main" in part for part in p.cmdline())
    ]


async def _run(settings: BenchSettings, **kw: Any) -> Summary:
    assert settings.sink is not None
    async with open_sink(settings.sink, settings) as sink:
        return await run_on_processes(settings, Synthetic(), sink, **kw)


def _once_rows_landed(action: Callable[[], None]) -> Callable[[Snapshot], None]:
    """A snapshot handler that calls ``action`` once, at the first snapshot with rows in."""
    done: list[bool] = []

    def handler(snap: Snapshot) -> None:
        if snap.rows_total > 0 and not done:
            done.append(True)
            action()

    return handler


def _gone(summary: Summary) -> None:
    pids = summary.extra["processes"]["worker_pids"].values()
    assert pids and not any(psutil.pid_exists(p) for p in pids), "a worker outlived the run"


async def test_two_workers_store_disjoint_ids_once_and_reconcile_exactly() -> None:
    """Two workers into the stand-in: ids 1..N each once, reconcile exact, both did work."""
    with CrateStandIn(StandInConfig(seed=3)) as crate:
        summary = await _run(_settings(crate.url))
        ids = stored_ids(crate.url)
    assert summary.ok, summary.problems()
    assert summary.mode == "processes x2" and summary.generators == 0
    assert sorted(ids) == list(range(1, 24_001))
    assert summary.records == summary.generated == summary.reconciled == 24_000
    figures = summary.extra["processes"]
    assert figures["workers"] == 2 and figures["units"] == 6  # 4,000-row units
    assert set(figures["rows_per_s_by_worker"]) <= {"worker-0", "worker-1"}
    assert ("worker processes (lost / units re-sent)", "2 (0 / 0)") in summary.table_rows()
    _gone(summary)


def test_stand_in_faults_through_workers_store_every_id_once() -> None:
    """Drops, 503s and per-item failures inside the workers: every id stored once."""
    rates = dict(drop_rate=0.1, fail_rate=0.1, busy_rate=0.05, item_fail_rate=0.05)
    settings = _settings("", records=6000, batch_size=100, max_retries=20)
    with CrateStandIn(StandInConfig(seed=5)) as crate:
        with faults_while_inserting(crate, 6000, **rates):
            summary = anyio.run(_run, settings.replace(sink=crate.url))
        ids = stored_ids(crate.url)
    assert summary.ok, summary.problems()
    assert sorted(ids) == list(range(1, 6001)) and summary.reconciled == 6000
    assert summary.retries > 0


async def test_a_killed_worker_has_its_units_resent_and_every_id_stored_once() -> None:
    """SIGKILL of one worker mid-run: survivors re-send its units; every id once, count exact."""
    victims: list[int] = []

    def kill_one() -> None:
        victims.append(_workers()[0].pid)
        os.kill(victims[0], signal.SIGKILL)

    settings = _settings("", records=400_000, batch_size=500)
    with CrateStandIn(StandInConfig(seed=4)) as crate:
        summary = await _run(
            settings.replace(sink=crate.url), on_snapshot=_once_rows_landed(kill_one)
        )
        ids = stored_ids(crate.url)
    figures = summary.extra["processes"]
    assert summary.ok, summary.problems()
    assert [figures["worker_pids"][n] for n in figures["lost_workers"]] == victims
    assert sorted(ids) == list(range(1, 400_001)) and summary.reconciled == 400_000
    assert summary.records == 400_000
    _gone(summary)


async def test_every_worker_killed_fails_the_run_with_one_line() -> None:
    """SIGKILL of every worker: LoadError naming the death in one line; no process left."""

    def kill_all() -> None:
        for p in _workers():
            os.kill(p.pid, signal.SIGKILL)

    settings = _settings("null://", records=None, duration=60)
    with pytest.raises(LoadError) as info:
        await _run(settings, on_snapshot=_once_rows_landed(kill_all))
    assert "every worker died" in info.value.message and "SIGKILL" in info.value.message
    assert "\n" not in info.value.message
    assert not _workers()


async def test_a_stop_finishes_the_units_out_and_counts_exactly() -> None:
    """A stop (the first signal) mid-run: no new units, those out finish, counts exact."""
    stop = anyio.Event()
    with CrateStandIn(StandInConfig(seed=6)) as crate:
        settings = _settings(crate.url, records=None, duration=60)
        summary = await _run(settings, on_snapshot=_once_rows_landed(stop.set), stop=stop)
    assert summary.stopped_by == "signal"
    assert summary.ok, summary.problems()
    assert 0 < summary.records == summary.reconciled == summary.generated
    _gone(summary)


async def test_an_abort_ends_at_once_and_leaves_no_worker() -> None:
    """An abort (the second signal): units out cancelled, workers killed, a summary still."""
    abort = anyio.Event()
    settings = _settings("null://", records=None, duration=60)
    summary = await _run(settings, on_snapshot=_once_rows_landed(abort.set), abort=abort)
    assert summary.stopped_by == "abort" and summary.records > 0
    _gone(summary)


async def test_the_live_view_reports_the_merged_counters_of_every_worker() -> None:
    """Each snapshot carries the sum of both workers' units; the last one every row."""
    snaps: list[Snapshot] = []
    summary = await _run(_settings("null://", records=200_000), on_snapshot=snaps.append)
    totals = [s.rows_total for s in snaps]
    assert totals == sorted(totals) and totals[-1] == summary.records == 200_000
    assert summary.batches == 200


def test_an_exception_that_does_not_pickle_comes_back_as_one_load_error_line() -> None:
    """A unit's exception that cannot cross the pipe becomes a LoadError naming its type."""

    class LocalError(Exception):  # a local class does not pickle
        pass

    err = portable(LocalError("broken\nsecond line"))
    assert isinstance(err, LoadError) and err.message == "LocalError: broken"
    assert portable(LoadError("kept")).args == ("kept",)


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["-j", "2"], "-j / --generators"),
        (["--mode", "threads"], "--mode threads is not supported with --processes"),
        (["--ray"], "--ray is not supported with --processes"),
        (["--rate", "1000"], "--rate / --ramp is not supported with --processes"),
    ],
)
def test_settings_the_workers_would_ignore_are_refused(
    flags: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--processes with a setting it cannot honour: exit 2, one line naming it."""
    code = main(["bench", "--sink", "null://", "--processes", "2", *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and named in err[0]


def test_more_worker_processes_than_four_per_cpu_are_refused_before_any_starts() -> None:
    """--processes / -j 100000: one line naming the limit (they spawned until the host choked)."""
    with pytest.raises(ConfigError, match=r"--processes: at most \d+ \(4 per CPU here\)"):
        BenchSettings(sink="null://", processes=100_000)
    with pytest.raises(ConfigError, match=r"--generators: at most \d+ \(4 per CPU here\)"):
        BenchSettings(sink="null://", generators=100_000)
    most = 4 * (os.cpu_count() or 1)
    assert BenchSettings(sink="null://", processes=most).processes == most
    assert BenchSettings(sink="null://", generators=most).generators == most


def test_a_killed_parent_leaves_no_worker_behind() -> None:
    """SIGKILL of a `bench --processes 2` process: its workers notice and exit on their own."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [sys.executable, "-m", "async_etl", "bench", "--sink", "null://", "--duration", "60",
           "--processes", "2", "--log-format", "json"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # progress: the workers are up and sending
            if b'"throughput"' in line:
                break
        workers = psutil.Process(proc.pid).children(recursive=True)
        assert len(workers) >= 2  # and the resource tracker spawning starts
    finally:
        proc.kill()
        proc.wait()
    _, alive = psutil.wait_procs(workers, timeout=20)
    assert not alive, "a worker outlived its killed parent"


async def test_a_worker_gone_without_a_word_is_joined_off_the_event_loop() -> None:
    """A worker whose pipe closed before it exited is joined on its reader thread, not the loop."""
    parent_end, child_end = multiprocessing.get_context("spawn").Pipe(duplex=True)
    process = _JoinWatched(target=w_close_pipe_then_linger, args=(child_end, 30.0), daemon=True)
    process.start()
    child_end.close()
    channel = _Channel("worker-x", process, parent_end)
    gaps: list[float] = []

    async def tick() -> None:
        last = time.monotonic()
        while True:
            await anyio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(tick)
            with anyio.fail_after(60):
                await channel.closed.wait()
            tg.cancel_scope.cancel()
        # the worker was still running: its exit code waited for EXIT_WAIT_S, on the reader
        # thread, which then killed it
        assert channel.gone == LINGERED
        assert process.exitcode == -signal.SIGKILL
        assert _JOINED_ON and threading.current_thread() not in _JOINED_ON
        assert max(gaps) < EXIT_WAIT_S  # the loop kept running while the reader waited
    finally:
        channel.kill()
        await anyio.to_thread.run_sync(channel.reap, 30.0)
        parent_end.close()


async def test_a_worker_that_closes_its_pipe_and_lingers_fails_the_run_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A real worker closes its pipe mid-unit and stays alive: killed, one line, none left."""
    monkeypatch.setattr(local_workers, "w_serve", w_start_then_close_pipe_and_linger)
    monkeypatch.setattr(local_workers, "CLOSE_TIMEOUT_S", 5.0)  # the old code's wait, shorter
    settings = _settings("null://", records=None, duration=60, processes=1)
    with anyio.fail_after(60), pytest.raises(LoadError) as info:
        await _run(settings)
    assert info.value.message == (f"every worker died (worker-0 {LINGERED}); the run cannot finish")
    assert not _workers()


@contextlib.asynccontextmanager
async def _gone_worker(target: Callable[..., None], *args: Any) -> AsyncIterator[_Channel]:
    """A spawned worker running ``target(conn, *args)`` and its channel, once it is gone."""
    parent_end, child_end = multiprocessing.get_context("spawn").Pipe(duplex=True)
    process = multiprocessing.get_context("spawn").Process(
        target=target, args=(child_end, *args), daemon=True
    )
    process.start()
    child_end.close()
    channel = _Channel("worker-x", process, parent_end)
    try:
        with anyio.fail_after(30):
            await channel.closed.wait()
        yield channel
    finally:
        channel.kill()
        await anyio.to_thread.run_sync(channel.reap, 30.0)
        parent_end.close()


async def test_a_worker_killed_by_a_signal_without_a_name_is_reported_not_waited_for() -> None:
    """A worker ended by a real-time signal (no ``signal.Signals`` member) is reported lost."""
    signum = signal.SIGRTMIN + 1
    async with _gone_worker(w_die_by_signal, signum) as channel:
        assert channel.gone == f"was killed (signal {signum})"


async def test_a_worker_whose_message_does_not_unpickle_is_killed_and_reported() -> None:
    """An unreadable message ends the reader: the worker is killed and reported, not waited on."""
    async with _gone_worker(w_send_garbage) as channel:
        assert channel.gone is not None
        assert channel.gone.startswith("sent a message the parent could not read (UnpicklingError")
        assert channel.gone.endswith("; killed)")
        assert channel.process.exitcode == -signal.SIGKILL
