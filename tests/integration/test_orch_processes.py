"""``async-etl orchestrate`` as real processes sharing one PostgreSQL state store."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import asyncpg
import pytest

pytestmark = pytest.mark.timeout(90)


def sleep_plan(
    path: Path,
    name: str,
    state: str,
    jobs: int,
    seconds: float,
    *,
    local_max: int = 3,
    global_max: int = 3,
    extra: str = "",
) -> Path:
    body = [
        f'name = "{name}"\nstate = "{state}"\nlocal_max = {local_max}\n'
        f'global_max = {global_max}\nnamespace = "shared"\n{extra}\n'
    ]
    body += [
        f'[[jobs]]\nkind = "sleep"\nname = "{name}_{i}"\nseconds = {seconds}\n' for i in range(jobs)
    ]
    path.write_text("".join(body))
    return path


def start(plan: Path, *args: str) -> subprocess.Popen[str]:
    cmd = [
        sys.executable,
        "-m",
        "async_etl",
        "orchestrate",
        str(plan),
        "--log-format",
        "json",
        *args,
    ]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    peak = now = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


async def wait_running(conn: asyncpg.Connection, jobs: int) -> None:
    """Wait (up to 10 s) until ``jobs`` plan jobs are RUNNING."""
    for _ in range(200):
        if await conn.fetchval("SELECT to_regclass('async_etl_plan_jobs') IS NOT NULL") and (
            await conn.fetchval("SELECT count(*) FROM async_etl_plan_jobs WHERE status = 'RUNNING'")
            == jobs
        ):
            return
        await anyio.sleep(0.05)


async def job_rows(dsn: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(
            "SELECT r.plan, j.* FROM async_etl_plan_jobs j JOIN "
            "async_etl_plan_runs r USING (plan_run_id)"
        )
    finally:
        await conn.close()


async def test_two_orchestrators_never_exceed_global_max(tmp_path: Path, pg_dsn: str) -> None:
    """Two processes sharing global_max = 3 overlap exactly 3 RUNNING intervals, never more."""
    a = start(sleep_plan(tmp_path / "a.toml", "a", pg_dsn, 6, 0.8))
    b = start(sleep_plan(tmp_path / "b.toml", "b", pg_dsn, 6, 0.8))
    for proc in (a, b):
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-2000:]
    rows = await job_rows(pg_dsn)
    assert len(rows) == 12 and {r["status"] for r in rows} == {"SUCCEEDED"}
    assert {r["plan"] for r in rows} == {"a", "b"}
    spans = [(r["started_at"].timestamp(), r["finished_at"].timestamp()) for r in rows]
    assert max_overlap(spans) == 3


async def test_sigkill_frees_the_killed_orchestrators_slots(tmp_path: Path, pg_dsn: str) -> None:
    """Slots held by a SIGKILLed orchestrator are free at once for the other one."""
    hog = start(sleep_plan(tmp_path / "hog.toml", "hog", pg_dsn, 3, 60.0))
    conn = await asyncpg.connect(pg_dsn)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            running = (
                await conn.fetchval(
                    "SELECT count(*) FROM async_etl_plan_jobs WHERE status = 'RUNNING'"
                )
                if await conn.fetchval("SELECT to_regclass('async_etl_plan_jobs') IS NOT NULL")
                else 0
            )
            if running == 3:
                break
            await anyio.sleep(0.1)
        assert running == 3
        other = start(sleep_plan(tmp_path / "other.toml", "other", pg_dsn, 3, 0.2))
        await anyio.sleep(1.5)
        started = await conn.fetchval(
            "SELECT count(*) FROM async_etl_plan_jobs j JOIN async_etl_plan_runs r "
            "USING (plan_run_id) WHERE r.plan = 'other' AND j.status <> 'PENDING'"
        )
        assert started == 0 and other.poll() is None  # every slot is the hog's
        killed_at = time.time()
        os.kill(hog.pid, signal.SIGKILL)
        hog.wait(timeout=10)
        _, err = other.communicate(timeout=30)
        assert other.returncode == 0, err[-2000:]
        assert time.time() - killed_at < 5
    finally:
        await conn.close()
        for proc in (hog,):
            if proc.poll() is None:
                proc.kill()


async def test_sigterm_stops_the_plan_resumably(tmp_path: Path, pg_dsn: str) -> None:
    """SIGTERM stops launching, stops the running jobs and exits 3 with the run STOPPED."""
    plan = sleep_plan(tmp_path / "s.toml", "s", pg_dsn, 4, 30.0, local_max=2, global_max=2)
    proc = start(plan)
    conn = await asyncpg.connect(pg_dsn)
    try:
        await wait_running(conn, 2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 3, err[-2000:]
        statuses = sorted(r["status"] for r in await job_rows(pg_dsn))
        assert statuses == ["PENDING", "PENDING", "STOPPED", "STOPPED"]
        assert await conn.fetchval("SELECT status FROM async_etl_plan_runs") == "STOPPED"
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("plan_body", "jobs", "expected"),
    [
        (
            '[[jobs]]\nkind = "sleep"\nname = "a"\ndepends_on = ["b"]\n'
            '[[jobs]]\nkind = "sleep"\nname = "b"\ndepends_on = ["a"]\n',
            {},
            "dependency cycle: a -> b -> a",
        ),
        (
            '[[jobs]]\nkind = "sleep"\nname = "a"\ndepends_on = ["ghost"]\n',
            {},
            "depends on unknown job 'ghost'",
        ),
        ('[[jobs]]\nfile = "jobs/none.toml"\n', {}, "does not exist"),
        ("local_max = 0\n", {}, "local_max: must be >= 1, got 0"),
    ],
)
def test_invalid_plans_fail_in_one_line_before_anything_runs(
    tmp_path: Path, pg_dsn: str, plan_body: str, jobs: dict[str, str], expected: str
) -> None:
    """Cycles, unknown dependencies, missing job files, local_max < 1: one line, exit 2."""
    plan = tmp_path / "bad.toml"
    plan.write_text(f'name = "bad"\nstate = "{pg_dsn}"\n{plan_body}')
    proc = subprocess.run(
        [sys.executable, "-m", "async_etl", "orchestrate", str(plan)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and lines[0].startswith("async-etl: error:")
    assert not asyncio.run(has_tables(pg_dsn))  # nothing ran: not even the state tables


async def has_tables(dsn: str) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return bool(await conn.fetchval("SELECT to_regclass('async_etl_plan_runs') IS NOT NULL"))
    finally:
        await conn.close()


def test_local_max_flag_below_one_is_rejected(tmp_path: Path, pg_dsn: str) -> None:
    """--local-max 0 is a one-line error with exit 2."""
    plan = sleep_plan(tmp_path / "ok.toml", "ok", pg_dsn, 1, 0.0)
    proc = subprocess.run(
        [sys.executable, "-m", "async_etl", "orchestrate", str(plan), "--local-max", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2 and "--local-max: must be >= 1" in proc.stderr


async def test_a_second_signal_cancels_at_once_in_one_line(tmp_path: Path, pg_dsn: str) -> None:
    """SIGTERM, SIGINT: exit 3 in one line, no traceback; the jobs and the plan run STOPPED."""
    plan = sleep_plan(tmp_path / "s2.toml", "s2", pg_dsn, 2, 30.0, local_max=2, global_max=2)
    proc = start(plan)
    conn = await asyncpg.connect(pg_dsn)
    try:
        await wait_running(conn, 2)
        proc.send_signal(signal.SIGTERM)  # two kinds: two of one kind may arrive as one
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 3, err[-2000:]
        assert "Traceback" not in err
        assert "async-etl: plan s2 cancelled by a second signal" in err
        statuses = [r["status"] for r in await job_rows(pg_dsn)]
        assert statuses == ["STOPPED", "STOPPED"]
        assert await conn.fetchval("SELECT status FROM async_etl_plan_runs") == "STOPPED"
    finally:
        await conn.close()
