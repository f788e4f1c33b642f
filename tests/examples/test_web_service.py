"""Example 1 under load: 50 clients post 100,000 events, SIGTERM mid-load, nothing acked lost."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import asyncpg
import orjson
import pytest

from async_etl.testing.crate import CrateStandIn
from examples.embedding.web_service import parse_events

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = 50
EVENTS = 100_000
PER_POST = 20


async def _start(url: str) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "examples.embedding.web_service", "--url", url, "--port", "0",
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
    assert line.startswith("listening on "), line
    return proc, line.split()[-1]


async def _load(base: str, proc: asyncio.subprocess.Process) -> tuple[set[int], int]:
    """Post every event from 50 clients; SIGTERM at half way; return the acked ids."""
    acked: set[int] = set()
    refused = 0
    queue: asyncio.Queue[list[int]] = asyncio.Queue()
    for start in range(0, EVENTS, PER_POST):
        queue.put_nowait(list(range(start, start + PER_POST)))
    half = asyncio.Event()

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal refused
        while not queue.empty():
            ids = queue.get_nowait()
            body = orjson.dumps([{"id": i, "kind": "click", "data": {"n": i}} for i in ids])
            try:
                async with session.post(f"{base}/events", data=body) as resp:
                    if 200 <= resp.status < 300:
                        acked.update(ids)
                        if len(acked) >= EVENTS // 2:
                            half.set()
                    else:
                        assert resp.status == 503, await resp.text()
                        refused += 1
            except aiohttp.ClientError:
                refused += 1

    async def terminate() -> None:
        await half.wait()
        proc.send_signal(signal.SIGTERM)

    async with aiohttp.ClientSession() as session:
        killer = asyncio.create_task(terminate())
        await asyncio.gather(*(client(session) for _ in range(CLIENTS)))
        killer.cancel()
    return acked, refused


async def _run_service(url: str) -> tuple[set[int], int, dict[str, object]]:
    proc, base = await _start(url)
    acked, refused = await _load(base, proc)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-2000:]
    report = orjson.loads(out.decode().strip().splitlines()[-1])
    return acked, refused, report


@pytest.mark.slow
async def test_sigterm_mid_load_keeps_every_acked_event_once_in_postgres(pg_dsn: str) -> None:
    """Every 202-acknowledged event is in PostgreSQL exactly once; the service exits 0."""
    acked, refused, report = await _run_service(pg_dsn)
    assert EVENTS // 2 <= len(acked) < EVENTS and refused > 0
    conn = await asyncpg.connect(pg_dsn)
    try:
        rows = await conn.fetch("SELECT id FROM events")
    finally:
        await conn.close()
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids))
    assert acked <= set(ids)
    assert report["delivered"] == len(ids) == report["accepted"]


@pytest.mark.slow
async def test_sigterm_mid_load_keeps_every_acked_event_once_in_cratedb() -> None:
    """The same service into the CrateDB stand-in: acked events land once, none missing."""
    async with CrateStandIn() as crate:
        acked, _, report = await _run_service(crate.url)
        async with aiohttp.ClientSession() as session:
            await session.post(f"{crate.url}/_sql", json={"stmt": "REFRESH TABLE events"})
            async with session.post(
                f"{crate.url}/_sql", json={"stmt": "SELECT id FROM events LIMIT 200000"}
            ) as resp:
                ids = [r[0] for r in (await resp.json())["rows"]]
    assert len(ids) == len(set(ids))
    assert acked <= set(ids)
    assert report["delivered"] == len(ids)


def test_malformed_bodies_are_refused_with_a_reason() -> None:
    """Not JSON, a non-object event and a missing id are refused in one line each."""
    assert str(parse_events(b"{")).startswith("not JSON")
    assert parse_events(b"[1]") == "event 0: expected an object"
    assert parse_events(b'{"kind": "x"}') == "event 0: needs an integer id and a string kind"
    assert parse_events(b'{"id": 1, "kind": "x", "data": [1]}') == [(1, "x", "[1]")]
