"""The writer against the raw drivers doing the same batching, and the host loop's lag.

Sections (each measured in the same run as its ceiling, after a warm-up pass):

* ``pg`` — ROWS rows of (bigint, text, float8, timestamptz) into PostgreSQL in 5,000-row
  batches, 4 in flight: ``open_writer`` vs asyncpg ``copy_records_to_table`` on a pool of 4
  (bounded by a semaphore) that releases as the writer's does (``reset=`` a coroutine that
  sends nothing: no ``RESET ALL`` query a batch, the writer's round trips), the timestamptz
  values plain aware datetimes, as a raw-driver user sends them; and the same raw COPY in one
  transaction with a ledger row (the shape of the writer's exactly-once delivery, by hand:
  the ledger row and the COPY as one simple query, ``drivers.postgres_copy.copy_after``).
  Into fresh tables;
  all connect and close inside the timing (the writer opens its pool in ``async with``).
  Each side's client CPU (``time.process_time``) is recorded.
* ``pg_no_ts`` — ``pg`` without the timestamptz column (bigint, text, float8; not run by
  default): the writer's own cost where its timestamptz encoding (``core.pg_native.wire_rows``)
  does not apply.
* ``crate`` — the same rows as ``bulk_args`` into the counting stand-in (its own process):
  ``open_writer`` with ``gzip_threshold=0`` vs a bare aiohttp poster (an orjson body a batch,
  4 in flight), and ``open_writer`` by default (bodies of 8 KiB and more gzipped, level 1) vs
  the same poster gzipping its bodies at level 1.  Same batches, same concurrency (4 in flight
  on a pool of 4 connections), the same stand-in mode; every side opens and closes its own
  session inside the timing.  Each side's client CPU (``time.process_time``) is recorded.
  The same two posters dumping with ``msgspec.json.encode`` (the encoder the writer's sink uses,
  ``core.crate_native.dump_plain``) run alternated with the others, so the writer is also
  compared with a poster whose encoder is as fast as its own (``*_msgspec_poster`` ratios); the
  two encoders' bodies are checked to decode to the same values before the timing.
* ``write_cost`` — ``write()`` into ``null://`` with batches that close on rows: µs per row.
* ``lag`` — a 1 ms ticker task on the host loop while the writer sends 5,000-row batches of
  21-column rows into PostgreSQL: how late the ticker wakes (p50 / p99 / max, ms), and the
  longest single loop step in CPU time; the same ticker alone for a second first, as the
  machine's own floor (a shared, loaded machine wakes a sleeper late by itself).
* ``lag_crate`` — the same into the counting stand-in (bodies gzipped, as by default).

Usage (``--repeat``: how many times the ``pg`` / ``crate`` sides alternate, 3 by default)::

    python benchmarks/writer.py --dsn postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import msgspec
import orjson

from async_etl import open_writer
from async_etl.drivers.postgres_copy import copy_after

OUT = Path(__file__).parent / "results" / "writer.json"
BATCH = 5000
IN_FLIGHT = 4
AT = datetime(2024, 1, 1, tzinfo=UTC)
COLS = {"id": "bigint", "name": "text", "score": "double precision", "at": "timestamptz"}
Dump = Callable[[Any], bytes]


async def no_reset(conn: asyncpg.Connection) -> None:
    """The raw pool's ``reset=``: sends nothing at release, as the writer's pool does."""


def rows(n: int, start: int = 0) -> list[tuple[Any, ...]]:
    return [(i, f"name-{i}", i / 3, AT) for i in range(start, start + n)]


async def timed(fn: Callable[[], Awaitable[None]], n: int) -> float:
    t0 = time.perf_counter()
    await fn()
    return n / (time.perf_counter() - t0)


async def alternate(
    sides: Mapping[str, Callable[[], Awaitable[None]]],
    n: int,
    repeat: int,
    after_each: Callable[[], Awaitable[None]] | None = None,
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Each side's rows/s and client CPU seconds, ``repeat`` rounds of every side in turn.

    The sides alternate, so a change of load in the machine hits all of them alike;
    ``after_each`` (e.g. emptying the tables) runs after every side.
    """
    results: dict[str, list[float]] = {name: [] for name in sides}
    cpu: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(repeat):
        for name, side in sides.items():
            c0 = time.process_time()
            results[name].append(await timed(side, n))
            cpu[name].append(time.process_time() - c0)
            if after_each is not None:
                await after_each()
    return results, cpu


