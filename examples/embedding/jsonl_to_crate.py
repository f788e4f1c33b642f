"""Example 2: an async generator over a JSON-lines file, streamed into CrateDB by a writer.

    python -m examples.embedding.jsonl_to_crate events.jsonl --url http://localhost:4200

The file is read in blocks in a worker thread (``anyio.open_file``), split into lines and
parsed; each record becomes a row of ``readings`` (created when missing).  A line that is
not a JSON object with an integer ``id`` is skipped and counted, never silently dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
import orjson

from async_etl import AsyncEtlError, ConfigError, WriterReport, open_writer

COLUMNS = {"id": "BIGINT", "sensor": "TEXT", "value": "DOUBLE PRECISION", "ts": "TIMESTAMP"}
BLOCK = 1 << 20


@dataclass(frozen=True, slots=True)
class Reading:
    """One parsed line (the writer takes dataclasses as rows, by field name)."""

    id: int
    sensor: str | None
    value: float | None
    ts: str | None


@dataclass(slots=True)
class Skipped:
    """Lines that were not readings, with the first few reasons."""

    count: int = 0
    first: tuple[str, ...] = ()


async def lines(path: str) -> AsyncIterator[bytes]:
    """The file's lines, read a block at a time off the event loop."""
    rest = b""
    async with await anyio.open_file(path, "rb") as f:
        while block := await f.read(BLOCK):
            *whole, rest = (rest + block).split(b"\n")
            for line in whole:
                yield line
    if rest:
        yield rest


async def readings(path: str, skipped: Skipped) -> AsyncIterator[Reading]:
    """The file's readings; a malformed line is counted in ``skipped`` with its number."""
    number = 0
    async for line in lines(path):
        number += 1
        if not line.strip():
            continue
        try:
            doc = orjson.loads(line)
            key = doc["id"]
            if not isinstance(key, int):
                raise TypeError("id is not an integer")
            yield Reading(key, doc.get("sensor"), doc.get("value"), doc.get("ts"))
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            skipped.count += 1
            if len(skipped.first) < 5:
                skipped.first = (*skipped.first, f"line {number}: {exc}")


async def load(path: str, url: str, *, table: str = "readings") -> tuple[WriterReport, Skipped]:
    """Stream the file into ``table``; return the writer's report and the skipped lines."""
    skipped = Skipped()
    async with open_writer(
        url, table=table, columns=COLUMNS, primary_key=["id"], batch_rows=5000
    ) as writer:
        async for reading in readings(path, skipped):
            await writer.write(reading)
    return writer.report, skipped


def main(argv: list[str] | None = None) -> int:
    """Load the file; exit status 0 when every reading landed."""
    p = argparse.ArgumentParser(description="Stream a JSON-lines file into CrateDB.")
    p.add_argument("path")
    p.add_argument("--url", default="http://localhost:4200")
    p.add_argument("--table", default="readings")
    args = p.parse_args(argv)
    try:
        report, skipped = asyncio.run(load(args.path, args.url, table=args.table))
    except AsyncEtlError as exc:  # a bad URL, an unreachable CrateDB: one line
        print(f"jsonl_to_crate: error: {exc.message}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    print(f"delivered {report.delivered}, rejected {report.rejected}, "
          f"undelivered {report.undelivered}, skipped lines {skipped.count}")  # fmt: skip
    for reason in skipped.first:
        print(f"  skipped {reason}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
