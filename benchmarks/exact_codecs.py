"""What reading a source exactly costs: asyncpg's own codecs (the ceiling) vs the exact ones.

A CrateDB or Oracle target reads the source's rows through ``drivers.postgres.use_exact_codecs``
(dates and timestamps decoded in Python from their binary form, so 'infinity' is not
9999-12-31 and a BC date does not fail the read).  This times a server-side cursor over
``--rows`` rows of (int, timestamptz, date) both ways, alternating, in one process, and
prints the medians and their ratio.

    python benchmarks/exact_codecs.py --dsn postgresql://postgres@127.0.0.1/test --rows 300000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import asyncpg

from async_etl.drivers.postgres import use_exact_codecs

TABLE = "fidelity_exact_codecs_bench"


async def _read(dsn: str, exact: bool) -> float:
    conn = await asyncpg.connect(dsn)
    try:
        start = time.perf_counter()
        if exact:
            await use_exact_codecs(conn)
        async with conn.transaction():
            async for _ in conn.cursor(f"SELECT * FROM {TABLE}", prefetch=5000):
                pass
        return time.perf_counter() - start
    finally:
        await conn.close()


async def main(dsn: str, rows: int, rounds: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        await conn.execute(
            f"CREATE TABLE {TABLE} AS SELECT i AS id, now() - i * interval '1.5 second' AS ts, "
            f"current_date - (i % 1000) AS d FROM generate_series(1, {rows}) i"
        )
        await _read(dsn, False)  # warm-up: the table in shared buffers, both paths once
        await _read(dsn, True)
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(rounds):
            for exact in (False, True):
                times[exact].append(await _read(dsn, exact))
        ceiling, ours = statistics.median(times[False]), statistics.median(times[True])
        print(f"rows={rows} rounds={rounds}")
        print(f"asyncpg codecs: {ceiling:.3f} s  ({rows / ceiling:,.0f} rows/s)")
        print(f"exact codecs:   {ours:.3f} s  ({rows / ours:,.0f} rows/s)")
        print(f"ratio exact/asyncpg: {ours / ceiling:.2f}x; extra per date/time value: "
              f"{(ours - ceiling) / (2 * rows) * 1e6:.2f} us")  # fmt: skip
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1/test")
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.dsn, args.rows, args.rounds))