async def pg_section(dsn: str, n: int, repeat: int = 3, width: int = len(COLS)) -> dict[str, Any]:
    """``pg`` (``width``: the first columns of ``COLS`` only; 3: ``pg_no_ts``, no timestamptz)."""
    cols = dict(list(COLS.items())[:width])
    data = rows(n) if width == len(COLS) else [r[:width] for r in rows(n)]
    conn = await asyncpg.connect(dsn)
    await conn.execute("DROP TABLE IF EXISTS bw_raw, bw_writer, bw_ledger")
    keyed = {k: f"{t} PRIMARY KEY" if k == "id" else t for k, t in cols.items()}
    ddl = "(" + ", ".join(f"{k} {t}" for k, t in keyed.items()) + ")"
    await conn.execute(f"CREATE TABLE bw_raw {ddl}; CREATE TABLE bw_writer {ddl}")
    await conn.execute("CREATE TABLE bw_ledger (start_id bigint PRIMARY KEY, rows int)")
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def raw(ledger: bool = False) -> None:  # connects and closes inside the timing
        # a best-effort raw driver: no reset query at release, as the writer's pool
        pool_of = asyncpg.create_pool(dsn, min_size=IN_FLIGHT, max_size=IN_FLIGHT, reset=no_reset)
        async with pool_of as pool:

            async def one(start: int) -> None:
                batch = data[start : start + BATCH]
                async with gate, pool.acquire() as c:
                    if not ledger:
                        await c.copy_records_to_table("bw_raw", records=batch, columns=list(cols))
                        return
                    # the writer's exactly-once shape, by hand: the ledger row and the COPY
                    # as one simple query (one round trip, one implicit transaction)
                    record = f"INSERT INTO bw_ledger VALUES ({start}, {len(batch)})"
                    await copy_after(c, record, "bw_raw", list(cols), records=batch)

            await asyncio.gather(*(asyncio.create_task(one(i)) for i in range(0, n, BATCH)))

    async def raw_ledgered() -> None:
        await raw(ledger=True)

    async def writer() -> None:
        async with open_writer(
            dsn, table="bw_writer", batch_rows=BATCH, max_in_flight=IN_FLIGHT, linger_ms=1000
        ) as w:
            await w.write_many(data)
        assert w.report.delivered == n, w.report

    async def clear() -> None:
        await conn.execute("TRUNCATE bw_raw, bw_writer, bw_ledger")

    await raw()  # warm-up
    await writer()
    await clear()
    sides = {"raw": raw, "raw_ledgered": raw_ledgered, "writer": writer}
    results, cpu = await alternate(sides, n, repeat, after_each=clear)
    await conn.close()
    raw_best, writer_best = max(results["raw"]), max(results["writer"])
    median = {k: statistics.median(v) for k, v in results.items()}
    return {
        "rows": n,
        "raw_copy_records_rows_per_s": [round(x) for x in results["raw"]],
        "raw_with_ledger_transaction_rows_per_s": [round(x) for x in results["raw_ledgered"]],
        "writer_rows_per_s": [round(x) for x in results["writer"]],
        "client_cpu_ms": {k: [round(x * 1000, 1) for x in v] for k, v in cpu.items()},
        "ratio_best": round(writer_best / raw_best, 3),
        "ratio_median": round(median["writer"] / median["raw"], 3),
        "ledgered_raw_ratio_median": round(median["raw_ledgered"] / median["raw"], 3),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_standin() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "async_etl.testing.crate", "--port", str(port), "--count-only"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )  # fmt: skip
    return server, f"http://127.0.0.1:{port}"


