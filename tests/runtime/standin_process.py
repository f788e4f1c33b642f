"""A CrateDB stand-in in its own process: no GIL or event loop shared with the code measured."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def standin_process(*flags: str) -> Iterator[str]:
    """Run ``python -m async_etl.testing.crate --port 0 --count-only *flags``; yields its URL."""
    cmd = [sys.executable, "-m", "async_etl.testing.crate", "--port", "0", "--count-only"]
    proc = subprocess.Popen([*cmd, *flags], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().rsplit(" ", 1)[1].strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
