"""Where one mapper chunk's time goes, statement by statement (companion of mapper_scd.py).

    /work/.venv/bin/python benchmarks/mapper_profile.py [--rows 1000000] [--chunk 50000]

In a scratch database (``aetl_mapper_prof``, dropped at the end) seeded like mapper_scd.py,
replays what ``async_etl.jobs.pg_driver`` does for one middle chunk, with the SQL of
``async_etl.core.scd_sql_pg``: staging DDL, binary COPY out of the source and into staging,
then every merge statement (rolled back, not committed) — once for the initial load (empty
target) and once for the second run (target holding the initial load, source with 10% changed,
1% deleted).  Each step is timed (median of ``--repeat`` repetitions), next to a binary COPY of
the same rows into a plain table with a primary key (the ``\\copy`` ceiling per chunk).
Prints a table; no result file.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import subprocess
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg

from async_etl.core import scd_sql_pg as pg
from async_etl.core.chunks import Chunk
from async_etl.core.scd_sql_common import chunk_values
from async_etl.core.specs import ScdSpec
from benchmarks.mapper_scd import changed_sql, seed_sql

DB = "aetl_mapper_prof"
ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
DSN = f"postgresql://postgres@127.0.0.1:5432/{DB}"
COLUMNS = [("id", "bigint"), ("name", "text"), ("email", "text"), ("city", "text"),
           ("tier", "integer"), ("updated_at", "timestamptz")]  # fmt: skip
T1, T2 = datetime(2024, 6, 1, tzinfo=UTC), datetime(2024, 6, 2, tzinfo=UTC)


def psql(sql: str) -> None:
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", DB, "-v",
                    "ON_ERROR_STOP=1", "-qAt"], input=sql, text=True, check=True,
                   capture_output=True)  # fmt: skip


async def one_chunk(conn: Any, source: str, chunk: Chunk, as_of: datetime) -> dict[str, float]:
    """Time each step of one chunk in a transaction that is rolled back at the end."""
    cols = ScdSpec(type=2, business_key=("id",), deletes="expire").resolve([n for n, _ in COLUMNS])
    names = [n for n, _ in COLUMNS]
    times: dict[str, float] = {}

    async def step(name: str, coro: Any) -> Any:
        t = time.perf_counter()
        got = await coro
        times[name] = times.get(name, 0.0) + (time.perf_counter() - t) * 1000
        return got

    lo, hi = chunk.lower[0] if chunk.lower else None, chunk.upper[0] if chunk.upper else None
    buf = io.BytesIO()
    await step("copy out (binary, source)", conn.copy_from_query(
        f"SELECT * FROM {source} WHERE id >= $1 AND id < $2 ORDER BY id", lo, hi,
        output=buf, format="binary"))  # fmt: skip
    tr = conn.transaction()
    await tr.start()
    try:
        await step("staging DDL", conn.execute(pg.staging_ddl("_stage", COLUMNS).text))
        buf.seek(0)
        await step("copy in (binary, staging)", conn.copy_to_table(
            "_stage", source=buf, columns=names, format="binary"))  # fmt: skip
        values = chunk_values(chunk, as_of)
        for st in pg.merge_statements("dw.t", "_stage", cols, ("id",), chunk):
            await step(_what(st.text), conn.execute(st.text, *st.args(values)))
    finally:
        await tr.rollback()
    plain = io.BytesIO(buf.getvalue())
    tr = conn.transaction()
    await tr.start()
    try:
        await conn.execute("CREATE TEMP TABLE IF NOT EXISTS plain (id bigint PRIMARY KEY, "
                           "name text, email text, city text, tier integer, "
                           "updated_at timestamptz)")  # fmt: skip
        await step("ceiling: copy in (binary, plain table with PK)", conn.copy_to_table(
            "plain", source=plain, columns=names, format="binary"))  # fmt: skip
    finally:
        await tr.rollback()
    return times


def _what(text: str) -> str:
    t = " ".join(text.split())
    if t.startswith("ANALYZE"):
        return "ANALYZE staging"
    if "INSERT INTO" in t:
        return "INSERT new versions (NOT EXISTS current)"
    if t.startswith("WITH x AS (DELETE") or "DELETE FROM" in t:
        return "DELETE absent, same as-of"
    if "NOT EXISTS" in t:
        return "UPDATE expire absent keys (NOT EXISTS staging)"
    if "= false FROM" in t:
        return "UPDATE expire changed (tracked distinct)"
    return "UPDATE in place (compared distinct, same as-of)"


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--chunk", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    admin = await asyncpg.connect(ADMIN)
    await admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    await admin.execute(f"CREATE DATABASE {DB}")
    try:
        psql("CREATE SCHEMA src; CREATE SCHEMA dw;")
        psql(seed_sql("src.dim_v0", args.rows))
        psql(changed_sql(args.rows))
        conn = await asyncpg.connect(DSN)
        cols = ScdSpec(type=2, business_key=("id",), deletes="expire").resolve(
            [n for n, _ in COLUMNS]
        )
        for st in pg.target_ddl("dw.t", COLUMNS, cols):
            await conn.execute(st.text)
        mid = args.rows // 2
        chunk = Chunk(index=10, lower=(mid,), upper=(mid + args.chunk,))
        runs: dict[str, list[dict[str, float]]] = {"initial": [], "second": []}
        for _ in range(args.repeat):
            runs["initial"].append(await one_chunk(conn, "src.dim_v0", chunk, T1))
        await conn.execute("INSERT INTO dw.t SELECT *, $1::timestamptz, NULL, true "
                           "FROM src.dim_v0", T1)  # fmt: skip
        await conn.execute("VACUUM ANALYZE dw.t")
        for _ in range(args.repeat):
            runs["second"].append(await one_chunk(conn, "src.dim_v1", chunk, T2))
        await conn.close()
        for run, samples in runs.items():
            print(f"\n{run} run, one chunk of {args.chunk:,} rows (median of {args.repeat}):")
            print("| step | ms | share |\n|---|---:|---:|")
            keys = list(samples[0])
            med = {k: statistics.median(s[k] for s in samples) for k in keys}
            total = sum(v for k, v in med.items() if not k.startswith("ceiling"))
            for k in keys:
                share = "" if k.startswith("ceiling") else f"{med[k] / total:.0%}"
                print(f"| {k} | {med[k]:.0f} | {share} |")
            print(f"| total (without the ceiling) | {total:.0f} | |")
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