async def _ready(session: aiohttp.ClientSession, url: str) -> None:
    """Wait (10 s at most) until the stand-in at ``url`` answers."""
    for _ in range(100):
        try:
            async with session.get(url + "/"):
                return
        except aiohttp.ClientError:
            await asyncio.sleep(0.1)


def _decoded(body: bytes) -> Any:
    """A ``bulk_args`` body of ``rows()`` as values: JSON decoded, each row's ``at`` a datetime.

    orjson writes UTC as ``+00:00``, msgspec as ``Z``: the same instant, a different string.
    """
    doc = json.loads(body)
    doc["bulk_args"] = [[*r[:3], datetime.fromisoformat(r[3])] for r in doc["bulk_args"]]
    return doc


def check_same_bodies(stmt: str, data: list[tuple[Any, ...]]) -> None:
    """Raise ``RuntimeError`` unless orjson's and msgspec's bodies of ``data`` decode alike."""
    body = {"stmt": stmt, "bulk_args": data}
    if _decoded(orjson.dumps(body)) != _decoded(msgspec.json.encode(body)):
        raise RuntimeError("the orjson and msgspec posters' bodies differ")


async def crate_section(n: int, repeat: int = 3) -> dict[str, Any]:
    server, url = start_standin()
    try:
        async with aiohttp.ClientSession() as session:
            await _ready(session, url)
            ddl = (  # aware datetimes: a zoned column (the writer refuses them in an unzoned one)
                "CREATE TABLE bw (id BIGINT PRIMARY KEY, name TEXT, score DOUBLE, "
                "at TIMESTAMP WITH TIME ZONE)"
            )
            await session.post(url + "/_sql", json={"stmt": ddl})
        data = rows(n)
        stmt = "INSERT INTO bw (id, name, score, at) VALUES (?, ?, ?, ?)"
        gate = asyncio.Semaphore(IN_FLIGHT)
        check_same_bodies(stmt, data)  # the two posters send the same values

        async def raw(gzip_level: int | None = None, dump: Dump = orjson.dumps) -> None:
            # its own session, connected and closed inside the timing, as the writer's is;
            # the same pool size as the writer's (IN_FLIGHT connections)
            connector = aiohttp.TCPConnector(limit=IN_FLIGHT)
            async with aiohttp.ClientSession(connector=connector) as poster:

                async def one(batch: list[tuple[Any, ...]]) -> None:
                    async with gate:
                        body = dump({"stmt": stmt, "bulk_args": batch})
                        headers = {"Content-Type": "application/json"}
                        if gzip_level is not None:  # as the writer: level 1, in the loop
                            body = gzip.compress(body, compresslevel=gzip_level, mtime=0)
                            headers["Content-Encoding"] = "gzip"
                        async with poster.post(url + "/_sql", data=body, headers=headers) as r:
                            await r.read()
                            assert r.status == 200

                batches = [data[i : i + BATCH] for i in range(0, n, BATCH)]
                await asyncio.gather(*(one(b) for b in batches))

        async def raw_gzip() -> None:  # the poster gzipping its bodies as the writer does
            await raw(gzip_level=1)

        async def raw_msgspec() -> None:  # the plain poster, dumping as the writer's sink does
            await raw(dump=msgspec.json.encode)

        async def raw_gzip_msgspec() -> None:  # the gzipping poster, dumping as the writer does
            await raw(gzip_level=1, dump=msgspec.json.encode)

        async def writer(gzip_threshold: int | None = None) -> None:
            async with open_writer(
                url, table="bw", batch_rows=BATCH, max_in_flight=IN_FLIGHT, linger_ms=1000,
                gzip_threshold=gzip_threshold,
            ) as w:  # fmt: skip
                await w.write_many(data)
            assert w.report.delivered == n, w.report

        async def writer_plain_bodies() -> None:  # plain bodies, as the plain poster's
            await writer(gzip_threshold=0)

        await raw()
        await raw_msgspec()
        await writer()
        sides = {
            "raw": raw,
            "writer_no_gzip": writer_plain_bodies,
            "raw_msgspec": raw_msgspec,
            "raw_gzip": raw_gzip,
            "writer": writer,
            "raw_gzip_msgspec": raw_gzip_msgspec,
        }
        results, cpu = await alternate(sides, n, repeat)
    finally:
        server.terminate()
        server.wait()
    median = {k: statistics.median(v) for k, v in results.items()}
    return {
        "rows": n,
        "raw_aiohttp_rows_per_s": [round(x) for x in results["raw"]],
        "writer_no_gzip_rows_per_s": [round(x) for x in results["writer_no_gzip"]],
        "raw_aiohttp_gzip_rows_per_s": [round(x) for x in results["raw_gzip"]],
        "writer_rows_per_s": [round(x) for x in results["writer"]],
        "raw_aiohttp_msgspec_rows_per_s": [round(x) for x in results["raw_msgspec"]],
        "raw_aiohttp_gzip_msgspec_rows_per_s": [round(x) for x in results["raw_gzip_msgspec"]],
        "client_cpu_ms": {k: [round(x * 1000, 1) for x in v] for k, v in cpu.items()},
        "no_gzip_ratio_median": round(median["writer_no_gzip"] / median["raw"], 3),
        "gzip_ratio_median": round(median["writer"] / median["raw_gzip"], 3),
        "no_gzip_ratio_median_msgspec_poster": round(
            median["writer_no_gzip"] / median["raw_msgspec"], 3
        ),
        "gzip_ratio_median_msgspec_poster": round(median["writer"] / median["raw_gzip_msgspec"], 3),
        "ratio_median": round(median["writer"] / median["raw"], 3),
        "ratio_best": round(max(results["writer"]) / max(results["raw"]), 3),
    }


