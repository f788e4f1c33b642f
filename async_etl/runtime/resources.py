"""CPU and memory accounting for a run: this process plus its generator workers."""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass

import psutil


def _cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


def peak_rss_mb() -> float:
    """Peak resident set size of the current process so far, in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


@dataclass(slots=True)
class ResourceMeter:
    """CPU % (of one core, summed over this process and ``worker_pids``) between start and stop."""

    worker_pids: list[int]
    _wall: float = 0.0
    _cpu: float = 0.0
    _own: float = 0.0
    _end: tuple[float, float, float, float] | None = None  # wall, cpu, own cpu, workers' rss

    def stop(self) -> None:
        """Take the final sample now (e.g. before the workers exit); later figures use it."""
        self._end = (
            time.perf_counter(),
            _cpu_seconds([psutil.Process().pid, *self.worker_pids]),
            _cpu_seconds([psutil.Process().pid]),
            self._rss_mb(),
        )

    def start(self) -> None:
        """Take the starting sample."""
        self._wall = time.perf_counter()
        self._cpu = _cpu_seconds([psutil.Process().pid, *self.worker_pids])
        self._own = _cpu_seconds([psutil.Process().pid])

    def own_cpu_percent(self) -> float:
        """CPU used since ``start`` by this process alone (the event loop), % of one core."""
        if self._end is not None:
            return 100.0 * (self._end[2] - self._own) / max(self._end[0] - self._wall, 1e-9)
        wall = max(time.perf_counter() - self._wall, 1e-9)
        return 100.0 * (_cpu_seconds([psutil.Process().pid]) - self._own) / wall

    def cpu_percent(self) -> float:
        """CPU used since ``start`` as a percentage of one core."""
        if self._end is not None:
            return 100.0 * (self._end[1] - self._cpu) / max(self._end[0] - self._wall, 1e-9)
        wall = max(time.perf_counter() - self._wall, 1e-9)
        used = _cpu_seconds([psutil.Process().pid, *self.worker_pids]) - self._cpu
        return 100.0 * used / wall

    def workers_rss_mb(self) -> float:
        """RSS of the worker processes, in MB: now, or when ``stop`` was called."""
        return self._end[3] if self._end is not None else self._rss_mb()

    def _rss_mb(self) -> float:
        total = 0
        for pid in self.worker_pids:
            try:
                total += psutil.Process(pid).memory_info().rss
            except psutil.Error:
                continue
        return total / (1024 * 1024)
