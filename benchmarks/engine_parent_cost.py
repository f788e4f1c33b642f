"""The async runner's own CPU per batch in the parent, without any sink I/O (issue 12).

Runs ``Engine`` (batch 100, C = 256, two generator processes, CrateDB JSON bodies) for a few
seconds into a sink that answers every batch after 20 ms and does nothing else, and prints the
parent process's CPU (``time.process_time``: the event loop, not the generator processes)
divided by the batches sent: what the engine itself costs per batch (streams, tokens, tasks,
stats, the shared-memory hand-back), the network scenario's per-batch work minus the HTTP
client::

    python benchmarks/engine_parent_cost.py [--seconds 4]
"""

from __future__ import annotations

import argparse
import time

import anyio
import uvloop

from async_etl.config import BenchSettings
from async_etl.core.schema import Schema
from async_etl.runtime.engine import Engine
from async_etl.sources.synthetic import Synthetic
from async_etl.typing import EncodedBatch, Encoding, IdRange, SendResult, Target


class AnswersLater:
    """An ``AsyncSink`` that takes 20 ms per batch and keeps nothing."""

    async def prepare(self, schema: Schema) -> Target:
        return Target(encoding=Encoding("crate_json", schema.crate_insert("t")), start_id=1)

    async def send(self, batch: EncodedBatch, attempt: int) -> SendResult:
        await anyio.sleep(0.02)
        return SendResult(delivered=batch.row_count)

    async def count(self, ids: IdRange) -> int | None:
        return ids.count

    async def aclose(self) -> None:
        return None


async def measure(seconds: float) -> str:
    """One run: batches, the parent's µs of CPU per batch, rows/s."""
    settings = BenchSettings(
        records=None, duration=seconds, batch_size=100, concurrency=256, generators=2,
        warmup=0, report_interval=seconds * 10,
    )  # fmt: skip
    async with Engine(settings) as engine:
        cpu = time.process_time()
        summary = await engine.run(Synthetic(), AnswersLater())
        cpu = time.process_time() - cpu
    return (
        f"{summary.batches} batches, parent {cpu / summary.batches * 1e6:.1f} us/batch, "
        f"{summary.records / seconds:.0f} rows/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    print(uvloop.run(measure(parser.parse_args().seconds)))


if __name__ == "__main__":
    main()
