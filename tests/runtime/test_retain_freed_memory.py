"""Generator workers keep freed batch buffers instead of faulting fresh pages in per batch."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

_PROBE = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    from async_etl.runtime.executor import retain_freed_memory
    kept = retain_freed_memory() if sys.argv[1] == "retain" else None
    def batch():  # three 10 MB arrays alive together (random bytes, letters, body), then freed
        return [np.ones(10 * 2**20, dtype=np.uint8) for _ in range(3)]
    batch()  # the first batch faults its pages in either way
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        batch()
    print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)
_PAGES_PER_BUFFER = 10 * 2**20 // 4096


def _faults(mode: str) -> tuple[str, int]:
    """What retain_freed_memory returned and the page faults of 20 batches, in a fresh process."""
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_retained_buffers_do_not_fault_again() -> None:
    """After retain_freed_memory the next batch's buffers reuse the last one's pages."""
    kept, faults = _faults("retain")
    assert kept == "True"
    assert faults < _PAGES_PER_BUFFER  # fewer than one buffer's pages over 20 batches
    _, default_faults = _faults("default")
    assert default_faults > 4 * _PAGES_PER_BUFFER  # glibc's default trims, faults again


def test_worker_start_retains_freed_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """w_init, the start of every generator worker, keeps freed memory in its heap."""
    from async_etl.runtime import executor

    calls: list[str] = []
    monkeypatch.setattr(executor, "retain_freed_memory", lambda: calls.append("kept") or True)
    monkeypatch.setattr(executor.signal, "signal", lambda *_: None)
    monkeypatch.setattr(executor.threading, "Thread", _NoThread)
    executor.w_init(1)
    assert calls == ["kept"]


class _NoThread:
    """A stand-in for the watchdog thread, which must not start in the test process."""

    def __init__(self, **_: object) -> None:
        """Accept the watchdog's arguments."""

    def start(self) -> None:
        """Start nothing."""
