"""How an ``async-etl`` process ends: exit handlers run, the interpreter's teardown is skipped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from async_etl.cli import stdout_gone

ROOT = Path(__file__).resolve().parents[2]

WITH_HANDLERS = (
    "import atexit, os, runpy, sys\n"
    "class Teardown:\n"
    "    def __del__(self, write=os.write):\n"
    "        write(2, b'teardown ran\\n')\n"
    "def handler():\n"
    "    print('atexit ran', file=sys.stderr)\n"
    "    sys.late = Teardown()  # made after every freeze: a teardown frees it\n"
    "atexit.register(handler)\n"
    "sys.argv[0] = 'async-etl'\n"
    "runpy.run_module('async_etl', run_name='__main__', alter_sys=True)\n"
)
"""``python -m async_etl ARGS`` with an exit handler that leaves an object a teardown frees."""

BAD_SCHEME = ["copy", "--source", "nosuch://h/db", "--source-table", "a",
              "--target", "postgresql://u@127.0.0.1:1/db", "--target-table", "b"]  # fmt: skip


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip


def test_a_finished_command_runs_exit_handlers_and_skips_the_teardown() -> None:
    """Exit status and error line as before; ``atexit`` handlers run; no object is freed."""
    done = _run(WITH_HANDLERS, *BAD_SCHEME)
    assert done.returncode == 2
    assert done.stderr.startswith("async-etl: error: copy --source: unknown URL scheme")
    assert "atexit ran" in done.stderr
    assert "teardown ran" not in done.stderr


def test_a_command_that_leaves_a_thread_running_exits_the_usual_way() -> None:
    """With another thread alive the process ends through ``sys.exit``: that thread is joined."""
    script = WITH_HANDLERS.replace(
        "atexit.register(handler)\n",
        "atexit.register(handler)\nimport threading, time\n"
        "threading.Thread(target=lambda: (time.sleep(0.3), print('thread done', "
        "file=sys.stderr))).start()\n",
    )
    done = _run(script, *BAD_SCHEME)
    assert done.returncode == 2
    assert "thread done" in done.stderr  # a normal exit waits for it
    assert "atexit ran" in done.stderr


def test_a_closed_stdout_pipe_ends_the_command_quietly() -> None:
    """Output into a pipe whose reader has gone (``| head``): exit 141, no traceback, no output."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # closed before the child writes: its first write surely fails
    try:
        done = subprocess.run(
            [sys.executable, "-m", "async_etl", "completion", "bash"],
            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=write_end,
            stderr=subprocess.PIPE, text=True, timeout=60,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert done.returncode == 141  # 128 + SIGPIPE, as a shell reports `yes | head`'s yes
    assert done.stderr == ""


def test_stdout_gone_only_for_a_pipe_with_no_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pipe with a reader is not gone; one without one is gone, and stdout is devnull after."""
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "w") as out:
        monkeypatch.setattr(sys, "stdout", out)
        assert not stdout_gone()
        os.close(read_end)
        assert stdout_gone()
        assert Path(f"/proc/self/fd/{write_end}").samefile(os.devnull)
        out.write("x" * 100_000)  # flushed into devnull at close: no error
