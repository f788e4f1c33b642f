"""The scale-out driver loop over an in-process fake executor: bounds, merging, closing."""

from __future__ import annotations

from collections import Counter

import anyio

from async_etl.config import BenchSettings
from async_etl.core.stats import RunStats, Snapshot
from async_etl.core.units import Assignment
from async_etl.runtime.coordinator import coordinate
from async_etl.runtime.unit_engine import units_per_worker
from async_etl.sinks import open_sink
from async_etl.sources.synthetic import Synthetic
from async_etl.typing import Target


class FakeWorkers:
    """Workers that 'deliver' a unit by counting it, recording how many each holds at once."""

    kind = "worker"
    uvloop = False

    def __init__(self, count: int) -> None:
        self.names = tuple(f"worker-{i}" for i in range(count))
        self.held: Counter[str] = Counter()
        self.most: Counter[str] = Counter()
        self.closed_hard: bool | None = None

    async def start(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    async def run_unit(self, name: str, unit: Assignment) -> RunStats:
        self.held[name] += 1
        self.most[name] = max(self.most[name], self.held[name])
        await anyio.sleep(0.001)
        self.held[name] -= 1
        stats = RunStats(started_at=0.0)
        stats.rows, stats.batches = unit.ids.count, 1
        return stats

    def pids(self) -> list[int]:
        return []

    async def close(self, dead: frozenset[str], *, hard: bool) -> None:
        self.closed_hard = hard


async def test_no_worker_ever_holds_more_units_than_its_bound() -> None:
    """Memory stays flat: each worker holds at most units_per_worker(C) units at any time."""
    settings = BenchSettings(sink="null://", records=400_000, batch_size=1000, concurrency=3,
                             report_interval=0.01)  # fmt: skip
    fake = FakeWorkers(3)
    snaps: list[Snapshot] = []

    def make(_: Target) -> FakeWorkers:
        return fake

    async with open_sink("null://", settings) as sink:
        summary = await coordinate(
            settings, Synthetic(), sink, make, label="fake", extra={}, on_snapshot=snaps.append
        )
    assert max(fake.most.values()) == units_per_worker(3)
    assert summary.records == 400_000 and summary.mode == "fake x3"
    assert [s.rows_total for s in snaps][-1] == 400_000
    assert fake.closed_hard is False
    assert sum(summary.extra["fake"]["rows_per_s_by_worker"].values()) > 0
