"""An embedded engine, writer or job prints nothing unless the host configures logging."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ENGINE = """
    import asyncio
    {setup}
    from async_etl import BenchSettings, Engine, Synthetic, open_sink

    async def main() -> None:
        s = BenchSettings(sink="null://", records=20_000, generators=0, report_interval=0.02)
        async with open_sink("null://", s) as sink, Engine(s) as engine:
            await engine.run(Synthetic(), sink)

    asyncio.run(main())
"""


def _run(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "host.py"
    script.write_text(textwrap.dedent(code))
    root = Path(__file__).resolve().parents[2]
    return subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        check=False,
    )


def test_embedded_engine_prints_nothing(tmp_path: Path) -> None:
    """A host that configures no logging sees no output from an engine run."""
    done = _run(ENGINE.format(setup=""), tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert done.stderr == ""


def test_engine_events_reach_a_host_that_configures_logging(tmp_path: Path) -> None:
    """With ``logging.basicConfig`` the engine's throughput events arrive through stdlib logging."""
    setup = "import logging; logging.basicConfig(level=logging.INFO)"
    done = _run(ENGINE.format(setup=setup), tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert "INFO:async_etl.reporter:event='throughput'" in done.stderr


WRITER = """
    import asyncio
    from async_etl import open_writer

    async def main() -> None:
        async with open_writer("null://", table="t", linger_ms=1) as writer:
            for i in range(20_000):
                await writer.write((i, "x"))
        assert writer.report.delivered == 20_000

    asyncio.run(main())
"""


def test_embedded_writer_prints_nothing(tmp_path: Path) -> None:
    """A writer run in a host without logging configured writes nothing to stdout or stderr."""
    done = _run(WRITER, tmp_path)
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")


JOB = """
    import asyncio
    import asyncpg
    from async_etl import run_job

    DSN = {dsn!r}

    async def main() -> None:
        conn = await asyncpg.connect(DSN)
        await conn.execute("CREATE TABLE s (id int PRIMARY KEY, v text); "
                           "INSERT INTO s SELECT g, 'v' FROM generate_series(1, 500) g")
        await conn.close()
        result = await run_job({{
            "name": "quiet",
            "source": {{"url": DSN, "query": "SELECT id, v FROM s", "key": ["id"]}},
            "target": {{"url": DSN, "table": "t"}},
            "scd": {{"type": 1}},
        }})
        assert result.status == "SUCCEEDED", result.error

    asyncio.run(main())
"""


def test_embedded_job_prints_nothing(tmp_path: Path, pg_dsn: str) -> None:
    """A mapper job run from code in a host without logging configured prints nothing."""
    done = _run(JOB.format(dsn=pg_dsn), tmp_path)
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")


FAILED_OPEN = """
    import asyncio
    import asyncpg
    from async_etl import AsyncEtlError, RetryPolicy, open_writer
    from async_etl.testing.crate import CrateStandIn

    DSN = {dsn!r}
    QUICK = RetryPolicy(max_retries=1, base=0.01, cap=0.01)

    async def attempt(url, **kw) -> None:
        try:
            async with open_writer(url, table="t", retry=QUICK, **kw):
                pass
        except AsyncEtlError as exc:
            print(type(exc).__name__, exc)

    async def main() -> None:
        await attempt("http://127.0.0.1:1")
        async with CrateStandIn() as crate:
            await attempt(crate.url, columns={{"id": "BIGINT", "j": "json"}}, primary_key=["id"])
            await attempt(crate.url, columns={{"id": "BIGINT", "v": "TEXT"}})
        await attempt(DSN, columns={{"id": "bigint", "a": "int[]"}}, primary_key=["id"])
        conn = await asyncpg.connect(DSN)
        print("pg table left:", await conn.fetchval("SELECT to_regclass('t') IS NOT NULL"))
        await conn.close()

    asyncio.run(main())
    import gc; gc.collect()
"""


def test_a_writer_that_fails_to_open_is_silent_and_leaves_nothing(
    tmp_path: Path, pg_dsn: str
) -> None:
    """Unreachable server, unknown type, no key, unencodable type: one line, no table, no noise."""
    done = _run(FAILED_OPEN.format(dsn=pg_dsn), tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no "Unclosed client session" / connector warnings
    lines = done.stdout.splitlines()
    assert len(lines) == 5, done.stdout
    assert lines[0].startswith("TransientLoadError CrateDB http://127.0.0.1:1")
    assert lines[1].startswith("ConfigError ") and "columns['j']: 'json' is not a type" in lines[1]
    assert lines[2].startswith("ConfigError ") and "no primary key" in lines[2]
    assert lines[3].startswith("ConfigError ") and "column 'a' has type int4[]" in lines[3]
    assert lines[4] == "pg table left: False"


HOST_STRUCTLOG = """
    import asyncio
    import structlog
    from async_etl import open_writer

    structlog.get_logger("host").info("host_started", n=1)

    async def main() -> None:
        async with open_writer("null://", table="t", linger_ms=1) as writer:
            for i in range(1_000):
                await writer.write((i, "x"))

    asyncio.run(main())
    structlog.get_logger("host").info("host_done", n=2)
"""


def test_importing_async_etl_leaves_the_hosts_structlog_defaults_alone(tmp_path: Path) -> None:
    """A host on structlog's own defaults still prints its events; async_etl's stay silent."""
    done = _run(HOST_STRUCTLOG, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert len(lines) == 2, done.stdout
    assert "host_started" in lines[0] and "n=1" in lines[0], done.stdout
    assert "host_done" in lines[1] and "n=2" in lines[1], done.stdout


CANCELLED_OPEN = """
    import asyncio
    import gc
    import asyncpg
    from async_etl import open_writer, run_job

    DSN = {dsn!r}

    async def write() -> None:
        async with open_writer(DSN, table="w", columns={{"id": "bigint"}}, primary_key=["id"]):
            await asyncio.sleep(30)

    async def job() -> None:
        await run_job({{"name": "quiet", "source": {{"url": DSN, "table": "s", "key": ["id"]}},
                        "target": {{"url": DSN, "table": "t"}}, "scd": {{"type": 1}}}})

    async def cancel_after(make, loop_turns: int) -> None:
        task = asyncio.ensure_future(make())
        for _ in range(loop_turns):
            await asyncio.sleep(0)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    async def main() -> None:
        conn = await asyncpg.connect(DSN)
        await conn.execute("CREATE TABLE s (id int PRIMARY KEY, v text)")
        await conn.close()
        for make in (write, job):
            for turns in range(40):
                await cancel_after(make, turns)
        gc.collect()

    asyncio.run(main())
    gc.collect()
"""


def test_a_writer_or_job_cancelled_while_connecting_prints_nothing(
    tmp_path: Path, pg_dsn: str
) -> None:
    """Cancelled at each loop turn of its opening, a writer or job leaves no asyncio complaint."""
    done = _run(CANCELLED_OPEN.format(dsn=pg_dsn), tmp_path)
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")
