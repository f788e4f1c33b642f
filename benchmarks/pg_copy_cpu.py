"""Issue 12: what one COPY of pgbench_accounts-shaped rows costs the PostgreSQL backend.

    flock /tmp/bench.lock python benchmarks/pg_copy_cpu.py [--rows 1000000] [--repeat 2]
          [--dsn postgresql://postgres@127.0.0.1:5432/DB]

One connection, one transaction, one COPY of N rows (id bigint, bid int, abalance int and an
84-character blank filler) sent in 1 MiB chunks, into a fresh table; the figure is the CPU of
that backend (``/proc/<pid>/stat``, so the server must be local) and the wall time.  Variants:

* ``binary text``: what ``bench`` sends today, the filler blank-padded by the client into a
  ``text`` column (118 bytes a row);
* ``binary char(84) empty``: the same binary COPY into ``char(84)`` with an empty filler, which
  the server pads (``bpcharrecv`` applies the column's length): 34 bytes a row;
* ``binary char(84) padded``: the padded filler into ``char(84)`` (the server checks the blanks);
* ``text char(84) empty``: pgbench's own form, text lines with an empty filler;
* ``... freeze``: TRUNCATE and ``COPY ... FREEZE`` in one transaction, as pgbench does.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import numpy as np

HZ = os.sysconf("SC_CLK_TCK")


def backend_cpu(pid: int) -> float:
    """CPU seconds (user + system) of the server process ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


def binary_payload(rows: int, filler: int, seed: int = 42) -> bytes:
    """A binary COPY stream of ``rows`` rows with a blank filler of ``filler`` bytes."""
    rng = np.random.default_rng(seed)
    fields = [("n", ">i2"), ("l1", ">i4"), ("id", ">i8"), ("l2", ">i4"), ("bid", ">i4"),
              ("l3", ">i4"), ("ab", ">i4"), ("l4", ">i4")]  # fmt: skip
    if filler:
        fields.append(("f", f"S{filler}"))
    a = np.zeros(rows, np.dtype(fields))
    a["n"], a["l1"], a["l2"], a["l3"], a["l4"] = 4, 8, 4, 4, filler
    a["id"] = np.arange(1, rows + 1)
    a["bid"] = rng.integers(1, 11, rows)
    a["ab"] = rng.integers(-5000, 5001, rows)
    if filler:
        a["f"] = b" " * filler
    return b"PGCOPY\n\xff\r\n\0" + b"\0" * 8 + a.tobytes() + b"\xff\xff"


def text_payload(rows: int, seed: int = 42) -> bytes:
    """pgbench's text lines: id, bid, abalance and an empty filler."""
    rng = np.random.default_rng(seed)
    bid = rng.integers(1, 11, rows).tolist()
    ab = rng.integers(-5000, 5001, rows).tolist()
    lines = zip(range(1, rows + 1), bid, ab, strict=True)
    return "".join(f"{i}\t{b}\t{c}\t\n" for i, b, c in lines).encode()


async def _chunks(payload: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(payload), 1 << 20):
        yield payload[i : i + (1 << 20)]


async def one(dsn: str, label: str, column: str, fmt: str, payload: bytes, freeze: bool) -> str:
    """COPY ``payload`` into a fresh table; one result line."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "DROP TABLE IF EXISTS pg_copy_cpu; CREATE TABLE pg_copy_cpu (id bigint NOT NULL, "
            f"bid int, abalance int, filler {column})"
        )
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        cpu0, wall0 = backend_cpu(pid), time.perf_counter()
        async with conn.transaction():
            if freeze:
                await conn.execute("TRUNCATE pg_copy_cpu")
            await conn.copy_to_table(
                "pg_copy_cpu", source=_chunks(payload), format=fmt, freeze=freeze or None
            )
        cpu, wall = backend_cpu(pid) - cpu0, time.perf_counter() - wall0
        await conn.execute("DROP TABLE pg_copy_cpu")
    finally:
        await conn.close()
    return f"{label:32} backend CPU {cpu:.2f} s  wall {wall:.2f} s"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/transport_bench")
    args = parser.parse_args()
    padded, empty = binary_payload(args.rows, 84), binary_payload(args.rows, 0)
    text = text_payload(args.rows)
    variants = [
        ("binary text", "text", "binary", padded, False),
        ("binary char(84) empty", "char(84)", "binary", empty, False),
        ("binary char(84) padded", "char(84)", "binary", padded, False),
        ("text char(84) empty", "char(84)", "text", text, False),
        ("binary char(84) empty freeze", "char(84)", "binary", empty, True),
        ("text char(84) empty freeze", "char(84)", "text", text, True),
    ]
    print(f"{args.rows:,} rows, load {os.getloadavg()}", flush=True)
    for _ in range(args.repeat):
        for label, column, fmt, payload, freeze in variants:
            print(await one(args.dsn, label, column, fmt, payload, freeze), flush=True)
    print(f"load {os.getloadavg()}")


if __name__ == "__main__":
    asyncio.run(main())
