"""Rows/s of ``w_generate`` per wire format in one process (the per-core ceiling of `bench`).

Seeded data, a warm-up pass, then the timed pass; the "generate" line (wire "none") is the
ceiling the encoders are measured against: ``ratio`` = encoded rate / generate-only rate.

    python benchmarks/bench_generate.py --rows 500000 --batch-size 5000 [--wire pg_binary]
"""

from __future__ import annotations

import argparse
import time
from typing import cast, get_args

from async_etl.core.records import w_generate
from async_etl.core.schema import default_schema
from async_etl.typing import Encoding, IdRange, WireFormat, WorkUnit

WIRES: tuple[WireFormat, ...] = get_args(WireFormat)


def run(wire: WireFormat, rows: int, batch: int, payload: int, seed: int) -> tuple[float, int]:
    """Generate + encode ``rows`` rows; return (seconds, payload bytes)."""
    schema = default_schema(payload)
    encoding = Encoding(wire, schema.crate_insert("bench") if wire == "crate_json" else "")
    size = 0
    t0 = time.perf_counter()
    for start in range(1, rows + 1, batch):
        ids = IdRange(start, min(batch, rows + 1 - start))
        size += len(w_generate(WorkUnit(seed, ids, schema, encoding)).payload)
    return time.perf_counter() - t0, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--wire", choices=WIRES, action="append", help="repeatable; default all")
    parser.add_argument("--payload-bytes", type=int, default=0)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    wires = cast("list[WireFormat]", args.wire or ["none", "pg_binary", "crate_json"])
    ceiling = None
    for wire in wires:
        run(wire, min(args.rows, 20 * args.batch_size), args.batch_size, args.payload_bytes, 1)
        secs, size = run(wire, args.rows, args.batch_size, args.payload_bytes, args.seed)
        rate = args.rows / secs
        ceiling = rate if wire == "none" else ceiling
        ratio = f"  ratio {rate / ceiling:.2f}" if ceiling and wire != "none" else ""
        print(
            f"{wire:<11} batch {args.batch_size:>6}  {rate:>12,.0f} rows/s  "
            f"{size / max(args.rows, 1):7.1f} B/row  {size / secs / 1e6:8.1f} MB/s{ratio}"
        )


if __name__ == "__main__":
    main()
