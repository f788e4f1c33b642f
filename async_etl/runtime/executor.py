"""The executor seam: where CPU-heavy, picklable units of work run.

``ProcessExecutor`` runs them in a process pool so the event loop only ships bytes;
``InlineExecutor`` runs them on the calling thread (``--generators 0``), which is what the
process pool is measured against.  A Ray-actor executor would implement the same ``run``.
"""

from __future__ import annotations

import asyncio
import ctypes
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

from async_etl._launch import GC_YOUNG_OBJECTS as GC_YOUNG_OBJECTS
from async_etl._launch import fewer_gc_passes

_M_TRIM_THRESHOLD = -1  # glibc <malloc.h> mallopt parameters
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 2**20
"""Allocations below this come from the heap, not from a fresh ``mmap`` (glibc's maximum)."""
TRIM_THRESHOLD_BYTES = 256 * 2**20
"""Free memory at the top of the heap is returned to the kernel only beyond this."""

T = TypeVar("T")
R = TypeVar("R")
_WATCH_S = 0.5  # how often a worker checks that its parent is alive


def w_warm(_: int) -> int:
    """Worker warm-up: import the generation code (numpy and all) and report the worker pid."""
    import async_etl.core.records  # noqa: F401

    return os.getpid()


def retain_freed_memory() -> bool:
    """Keep freed batch buffers in this process's heap for the next batch (glibc only).

    A generator worker allocates and frees the same few batch-sized arrays (10 MB each for
    5,000 rows of 2,000 bytes) over and over.  With glibc's defaults a worker gave that memory
    back to the kernel between batches and faulted every page in again, zeroed, for the next
    one: 0.72 page faults per row and 27 % of its CPU in the kernel (RESULTS.md, "CPU-heavy
    rows in cache-sized blocks").  Fixed thresholds (``mallopt``: mmap below
    ``MMAP_THRESHOLD_BYTES`` never, trim beyond ``TRIM_THRESHOLD_BYTES`` only) keep the pages;
    the heap still stops at the worker's bounded working set.  Returns False, changing nothing,
    where the C library has no ``mallopt`` or refuses a value.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )


def w_init(parent: int) -> None:
    """Worker start: ignore SIGINT, exit when the parent process is gone, keep freed memory.

    A terminal Ctrl-C reaches the whole process group, and the parent alone decides how to
    stop (finish in-flight batches first).  A parent killed hard leaves no orphan generators
    behind (they would keep its shared memory segment alive).  Batch buffers stay in the
    worker's heap between batches (``retain_freed_memory``).  The gc thresholds are left as
    they are: a shared-nothing worker (``local_workers.w_serve``) runs an event loop and
    network sinks, which do make reference cycles; only generator pool workers raise the
    young threshold (``w_pool_init``).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    retain_freed_memory()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_WATCH_S)
        os._exit(0)

    threading.Thread(target=watch, name="aetl-parent-watch", daemon=True).start()


def w_pool_init(parent: int) -> None:
    """Generator pool worker start: ``w_init``, then ``fewer_gc_passes``.

    Only generation runs in these processes, and generation makes no reference cycles
    (``fewer_gc_passes``), so their young objects are collected less often.
    """
    w_init(parent)
    fewer_gc_passes()


def new_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned generator processes (``w_pool_init``), for both runners."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=w_pool_init,
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
        """Start every worker and import the generation code in each, before any timing.

        A start that fails or is cancelled shuts the pool down (``aclose``) before it raises:
        ``async with Engine(...)`` runs no ``__aexit__`` for an ``__aenter__`` that raised.
        """
        self._pool = new_pool(self.workers)
        loop = asyncio.get_running_loop()
        futures = [loop.run_in_executor(self._pool, w_warm, i) for i in range(self.workers * 2)]
        try:
            await asyncio.gather(*futures)
        except BaseException:
            await self.aclose()
            raise
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
