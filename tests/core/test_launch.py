"""``async_etl._launch.is_cli``: which process is the ``async-etl`` command."""

from __future__ import annotations

import pytest

from async_etl._launch import is_cli

PY = "/usr/bin/python3"


@pytest.mark.parametrize(
    ("argv0", "orig_argv"),
    [
        ("/venv/bin/async-etl", [PY, "/venv/bin/async-etl", "copy"]),
        ("-m", [PY, "-m", "async_etl", "copy"]),
        ("-m", [PY, "-masync_etl"]),
        ("-m", [PY, "-Bm", "async_etl.cli", "run"]),
        ("-m", [PY, "-X", "importtime", "-W", "error", "-m", "async_etl"]),
        ("-m", [PY, "-Ximporttime", "--check-hash-based-pycs", "never", "-m", "async_etl"]),
    ],
)
def test_the_command_is_recognised(argv0: str, orig_argv: list[str]) -> None:
    """The console script and ``python -m async_etl`` (any interpreter options) are the command."""
    assert is_cli(argv0, orig_argv)


@pytest.mark.parametrize(
    ("argv0", "orig_argv"),
    [
        ("/venv/bin/pytest", [PY, "/venv/bin/pytest", "-m", "async_etl"]),
        ("-c", [PY, "-c", "import async_etl", "-m", "async_etl"]),
        ("-m", [PY, "-m", "myapp", "-m", "async_etl"]),
        ("-m", [PY, "-X", "m", "-m", "myapp"]),
        ("-m", [PY, "-W", "-m", "-m", "myapp"]),
        ("", []),
    ],
)
def test_another_process_is_not(argv0: str, orig_argv: list[str]) -> None:
    """A library import: another script, ``-c``, or another ``-m`` module importing async_etl."""
    assert not is_cli(argv0, orig_argv)


def test_a_process_spawned_from_the_command_is_not_the_command() -> None:
    """A spawned pool worker inherits the script's argv[0], but it is not the command."""
    spawned = [PY, "-c", "from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=5, "
               "pipe_handle=7)", "--multiprocessing-fork"]  # fmt: skip
    assert not is_cli("/venv/bin/async-etl", spawned)
