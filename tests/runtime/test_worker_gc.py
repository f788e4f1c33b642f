"""Generator workers run the young gc generation rarely: a unit of small batches makes no cycles."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from async_etl.core.records import encode_batches
from async_etl.core.schema import default_schema
from async_etl.runtime.executor import GC_YOUNG_OBJECTS, fewer_gc_passes, new_pool
from async_etl.typing import Encoding, IdRange, WorkUnit

_SCHEMA = default_schema()
_ROWS = 3200  # the network scenario's unit: 32 batches of 100 rows


def _unit(k: int) -> WorkUnit:
    """The k-th CrateDB unit of 32 batches of 100 rows, default schema."""
    return WorkUnit(
        seed=42,
        ids=IdRange(1 + k * _ROWS, _ROWS),
        schema=_SCHEMA,
        encoding=Encoding("crate_json", _SCHEMA.crate_insert("t")),
        batch_size=100,
    )


@pytest.fixture
def young_passes() -> Iterator[list[int]]:
    """Young-generation gc passes started while the test runs; the thresholds are restored."""
    passes: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 0:
            passes.append(1)

    saved = gc.get_threshold()
    gc.collect()
    gc.callbacks.append(count)
    try:
        yield passes
    finally:
        gc.callbacks.remove(count)
        gc.set_threshold(*saved)


def test_default_threshold_walks_a_unit(young_passes: list[int]) -> None:
    """With CPython's threshold (700) generating 20 units runs young passes: the cost removed."""
    gc.set_threshold(700, *gc.get_threshold()[1:])
    for k in range(20):
        encode_batches(_unit(k))
    assert len(young_passes) >= 10


def test_worker_threshold_runs_no_pass_over_units(young_passes: list[int]) -> None:
    """With the workers' threshold 20 units run no young pass, the older thresholds kept."""
    middle_old = gc.get_threshold()[1:]
    fewer_gc_passes()
    assert gc.get_threshold() == (GC_YOUNG_OBJECTS, *middle_old)
    for k in range(20):
        encode_batches(_unit(k))
    assert young_passes == []


def test_units_leave_no_cycles_behind() -> None:
    """Generated units are freed by reference counting alone: gc finds nothing to collect."""
    gc.collect()
    gc.disable()
    try:
        for k in range(5):
            encode_batches(_unit(k))
        assert gc.collect() == 0
    finally:
        gc.enable()


def test_shared_nothing_worker_keeps_the_default_threshold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """w_init, which w_serve's shared-nothing workers run, leaves CPython's gc thresholds."""
    from async_etl.runtime import executor

    monkeypatch.setattr(executor.signal, "signal", lambda *_: None)
    monkeypatch.setattr(executor.threading, "Thread", _NoThread)
    monkeypatch.setattr(executor, "retain_freed_memory", lambda: True)
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    try:
        executor.w_init(1)
        assert gc.get_threshold() == (700, 10, 10)
    finally:
        gc.set_threshold(*saved)


class _NoThread:
    """A stand-in for the watchdog thread, which must not start in the test process."""

    def __init__(self, **_: object) -> None:
        """Accept the watchdog's arguments."""

    def start(self) -> None:
        """Start nothing."""


def test_pool_workers_start_with_the_threshold() -> None:
    """Every pooled generator process runs with the raised young-generation threshold."""
    pool = new_pool(1)
    try:
        assert pool.submit(gc.get_threshold).result(timeout=60)[0] == GC_YOUNG_OBJECTS
    finally:
        pool.shutdown()
