"""A backend terminated mid-COPY is retried quietly: the run succeeds, stderr has no traceback."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from async_etl.testing.pgproxy import PgProxy
from tests.integration.jobs_helpers import (
    history,
    job_toml,
    load_source,
    slow_target,
    start_cli,
    write,
)


async def _terminate_copies(dsn: str, job: str, done: asyncio.Event) -> int:
    """Terminate the job's backends while they run a COPY, 3 times or until ``done``; how many."""
    conn = await asyncpg.connect(dsn)
    killed = 0
    try:
        while not done.is_set() and killed < 3:
            killed += int(
                await conn.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name LIKE $1 AND query LIKE 'COPY %' "
                    "AND state = 'active'",
                    f"async-etl:{job}:%",
                )
            )
            await asyncio.sleep(0.005)
    finally:
        await conn.close()
    return killed


async def test_terminated_copy_prints_no_traceback(
    pg_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Backends killed mid-COPY (asyncio debug on): exit 0, no 'Traceback' or 'never retrieved'."""
    monkeypatch.setenv("PYTHONASYNCIODEBUG", "1")
    states = history(seed=21, n_keys=3000, runs=1)
    await load_source(pg_dsn, states[0])
    await slow_target(pg_dsn, "dw.cq", sleep_s=0.01)
    async with PgProxy(pg_dsn) as src:
        text = job_toml("cq", pg_dsn, "dw.cq", chunk_size=300)
        text = text.replace(f'url = "{pg_dsn}"', f'url = "{src.url}"', 1)
        proc = start_cli("run", str(write(tmp_path, "cq.toml", text)), "--log-format", "json")
        done = asyncio.Event()
        killer = asyncio.create_task(_terminate_copies(pg_dsn, "cq", done))
        try:
            out, err = await asyncio.to_thread(proc.communicate, timeout=120)
        finally:
            done.set()
            killed = await killer
    assert killed >= 1, f"no COPY was cut: {err}"
    assert proc.returncode == 0, err
    assert "SUCCEEDED" in out, out
    assert "Traceback" not in err and "never retrieved" not in err, err
