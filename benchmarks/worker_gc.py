"""A generator's CPU per 100-row batch at CPython's gc threshold and at the workers' (issue 12).

Generates the network scenario's units (CrateDB JSON, default schema, 32 batches of 100 rows)
and times each with the thread's CPU clock, alternating blocks of units at the young-generation
threshold 700 (CPython's default) and ``GC_YOUNG_OBJECTS`` (what ``w_init`` sets), first in
this process, then in one pooled generator process (``new_pool(1)``)::

    python benchmarks/worker_gc.py [--units 200] [--reps 3]

Prints one line per place, repetition and threshold: median and mean µs of CPU per batch, and
young gc passes per unit.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time

from async_etl.core.records import encode_batches
from async_etl.core.schema import default_schema
from async_etl.runtime.executor import GC_YOUNG_OBJECTS, new_pool
from async_etl.typing import Encoding, IdRange, WorkUnit

ROWS, BATCH = 3200, 100
SCHEMA = default_schema()
ENCODING = Encoding("crate_json", SCHEMA.crate_insert("bench"))


def _block(threshold: int, units: int, first: int) -> tuple[float, float, float]:
    """Median and mean µs of CPU per batch over ``units`` units, and young passes per unit."""
    gc.set_threshold(threshold, *gc.get_threshold()[1:])
    passes: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 0:
            passes.append(1)

    gc.callbacks.append(count)
    per_batch: list[float] = []
    try:
        for k in range(first, first + units):
            unit = WorkUnit(42, IdRange(1 + k * ROWS, ROWS), SCHEMA, ENCODING, BATCH)
            start = time.thread_time_ns()
            encode_batches(unit)
            per_batch.append((time.thread_time_ns() - start) / 1e3 / (ROWS // BATCH))
    finally:
        gc.callbacks.remove(count)
    return statistics.median(per_batch), statistics.fmean(per_batch), len(passes) / units


def w_compare(args: tuple[int, int]) -> list[str]:
    """Alternating blocks at both thresholds (top-level: runs in a pool worker too)."""
    units, reps = args
    saved = gc.get_threshold()
    _block(saved[0], 20, 0)  # warm-up: pools, caches
    lines = []
    for rep in range(reps):
        for threshold in (700, GC_YOUNG_OBJECTS):
            med, mean, passes = _block(threshold, units, (2 * rep + 1) * units)
            lines.append(
                f"pid {os.getpid()} rep {rep + 1} threshold {threshold:>6}: "
                f"{med:.1f} µs/batch median, {mean:.1f} mean, {passes:.2f} young passes/unit"
            )
    gc.set_threshold(*saved)
    return lines


def main() -> None:
    """Run the blocks in this process, then in a pooled generator process, and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=200)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    print("in this process:", *w_compare((args.units, args.reps)), sep="\n  ")
    pool = new_pool(1)
    try:
        lines = pool.submit(w_compare, (args.units, args.reps)).result()
    finally:
        pool.shutdown()
    print("in a pooled generator process:", *lines, sep="\n  ")


if __name__ == "__main__":
    main()
