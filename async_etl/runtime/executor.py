"""The executor seam: where CPU-heavy, picklable units of work run.

``ProcessExecutor`` runs them in a process pool so the event loop only ships bytes;
``InlineExecutor`` runs them on the calling thread (``--generators 0``), which is what the
process pool is measured against.  A Ray-actor executor would implement the same ``run``.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

import anyio
import psutil

T = TypeVar("T")
R = TypeVar("R")
_WATCH_S = 0.5  # how often a worker checks that its parent is alive


def w_warm(_: int) -> int:
    """Worker warm-up: import the generation code (numpy and all) and report the worker pid."""
    import async_etl.core.records  # noqa: F401

    return os.getpid()


def w_init(parent: int) -> None:
    """Worker start: ignore SIGINT, and exit when the parent process is gone.

    A terminal Ctrl-C reaches the whole process group, and the parent alone decides how to
    stop (finish in-flight batches first).  A parent killed hard leaves no orphan generators
    behind (they would keep its shared memory segment alive).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_WATCH_S)
        os._exit(0)

    threading.Thread(target=watch, name="aetl-parent-watch", daemon=True).start()


def new_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned generator processes (``w_init``), shared by both runners."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=w_init,
        initargs=(os.getpid(),),
    )


def pool_pids(pool: ProcessPoolExecutor) -> list[int]:
    """The pids of a process pool's worker processes (every one, busy or not)."""
    processes = getattr(pool, "_processes", None) or {}  # CPython's pool keeps them by pid
    return sorted(int(pid) for pid in processes)


class InlineExecutor:
    """Runs each unit on the event loop's own thread: no parallelism, no pickling."""

    workers = 0

    async def run(self, fn: Callable[[T], R], arg: T) -> R:
        """Run ``fn(arg)`` right here."""
        return fn(arg)

    async def start(self) -> None:
        """Nothing to start."""

    async def aclose(self) -> None:
        """Nothing to stop."""

    def worker_pids(self) -> list[int]:
        """No worker processes."""
        return []


class ThreadExecutor:
    """Runs each unit on one helper thread, so the event loop keeps serving its sockets.

    A COPY stream in flight keeps being fed while the next unit generates; no parallelism
    beyond that (one thread, the GIL).
    """

    workers = 0

    def __init__(self) -> None:
        self._one: anyio.CapacityLimiter | None = None

    async def run(self, fn: Callable[[T], R], arg: T) -> R:
        """Run ``fn(arg)`` on the helper thread."""
        if self._one is None:
            self._one = anyio.CapacityLimiter(1)
        return await anyio.to_thread.run_sync(fn, arg, limiter=self._one)

    async def start(self) -> None:
        """Nothing to start (the thread is anyio's)."""

    async def aclose(self) -> None:
        """Nothing to stop."""

    def worker_pids(self) -> list[int]:
        """No worker processes."""
        return []


class ProcessExecutor:
    """Runs units in a pool of ``workers`` spawned processes (no state leaks from the parent)."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._pids: list[int] = []

    async def start(self) -> None:
        """Start every worker and import the generation code in each, before any timing."""
        self._pool = new_pool(self.workers)
        loop = asyncio.get_running_loop()
        futures = [loop.run_in_executor(self._pool, w_warm, i) for i in range(self.workers * 2)]
        await asyncio.gather(*futures)
        self._pids = pool_pids(self._pool)

    async def run(self, fn: Callable[[T], R], arg: T) -> R:
        """Run ``fn(arg)`` in a worker process."""
        assert self._pool is not None, "start() first"
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, arg)

    def worker_pids(self) -> list[int]:
        """The pids of the worker processes (for CPU and memory accounting)."""
        return [p for p in self._pids if psutil.pid_exists(p)]

    async def aclose(self) -> None:
        """Shut the pool down, waiting for workers to exit (off the loop, shielded)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(
                    pool.shutdown, True, limiter=anyio.CapacityLimiter(1)
                )
