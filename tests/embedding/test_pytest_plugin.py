"""The pytest plugin gives a host project ``pg_dsn`` and ``crate_standin`` with no conftest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HOST_TEST = """
import asyncpg
from async_etl import open_writer


async def test_pg(pg_dsn):
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM pg_class WHERE relname = 'x'") == 0
        await conn.execute("CREATE TABLE x (id int)")
    finally:
        await conn.close()


async def test_pg_again_is_a_new_database(pg_dsn):
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM pg_class WHERE relname = 'x'") == 0
    finally:
        await conn.close()


async def test_crate(crate_standin):
    cols = {"id": "BIGINT", "v": "TEXT"}
    async with open_writer(crate_standin.url, table="t", columns=cols, primary_key=["id"]) as w:
        await w.write((1, "a"))
    assert w.report.delivered == 1
"""


def test_a_host_project_gets_the_fixtures_from_the_plugin(tmp_path: Path) -> None:
    """A bare project (no conftest, asyncio auto mode) runs tests on the plugin's fixtures."""
    (tmp_path / "test_host.py").write_text(HOST_TEST)
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_mode = auto\n")
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "async_etl.testing.pytest_plugin", "-p",
         "no:cacheprovider", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout
