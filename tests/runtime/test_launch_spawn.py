"""A generator pool worker spawned from the ``async-etl`` console script collects garbage."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """\
import gc
from async_etl.cli import main  # the console script's import, as pip writes it
from async_etl.runtime.executor import new_pool

if __name__ == "__main__":
    gc.enable()  # cli.main turns collection back on before the command runs
    pool = new_pool(1)
    try:
        print("child gc", pool.submit(gc.isenabled).result(timeout=60))
    finally:
        pool.shutdown()
"""


def test_a_spawned_pool_worker_of_the_command_keeps_the_collector_on(tmp_path: Path) -> None:
    """The pool's spawned worker re-imports the package under the script's argv: gc stays on."""
    script = tmp_path / "async-etl"
    script.write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "child gc True"  # before: False, for the worker's whole life
