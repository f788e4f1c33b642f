"""``orchestrate --ray``: a signal while Ray starts, before the plan's loop watches signals."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from tests.runtime.test_bench_signals_early import signal_once_started


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_while_ray_starts_stops_the_plan_gently(
    signum: int, pg_dsn: str, tmp_path: Path
) -> None:
    """SIGINT / SIGTERM while Ray starts (SIGINT inherited ignored): plan STOPPED, exit 3."""
    plan = tmp_path / "plan.toml"
    plan.write_text(
        f'name = "early"\nstate = "{pg_dsn}"\n'
        '[[jobs]]\nname = "nap"\nkind = "sleep"\nseconds = 60\n'
    )
    cmd = [sys.executable, "-m", "async_etl", "orchestrate", str(plan), "--ray", "--ray-actors",
           "1", "--log-format", "json"]  # fmt: skip
    # Ray's own processes are starting: the loop watches no signal yet
    returncode, stdout, stderr = signal_once_started(cmd, signum)
    assert returncode == 3, stderr
    assert "plan early: STOPPED" in stdout
    assert "Traceback" not in stderr