async def write_cost(n: int) -> dict[str, Any]:
    data = rows(n)
    best = float("inf")
    for _ in range(3):
        async with open_writer("null://", table="t", batch_rows=BATCH, linger_ms=1000) as w:
            t0 = time.perf_counter()
            for row in data:
                await w.write(row)
            best = min(best, time.perf_counter() - t0)
    return {"rows": n, "us_per_write": round(best / n * 1e6, 3)}


def _percentiles(lags: list[float]) -> dict[str, float]:
    lags = sorted(lags)
    return {
        "p50": round(lags[len(lags) // 2], 3),
        "p99": round(lags[int(len(lags) * 0.99)], 3),
        "max": round(lags[-1], 3),
    }


async def _ticking(
    body: Callable[[], Awaitable[None]],
) -> tuple[list[float], list[float], float, float]:
    """Run ``body`` beside a 1 ms ticker.

    Returns the ticker's lags (wall ms), its lags in the loop thread's CPU time (ms: the loop's
    own work in each tick beyond the 1 ms asked for, not the time the shared machine kept the
    process waiting), the longest single loop step (CPU ms) and the seconds ``body`` took.
    """
    lags: list[float] = []
    cpu_lags: list[float] = []
    done = asyncio.Event()
    longest = [0.0]
    run = asyncio.events.Handle._run

    def timed_run(handle: asyncio.events.Handle) -> None:
        t0 = time.thread_time()
        run(handle)
        longest[0] = max(longest[0], time.thread_time() - t0)

    async def ticker() -> None:
        while not done.is_set():
            t0, c0 = time.perf_counter(), time.thread_time()
            await asyncio.sleep(0.001)
            lags.append((time.perf_counter() - t0 - 0.001) * 1000)
            cpu_lags.append(max(0.0, time.thread_time() - c0 - 0.001) * 1000)

    tick = asyncio.create_task(ticker())
    asyncio.events.Handle._run = timed_run  # type: ignore[method-assign]
    try:
        t0 = time.perf_counter()
        await body()
        elapsed = time.perf_counter() - t0
    finally:
        asyncio.events.Handle._run = run  # type: ignore[method-assign]
        done.set()
        await tick
    return lags, cpu_lags, longest[0] * 1000, elapsed


async def lag_section(dsn: str, n: int) -> dict[str, Any]:
    """The host loop's lag while the writer fills ``bw_wide`` at ``dsn`` (PostgreSQL or CrateDB)."""
    cols = {f"c{i}": ("bigint" if i % 2 else "text") for i in range(20)} | {"id": "bigint"}
    if dsn.startswith("postgres"):
        conn = await asyncpg.connect(dsn)
        await conn.execute("DROP TABLE IF EXISTS bw_wide")
        await conn.close()
    wide = [
        tuple([i] + [(i * k if k % 2 else f"value-{i}-{k}-xxxxxxxxxxxx") for k in range(20)])
        for i in range(n)
    ]

    async def idle() -> None:  # the machine's own floor: the ticker alone, for a second
        await asyncio.sleep(1.0)

    async def write() -> None:
        async with open_writer(
            dsn, table="bw_wide", columns=cols, primary_key=["id"], batch_rows=BATCH,
            max_in_flight=IN_FLIGHT, linger_ms=1000,
        ) as w:  # fmt: skip
            for row in wide:
                await w.write({"id": row[0], **{f"c{k}": row[k + 1] for k in range(20)}})

    idle_lags, _, _, _ = await _ticking(idle)
    lags, cpu_lags, step, elapsed = await _ticking(write)
    return {
        "rows": n,
        "columns": 21,
        "rows_per_s": round(n / elapsed),
        "ticks": len(lags),
        "lag_ms": _percentiles(lags),
        "lag_cpu_ms": _percentiles(cpu_lags),
        "longest_loop_step_cpu_ms": round(step, 3),
        "idle_ticker_lag_ms": _percentiles(idle_lags),
    }


async def lag_crate_section(n: int) -> dict[str, Any]:
    """``lag_section`` into the counting stand-in: bodies gzipped by default, in the loop."""
    server, url = start_standin()
    try:
        async with aiohttp.ClientSession() as session:
            await _ready(session, url)
        return await lag_section(url, n)
    finally:
        server.terminate()
        server.wait()


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--only", default="pg,crate,write_cost,lag,lag_crate")
    p.add_argument("--out", type=Path, default=OUT, help="where the JSON goes")
    p.add_argument("--repeat", type=int, default=3, help="alternations of pg / crate sides")
    args = p.parse_args()
    only = set(args.only.split(","))
    out: dict[str, Any] = {"cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg()}
    if "pg" in only:
        out["pg"] = await pg_section(args.dsn, args.rows, args.repeat)
        print(json.dumps({"pg": out["pg"]}), flush=True)
    if "pg_no_ts" in only:  # the same without the timestamptz column
        out["pg_no_ts"] = await pg_section(args.dsn, args.rows, args.repeat, width=3)
        print(json.dumps({"pg_no_ts": out["pg_no_ts"]}), flush=True)
    if "crate" in only:
        out["crate"] = await crate_section(args.rows, args.repeat)
        print(json.dumps({"crate": out["crate"]}), flush=True)
    if "write_cost" in only:
        out["write_cost"] = await write_cost(args.rows)
        print(json.dumps({"write_cost": out["write_cost"]}), flush=True)
    if "lag" in only:
        out["lag"] = await lag_section(args.dsn, args.rows // 2)
        print(json.dumps({"lag": out["lag"]}), flush=True)
    if "lag_crate" in only:
        out["lag_crate"] = await lag_crate_section(args.rows // 2)
        print(json.dumps({"lag_crate": out["lag_crate"]}), flush=True)
    out["load_avg_at_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
