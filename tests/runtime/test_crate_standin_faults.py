"""The CrateDB stand-in's fault knobs, version shapes, counting mode and ways to run it."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from async_etl.testing.crate import CrateStandIn, StandInConfig
from async_etl.testing.crate.probe import post_sql

DDL = "CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT) WITH (refresh_interval = 0)"
INSERT = "INSERT INTO t (id, v) VALUES (?, ?)"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def exists(session: aiohttp.ClientSession, crate: CrateStandIn, key: int) -> bool:
    _, body = await post_sql(session, crate.url, "SELECT id FROM t WHERE id = ?", [key])
    return bool(body["rows"])


async def test_fail_and_busy_rates_apply_nothing(session: aiohttp.ClientSession) -> None:
    """Seeded 503/5030 and 429/4290 answers happen, are counted, and write nothing."""
    async with CrateStandIn(StandInConfig(seed=3)) as crate:
        await post_sql(session, crate.url, DDL)
        crate.fail_rate, crate.busy_rate = 0.3, 0.2
        seen: dict[int, int] = {}
        ok: list[int] = []
        for i in range(60):
            status, body = await post_sql(session, crate.url, INSERT, [i, "x"])
            seen[status] = seen.get(status, 0) + 1
            if status == 200:
                ok.append(i)
            else:
                assert body["error"]["code"] == {503: 5030, 429: 4290}[status]
        crate.fail_rate = crate.busy_rate = 0.0
        assert [i for i in range(60) if await exists(session, crate, i)] == ok
    assert seen[503] == crate.counters.faults["fail"] > 0
    assert seen[429] == crate.counters.faults["busy"] > 0


async def test_faults_switch_at_runtime(session: aiohttp.ClientSession) -> None:
    """Changing a knob on the running instance takes effect on the next request."""
    async with CrateStandIn() as crate:
        assert (await post_sql(session, crate.url, "SELECT 1"))[0] == 200
        crate.fail_rate = 1.0
        assert (await post_sql(session, crate.url, "SELECT 1"))[0] == 503
        crate.fail_rate = 0.0
        assert (await post_sql(session, crate.url, "SELECT 1"))[0] == 200


async def test_item_fail_rate(session: aiohttp.ClientSession) -> None:
    """Transient per-item failures are -2 with code 5002 and leave their item unwritten."""
    async with CrateStandIn(StandInConfig(seed=11, item_fail_rate=0.1)) as crate:
        await post_sql(session, crate.url, DDL)
        _, body = await post_sql(
            session, crate.url, INSERT, bulk_args=[[i, "x"] for i in range(100)]
        )
        failed = [i for i, r in enumerate(body["results"]) if r["rowcount"] == -2]
        assert failed and len(failed) == crate.counters.faults["item_fail"]
        assert all(body["results"][i].get("error", {"code": 5002})["code"] == 5002 for i in failed)
        assert not await exists(session, crate, failed[0])
        assert crate.counters.rows_written == 100 - len(failed)


async def test_drops_before_and_after_apply(session: aiohttp.ClientSession) -> None:
    """Drops alternate: the first leaves nothing written, the second wrote its row."""
    async with CrateStandIn(StandInConfig(drop_rate=1.0)) as crate:
        crate.drop_rate = 0.0
        await post_sql(session, crate.url, DDL)
        crate.drop_rate = 1.0
        for key in (1, 2):
            with pytest.raises(aiohttp.ClientError):
                await post_sql(session, crate.url, INSERT, [key, "x"])
        crate.drop_rate = 0.0
        assert not await exists(session, crate, 1)
        assert await exists(session, crate, 2)
        assert crate.counters.faults["drop_before"] == crate.counters.faults["drop_after"] == 1


async def test_seeded_drop_rate_hits_both_variants(session: aiohttp.ClientSession) -> None:
    """With a seeded rate both drop variants occur over a run of requests."""
    async with CrateStandIn(StandInConfig(seed=5)) as crate:
        await post_sql(session, crate.url, DDL)
        crate.drop_rate = 0.4
        dropped = 0
        for i in range(30):
            try:
                await post_sql(session, crate.url, INSERT, [i, "x"])
            except aiohttp.ClientError:
                dropped += 1
        faults = crate.counters.faults
    assert dropped == faults["drop_before"] + faults["drop_after"]
    assert faults["drop_before"] > 0 and faults["drop_after"] > 0


async def test_same_seed_same_faults(session: aiohttp.ClientSession) -> None:
    """Two stand-ins with the same seed inject the same fault sequence, independently."""
    statuses: list[list[int]] = []
    config = StandInConfig(seed=42, fail_rate=0.5)
    async with CrateStandIn(config) as a, CrateStandIn(config) as b:
        for crate in (a, b):
            statuses.append(
                [(await post_sql(session, crate.url, "SELECT 1"))[0] for _ in range(20)]
            )
        assert a.counters.requests == b.counters.requests == 20
    assert statuses[0] == statuses[1] and 503 in statuses[0]


async def test_scheduled_faults_hit_the_next_bulk_requests_in_order(
    session: aiohttp.ClientSession,
) -> None:
    """schedule_faults forces each kind once, in order, on bulk requests only, at zero rates."""
    async with CrateStandIn() as crate:
        crate.schedule_faults("fail", "busy", "item_fail", "drop_before", "drop_after")
        await post_sql(session, crate.url, DDL)  # not a bulk request: takes no scheduled fault
        answers: list[object] = []
        for key in range(1, 7):
            try:
                status, body = await post_sql(session, crate.url, INSERT, bulk_args=[[key, "x"]])
                answers.append((status, body["results"][0]["rowcount"] if status == 200 else None))
            except aiohttp.ClientError:
                answers.append("dropped")
        stored = [key for key in range(1, 7) if await exists(session, crate, key)]
        faults = dict(crate.counters.faults)
        with pytest.raises(ValueError, match="'auth' is not a fault kind"):
            crate.schedule_faults("auth")
    assert answers == [(503, None), (429, None), (200, -2), "dropped", "dropped", (200, 1)]
    assert stored == [5, 6]  # dropped after applying: written, unanswered
    assert faults == dict.fromkeys(("fail", "busy", "item_fail", "drop_before", "drop_after"), 1)


async def test_latency(session: aiohttp.ClientSession) -> None:
    """latency_ms delays every request by at least that much."""
    async with CrateStandIn(StandInConfig(latency_ms=50)) as crate:
        started = time.perf_counter()
        await post_sql(session, crate.url, "SELECT 1")
    assert time.perf_counter() - started >= 0.05


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("5.9.8", {"results": [{"rowcount": -2}, {"rowcount": 1}]}),
        ("5.10.3", 409),
        ("5.10.11", "error"),
    ],
)
async def test_version_shapes(session: aiohttp.ClientSession, version: str, expected: Any) -> None:
    """Failed items: bare -2 before 5.10.0; 1-item bulk is a 409 before 5.10.11; error after."""
    async with CrateStandIn(StandInConfig(version=version)) as crate:
        await post_sql(session, crate.url, DDL)
        await post_sql(session, crate.url, INSERT, [1, "x"])
        bulk = [[1, "y"], [2, "z"]] if version == "5.9.8" else [[1, "y"]]
        status, body = await post_sql(session, crate.url, INSERT, bulk_args=bulk)
    if expected == 409:
        assert status == 409 and body["error"]["code"] == 4091
    elif expected == "error":
        assert status == 200 and body["results"][0]["error"]["code"] == 4091
    else:
        assert status == 200 and body["results"] == expected["results"]


async def test_count_only_mode(session: aiohttp.ClientSession) -> None:
    """count_only counts rows (no PK check), count(*) answers after refresh, arity is checked."""
    async with CrateStandIn(StandInConfig(count_only=True)) as crate:
        await post_sql(session, crate.url, DDL)
        bulk = [[i % 10, "x"] for i in range(1000)]
        _, body = await post_sql(session, crate.url, INSERT, bulk_args=bulk)
        assert body["results"] == [{"rowcount": 1}] * 1000
        await post_sql(session, crate.url, INSERT, [1, "x"])
        await post_sql(session, crate.url, "REFRESH TABLE t")
        _, count = await post_sql(session, crate.url, "SELECT count(*) FROM t")
        assert count["rows"] == [[1001]] and crate.counters.rows_written == 1001
        status, _ = await post_sql(session, crate.url, INSERT, bulk_args=[[1]])
        assert status == 400
        assert crate.counters.bulk_items == 1001


def test_thread_mode_from_sync_code() -> None:
    """``with CrateStandIn()`` serves from a background thread to blocking clients."""
    with CrateStandIn() as crate:
        with urllib.request.urlopen(crate.url + "/", timeout=5) as resp:
            info = json.loads(resp.read())
        request = urllib.request.Request(
            crate.url + "/_sql",
            data=b'{"stmt": "SELECT name FROM sys.cluster"}',
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            body = json.loads(resp.read())
    assert info["version"]["number"] == "5.10.11" and body["rows"] == [["standin"]]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_module_entry_point(session: aiohttp.ClientSession) -> None:
    """``python -m async_etl.testing.crate`` prints its URL, serves, and exits 0 on SIGINT."""
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "async_etl.testing.crate",
        "--port",
        str(port),
        "--seed",
        "1",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        assert line.strip().endswith(f"http://127.0.0.1:{port}")
        async with session.get(f"http://127.0.0.1:{port}/") as resp:
            assert (await resp.json())["ok"] is True
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_capacity_queues_requests_past_it(session: aiohttp.ClientSession) -> None:
    """With capacity 4, twelve concurrent requests are served four at a time: three rounds."""
    async with CrateStandIn(StandInConfig(latency_ms=50, capacity=4, growth=0)) as crate:
        started = time.perf_counter()
        await asyncio.gather(*(post_sql(session, crate.url, "SELECT 1") for _ in range(12)))
        elapsed = time.perf_counter() - started
    assert crate.counters.peak_in_service == 4
    assert elapsed >= 3 * 0.05


async def test_stall_freezes_the_server(session: aiohttp.ClientSession) -> None:
    """stall_every=3, stall_ms=300: the third request starts a stall and waits it out."""
    config = StandInConfig(capacity=8, stall_every=3, stall_ms=300)
    async with CrateStandIn(config) as crate:
        took = []
        for _ in range(3):
            started = time.perf_counter()
            await post_sql(session, crate.url, "SELECT 1")
            took.append(time.perf_counter() - started)
    assert crate.counters.stalls == 1
    assert took[2] >= 0.3


@pytest.mark.parametrize("name", ["latency_ms", "fail_rate", "growth", "stall_ms"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_config_refuses_a_setting_that_is_not_a_finite_number(name: str, value: float) -> None:
    """StandInConfig: NaN passes every range check and inf sleeps for ever, so both are refused."""
    with pytest.raises(ValueError, match=f"StandInConfig.{name} must be a finite number"):
        StandInConfig(**{name: value})


@pytest.mark.parametrize("port", ["99999", "-1"])
def test_module_entry_point_refuses_a_port_outside_0_to_65535(port: str) -> None:
    """``--port 99999``: the usage and a line naming the port, exit 2, as for other bad values."""
    # ``socket.bind``'s OverflowError was a traceback.
    done = subprocess.run(
        [sys.executable, "-m", "async_etl.testing.crate", "--port", port],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "port must be within [0, 65535]" in done.stderr.splitlines()[-1], done.stderr
