"""UnitEngine, the engine each worker process (and each Ray actor) holds: its send limit."""

from __future__ import annotations

from dataclasses import replace

import pytest

from async_etl.config import BenchSettings
from async_etl.core.units import Assignment
from async_etl.runtime import unit_engine
from async_etl.runtime.unit_engine import UnitEngine
from async_etl.sinks import open_sink
from async_etl.sources.synthetic import Synthetic
from async_etl.typing import EncodedBatch, IdRange, WorkUnit


class _UnhashablePayload(bytes):
    """A payload that fails when hashed: hashing 10 MB of batch per send was the cost."""

    def __hash__(self) -> int:
        """Refuse, so that a test sees any hash of a payload."""
        raise AssertionError("a batch payload was hashed")


async def test_send_limit_never_hashes_a_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sends are counted against the limit by a token, so no batch (payload) is ever hashed."""
    real = unit_engine.w_generate_batches

    def generate(unit: WorkUnit) -> list[EncodedBatch]:
        return [replace(b, payload=_UnhashablePayload(b.payload)) for b in real(unit)]

    monkeypatch.setattr(unit_engine, "w_generate_batches", generate)
    settings = BenchSettings(
        sink="null://", records=4000, batch_size=1000, concurrency=2, generators=0
    )
    source = Synthetic()
    target = await open_sink("null://", settings).prepare(source.schema)
    engine = UnitEngine(settings, source, target)
    await engine.start()
    try:
        stats = await engine.run_unit(Assignment(0, IdRange(1, 4000)))
    finally:
        await engine.close()
    assert (stats.rows, stats.batches, stats.undelivered, stats.errors) == (4000, 4, 0, 0)
