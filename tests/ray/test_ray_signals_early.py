"""``orchestrate --ray`` and ``run --ray``: a signal while Ray starts, before the loop watches."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from tests.runtime.test_bench_signals_early import signal_once_started

PLAN = 'name = "early"\nstate = "{dsn}"\n[[jobs]]\nname = "nap"\nkind = "sleep"\nseconds = 60\n'
JOB = (
    'name = "early"\n[source]\nurl = "{dsn}"\nquery = "SELECT 1 AS id"\nkey = ["id"]\n'
    '[target]\nurl = "{dsn}"\ntable = "public.early"\n[scd]\ntype = 1\n'
)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize(
    ("command", "text", "stopped"),
    [("orchestrate", PLAN, "plan early: STOPPED"), ("run", JOB, "early STOPPED")],
)
def test_signal_while_ray_starts_stops_gently(
    command: str, text: str, stopped: str, signum: int, pg_dsn: str, tmp_path: Path
) -> None:
    """SIGINT / SIGTERM while Ray starts (SIGINT inherited ignored): STOPPED, exit 3."""
    file = tmp_path / "file.toml"
    file.write_text(text.format(dsn=pg_dsn))
    cmd = [sys.executable, "-m", "async_etl", command, str(file), "--ray", "--ray-actors", "1",
           "--log-format", "json"]  # fmt: skip
    # Ray's own processes are starting: the loop watches no signal yet
    returncode, stdout, stderr = signal_once_started(cmd, signum)
    assert returncode == 3, stderr
    assert stopped in stdout + stderr
    assert "Traceback" not in stderr
