from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import asyncpg
import pytest

from tests.integration.test_orch_processes import job_rows, sleep_plan, start


def _stop(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "async_etl", "stop", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _orchestrate(plan: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "async_etl", "orchestrate", str(plan)],
        capture_output=True,
        text=True,
        timeout=60,
    )


async def _wait_running(dsn: str, n: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for _ in range(300):
            if await conn.fetchval("SELECT to_regclass('async_etl_plan_jobs') IS NOT NULL") and (
                await conn.fetchval(
                    "SELECT count(*) FROM async_etl_plan_jobs WHERE status = 'RUNNING'"
                )
                == n
            ):
                return
            await anyio.sleep(0.05)
    finally:
        await conn.close()
    raise AssertionError(f"{n} jobs never ran")


@pytest.mark.parametrize("by", ["name", "file"])
async def test_stop_command_stops_a_running_plan(tmp_path: Path, pg_dsn: str, by: str) -> None:
    """`async-etl stop PLAN` (by name or plan file): the orchestrator exits 3, run STOPPED."""
    plan = sleep_plan(tmp_path / "p.toml", "nightly", pg_dsn, 4, 30.0, local_max=2, global_max=2)
    proc = start(plan)
    try:
        await _wait_running(pg_dsn, 2)
        args = ["nightly", "--state", pg_dsn] if by == "name" else [str(plan)]
        stopped = _stop(*args)
        assert stopped.returncode == 0, stopped.stderr
        assert "stop requested for plan nightly" in stopped.stdout
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, err[-2000:]
    statuses = sorted(r["status"] for r in await job_rows(pg_dsn))
    assert statuses == ["PENDING", "PENDING", "STOPPED", "STOPPED"]


def test_stop_of_nothing_running_exits_1(pg_dsn: str) -> None:
    """Stopping a name that no job run or orchestrator has is exit 1 with one line."""
    proc = _stop("ghost", "--state", pg_dsn)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "async-etl: no RUNNING job run or plan named 'ghost'"


def test_stop_of_a_plan_file_not_running_words_it_as_stop_by_name(
    tmp_path: Path, pg_dsn: str
) -> None:
    """stop PLAN_FILE with no orchestrator running it: exit 1, the by-name path's one line."""
    plan = sleep_plan(tmp_path / "p.toml", "idle", pg_dsn, 1, 1.0)
    by_file, by_name = _stop(str(plan)), _stop("idle", "--state", pg_dsn)
    assert (by_file.returncode, by_name.returncode) == (1, 1), by_file.stderr + by_name.stderr
    assert by_file.stderr.strip() == "async-etl: no RUNNING job run or plan named 'idle'"
    assert by_file.stderr == by_name.stderr


async def test_a_second_orchestrator_of_a_running_plan_is_bad_input(
    tmp_path: Path, pg_dsn: str
) -> None:
    """Orchestrating a plan that already runs is exit 2 (nothing done), one line, not 1 (failed)."""
    plan = sleep_plan(tmp_path / "p.toml", "nightly", pg_dsn, 1, 30.0, local_max=1, global_max=1)
    proc = start(plan)
    try:
        await _wait_running(pg_dsn, 1)
        second = _orchestrate(plan)
        assert _stop("nightly", "--state", pg_dsn).returncode == 0
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert second.returncode == 2, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    assert lines[0].startswith("async-etl: error: plan 'nightly' is already running")
    assert lines[0].endswith("wait for it, or stop it: async-etl stop nightly")
