"""``async-etl bench``: signals before its loop runs; the generators of a killed bench."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest


def bench_cmd(out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "async_etl",
        "bench",
        "--sink",
        "null://",
        "--duration",
        "120",
        "--generators",
        "2",
        "--log-format",
        "json",
        "--json-out",
        str(out),
    ]


def wait_for_children(proc: subprocess.Popen[str], count: int) -> list[psutil.Process]:
    """Wait until ``proc`` has started ``count`` child processes; return them."""
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        children = parent.children()
        if len(children) >= count:
            return children
        time.sleep(0.02)
    raise AssertionError(f"bench started {len(parent.children())} processes, not {count}")


def ignore_sigint() -> None:
    """What a non-interactive shell does to a background job: SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def signal_once_started(cmd: list[str], signum: int) -> tuple[int, str, str]:
    """Start ``cmd`` with SIGINT ignored, send ``signum`` once it has a child process.

    Returns its exit status, stdout and stderr.
    """
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=ignore_sigint
    )
    try:
        wait_for_children(proc, 1)
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    return proc.returncode, stdout, stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_while_pool_starts_stops_gently_with_summary(signum: int, tmp_path: Path) -> None:
    """SIGINT / SIGTERM while the pool starts, SIGINT inherited ignored: exit 0, a summary."""
    out = tmp_path / "summary.json"
    # the pool is starting: the loop watches no signal yet
    returncode, stdout, stderr = signal_once_started(bench_cmd(out), signum)
    assert returncode == 0, stderr
    assert "async-etl bench" in stdout
    assert json.loads(out.read_text())["stopped_by"] == "signal"


def test_generators_exit_when_bench_is_killed(tmp_path: Path) -> None:
    """kill -9 of bench: its generator processes and the resource tracker exit by themselves."""
    proc = subprocess.Popen(
        bench_cmd(tmp_path / "summary.json"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        while '"throughput"' not in proc.stderr.readline():  # rows flow: the pool is up
            assert proc.poll() is None
        children = psutil.Process(proc.pid).children()
        assert len(children) >= 3  # two generators and the resource tracker
        proc.kill()
        proc.wait(timeout=30)
        _gone, alive = psutil.wait_procs(children, timeout=30)
    finally:
        proc.kill()
    for child in alive:
        child.kill()
    assert not alive, [c.cmdline() for c in alive]
