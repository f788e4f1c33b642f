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
