"""The CrateDB stand-in's CPU per request, for each HTTP layer (issue 12, network scenario).

Starts ``python -m async_etl.testing.crate --count-only --http LAYER`` as its own process,
posts N real bench bodies (100 rows of the default schema, the network scenario's batches)
C at a time from one aiohttp client, and reads the stand-in's CPU from ``/proc/PID/stat``
(user + system, clock ticks) before and after::

    python benchmarks/standin_cost.py [--requests 6000] [--concurrency 64] [--reps 3]

Prints one line per layer and repetition: requests, seconds, stand-in CPU s and µs / request.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time

import aiohttp
import orjson

from async_etl.core.encoders import encode_crate_json
from async_etl.core.generators import generate_columns
from async_etl.core.schema import default_schema
from async_etl.typing import IdRange


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(url: str, pid: int, requests: int, concurrency: int) -> tuple[float, float]:
    """Post ``requests`` bench bodies to ``url``; (seconds, stand-in CPU seconds)."""
    schema = default_schema()
    stmt = schema.crate_insert("bench")
    bodies = [
        encode_crate_json(stmt, schema, generate_columns(schema, IdRange(1 + 100 * i, 100), 42))
        for i in range(requests)
    ]
    limit = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        ddl = orjson.dumps({"stmt": schema.crate_create_table("bench")})
        async with session.post(url, data=ddl) as resp:
            await resp.read()

        async def post(body: bytes) -> None:
            async with limit, session.post(url, data=body) as resp:
                await resp.read()
                assert resp.status == 200

        cpu0, t0 = cpu_s(pid), time.perf_counter()
        await asyncio.gather(*(post(body) for body in bodies))
        return time.perf_counter() - t0, cpu_s(pid) - cpu0


def one_layer(http: str, requests: int, concurrency: int) -> str:
    """One layer, one repetition, in a fresh stand-in process: the result line."""
    cmd = [sys.executable, "-m", "async_etl.testing.crate", "--port", "0", "--count-only"]
    proc = subprocess.Popen([*cmd, "--http", http], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().rsplit(" ", 1)[1].strip() + "/_sql"
        wall, cpu = asyncio.run(measure(url, proc.pid, requests, concurrency))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return (
        f"{http:8s} {requests} requests in {wall:.2f} s: stand-in CPU {cpu:.2f} s = "
        f"{cpu / requests * 1e6:.0f} us/request"
    )


def main() -> None:
    """Parse the flags, run every layer ``--reps`` times, print the lines."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=6000)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args()
    for rep in range(1, args.reps + 1):
        for http in ("aiohttp", "lean"):
            line = one_layer(http, args.requests, args.concurrency)
            print(f"rep {rep} {line}", flush=True)


if __name__ == "__main__":
    main()
