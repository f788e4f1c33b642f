"""The stand-in's lean HTTP layer answers, counts and injects faults as the aiohttp layer does.

The protocol, fault, counting-mode and engine (exactly-once under faults) suites of the
aiohttp layer are collected again here with every ``CrateStandIn`` built on the lean layer
(``StandInConfig.http = "lean"``), on both event loops; the tests below add what only the
lean layer has: its own HTTP parsing, and answers equal to the aiohttp layer's byte for byte.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import orjson
import pytest
import urllib3

from async_etl.core.encoders import encode_crate_json
from async_etl.core.generators import generate_columns
from async_etl.core.schema import default_schema
from async_etl.testing.crate import CrateStandIn, StandInConfig
from async_etl.testing.crate.probe import post_sql
from async_etl.typing import IdRange
from tests.runtime.standin_process import standin_process
from tests.runtime.test_bench_crate import *  # noqa: F403
from tests.runtime.test_crate_standin import *  # noqa: F403
from tests.runtime.test_crate_standin_countonly import *  # noqa: F403
from tests.runtime.test_crate_standin_faults import *  # noqa: F403

pytestmark = pytest.mark.both_loops
_ORIGINAL_INIT = CrateStandIn.__init__


@pytest.fixture(autouse=True)
def _lean_layer(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def init(
        self: CrateStandIn,
        config: StandInConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        config = config or StandInConfig()
        _ORIGINAL_INIT(self, dataclasses.replace(config, http="lean"), clock=clock)

    monkeypatch.setattr(CrateStandIn, "__init__", init)
    yield


def _bench_bodies() -> list[bytes]:
    """Real bench bodies (100 rows of the default schema) for a counting stand-in."""
    schema = default_schema()
    stmt = schema.crate_insert("bench")
    return [
        encode_crate_json(stmt, schema, generate_columns(schema, IdRange(start, 100), 42))
        for start in (1, 101, 201)
    ]


_EXCHANGES: list[bytes] = [
    orjson.dumps({"stmt": default_schema().crate_create_table("bench")}),
    *_bench_bodies(),
    b"not json",
    orjson.dumps({"stmt": "SELECT 1", "nope": 1}),
    orjson.dumps({"stmt": "INSERT INTO bench (id) VALUES (?)", "args": [1], "bulk_args": [[2]]}),
    orjson.dumps({"stmt": "INSERT INTO bench (id) VALUES (?)", "bulk_args": [[1, 2], "x"]}),
    orjson.dumps({"stmt": "REFRESH TABLE bench"}),
    orjson.dumps(
        {"stmt": "SELECT count(*) FROM bench WHERE id >= ? AND id < ?", "args": [50, 250]}
    ),
    orjson.dumps({"stmt": "SELECT count(*) FROM bench"}),
]


def _standin(config: StandInConfig) -> CrateStandIn:
    """A stand-in on exactly ``config``'s layer (the autouse fixture would force lean)."""
    crate = CrateStandIn.__new__(CrateStandIn)
    _ORIGINAL_INIT(crate, config)
    return crate


def _answers(http: str) -> tuple[list[tuple[int, Any]], dict[str, object]]:
    """Every exchange's status and body (without ``duration``) and the counters after them."""
    answers: list[tuple[int, Any]] = []
    with _standin(StandInConfig(count_only=True, http=http)) as crate:
        pool = urllib3.HTTPConnectionPool("127.0.0.1", crate.port, maxsize=1)
        for body in _EXCHANGES:
            resp = pool.request("POST", "/_sql", body=body, retries=False)
            doc = orjson.loads(resp.data)
            doc.pop("duration", None)
            answers.append((resp.status, doc))
        pool.close()
        return answers, crate.counters.snapshot()


def test_lean_answers_as_the_aiohttp_layer_does() -> None:
    """Bench bodies, errors and counts: same statuses, bodies and counters on both layers."""
    lean, lean_counters = _answers("lean")
    full, full_counters = _answers("aiohttp")
    assert lean == full
    assert lean_counters == full_counters
    assert [status for status, _ in lean] == [200] * 4 + [400] * 4 + [200] * 3
    assert lean[-2][1]["rows"] == [[200]] and lean[-1][1]["rows"] == [[300]]


def _raw(port: int, data: bytes) -> bytes:
    """Send ``data`` on one connection and read until the server closes it (5 s at most)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _post(body: bytes, *, headers: str = "", close: bool = False) -> bytes:
    extra = "Connection: close\r\n" if close else ""
    head = f"POST /_sql HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{headers}{extra}\r\n"
    return head.encode() + body


def test_lean_http_keeps_alive_answers_pipelined_requests_in_order_and_inflates() -> None:
    """Three requests in one write (one gzipped) get three answers, in order, on one connection."""
    select = orjson.dumps({"stmt": "SELECT ? AS v", "args": [1]})
    second = orjson.dumps({"stmt": "SELECT ? AS v", "args": [2]})
    third = gzip.compress(orjson.dumps({"stmt": "SELECT ? AS v", "args": [3]}))
    with _standin(StandInConfig(http="lean")) as crate:
        data = (
            _post(select)
            + _post(second)
            + _post(third, headers="Content-Encoding: gzip\r\n", close=True)
        )
        answer = _raw(crate.port, data)
        assert crate.counters.requests == 3 and crate.counters.peak_connections == 1
    assert answer.count(b"HTTP/1.1 200 OK\r\n") == 3
    values = [int(part.split(b"]]")[0]) for part in answer.split(b'"rows":[[')[1:]]
    assert values == [1, 2, 3]


@pytest.mark.parametrize("http", ["aiohttp", "lean"])
def test_an_exception_in_the_request_logic_is_a_500_on_both_layers(
    http: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sql_reply`` raising: a 500 that closes the connection (the lean layer never answered)."""

    async def broken(self: CrateStandIn, exchange: object) -> None:
        raise RuntimeError("request logic broke")

    monkeypatch.setattr(CrateStandIn, "sql_reply", broken)
    with _standin(StandInConfig(http=http)) as crate:
        pool = urllib3.HTTPConnectionPool("127.0.0.1", crate.port, maxsize=1, timeout=10)
        resp = pool.request("POST", "/_sql", body=b'{"stmt": "SELECT 1"}', retries=False)
        pool.close()
    assert (resp.status, resp.headers.get("Connection")) == (500, "close")


@pytest.mark.parametrize("http", ["aiohttp", "lean"])
def test_a_body_inflating_past_max_body_bytes_is_a_413_on_both_layers(http: str) -> None:
    """A 2 KB gzip body that inflates to 2 MB against a 1 MiB limit: 413, as aiohttp says."""
    body = gzip.compress(orjson.dumps({"stmt": "SELECT 1", "args": ["x" * 2_000_000]}))
    with _standin(StandInConfig(http=http, max_body_bytes=1024 * 1024)) as crate:
        pool = urllib3.HTTPConnectionPool("127.0.0.1", crate.port, maxsize=1)
        resp = pool.request(
            "POST", "/_sql", body=body, headers={"Content-Encoding": "gzip"}, retries=False
        )
        pool.close()
    assert len(body) < 1024 * 1024 and resp.status == 413


@pytest.mark.parametrize(
    ("http", "keep_alive"),
    [("aiohttp", ""), ("lean", ""), ("lean", "Connection: keep-alive\r\n")],
)
def test_an_http_1_0_request_is_answered_and_its_connection_closed(
    http: str, keep_alive: str
) -> None:
    """An HTTP/1.0 request without keep-alive is answered, then closed (lean: always closed)."""
    # The lean layer kept it open, and a client reading its answer to the end waited forever
    # (aiohttp keeps a keep-alive one open, saying so in its answer; lean does not keep HTTP/1.0).
    with _standin(StandInConfig(http=http)) as crate:
        answer = _raw(crate.port, f"GET / HTTP/1.0\r\n{keep_alive}\r\n".encode())
    assert answer.startswith((b"HTTP/1.1 200 OK\r\n", b"HTTP/1.0 200 OK\r\n"))
    assert b'"cluster_name"' in answer


@pytest.mark.parametrize("http", ["aiohttp", "lean"])
@pytest.mark.parametrize("value", ["close", "Close", "keep-alive, close", "close, TE"])
def test_connection_close_in_a_list_closes_after_the_answer_on_both_layers(
    http: str, value: str
) -> None:
    """``Connection`` is a token list: ``close`` anywhere in it closes after the answer."""
    # The lean layer compared the whole value with ``close``, so ``close, TE`` kept the
    # connection open and a client reading the answer to its end waited for ever.
    with _standin(StandInConfig(http=http)) as crate:
        answer = _raw(
            crate.port, f"GET / HTTP/1.1\r\nHost: x\r\nConnection: {value}\r\n\r\n".encode()
        )
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b'"cluster_name"' in answer


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", b"404"),
        (b"GET /_sql HTTP/1.1\r\nHost: x\r\n\r\n", b"405"),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", b"405"),
        (b"POST /_sql HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", b"411"),
        (b"POST /_sql HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n", b"413"),
        (b"POST /_sql HTTP/1.1\r\nContent-Length: x\r\n\r\n", b"400"),
        (b"POST /_sql HTTP/1.1\r\nContent-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabc", b"400"),
        (
            b"POST /_sql HTTP/1.1\r\nContent-Encoding: gzip\r\nContent-Length: 10\r\n\r\n"
            + gzip.compress(b"{}")[:10],
            b"400",
        ),
        (b"BROKEN\r\n\r\n", b"400"),
        (b"POST /_sql HTTP/1.1\r\nX: " + b"a" * 70_000, b"431"),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", b"431"),
        (b"POST /_sql HTTP/1.1\r\nContent-Length: 2_0\r\n\r\n" + b'{"stmt": "SELECT 1"}', b"400"),
        (b"POST /_sql HTTP/1.1\r\nContent-Length: +20\r\n\r\n" + b'{"stmt": "SELECT 1"}', b"400"),
        (
            b"POST /_sql HTTP/1.1\r\nContent-Length: 20\r\nContent-Length: 0\r\n\r\n"
            + b'{"stmt": "SELECT 1"}',
            b"400",
        ),
        (b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\nHost: x\n\n", b"400"),
        (b"GET / HTTP/1.1\r\nHost: x\rY: z\r\n\r\n", b"400"),
        (b"GET / FOO/9\r\nHost: x\r\n\r\n", b"400"),
    ],
    ids=[
        "404",
        "405-sql",
        "405-root",
        "chunked",
        "too-large",
        "bad-length",
        "bad-gzip",
        "truncated-gzip",
        "bad-line",
        "huge-head",
        "huge-complete-head",
        "length-underscore",
        "length-plus",
        "length-twice-differing",
        "header-without-colon",
        "space-before-colon",
        "bare-lf-head",
        "bare-cr-in-head",
        "not-http",
    ],
)
def test_lean_http_refuses_what_it_does_not_serve(request_bytes: bytes, status: bytes) -> None:
    """Unknown paths, methods; chunked, oversized, malformed or undecodable requests: a status."""
    with _standin(StandInConfig(http="lean", max_body_bytes=1024 * 1024)) as crate:
        answer = _raw(crate.port, request_bytes)
    assert answer.startswith(b"HTTP/1.1 " + status + b" ")


_SMUGGLING_SHAPES = {
    "length-past-64-bits": b"Content-Length: 18446744073709551616\r\n",
    "length-5000-digits": b"Content-Length: " + b"9" * 5000 + b"\r\n",
    "length-nbsp": b"Content-Length: \xa020\r\n",
    "length-vertical-tab": b"Content-Length: 20\x0b\r\n",
    "te-identity": b"Transfer-Encoding: identity\r\nContent-Length: 20\r\n",
    "te-chunked-then-identity": (
        b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\nContent-Length: 20\r\n"
    ),
    "te-chunked-gzip": b"Transfer-Encoding: chunked, gzip\r\nContent-Length: 20\r\n",
    "nul-in-value": b"X-A: a\x00b\r\nContent-Length: 20\r\n",
    "control-in-value": b"X-A: a\x01b\r\nContent-Length: 20\r\n",
}


@pytest.mark.parametrize("http", ["aiohttp", "lean"])
@pytest.mark.parametrize("fields", _SMUGGLING_SHAPES.values(), ids=_SMUGGLING_SHAPES.keys())
def test_a_head_that_frames_its_body_ambiguously_is_a_400_on_both_layers(
    http: str, fields: bytes
) -> None:
    """Lengths and codings other parsers read otherwise: a 400 that serves nothing, as aiohttp."""
    # The lean layer served them (a length of 5,000 digits raised in ``int`` and got no answer).
    head = b"POST /_sql HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n"
    with _standin(StandInConfig(http=http)) as crate:
        answer = _raw(crate.port, head + b'{"stmt": "SELECT 1"}')
        requests = crate.counters.requests
    assert answer.startswith((b"HTTP/1.1 400 ", b"HTTP/1.0 400 ")) and requests == 0


@pytest.mark.parametrize("http", ["aiohttp", "lean"])
def test_expect_100_continue_gets_its_interim_answer_on_both_layers(http: str) -> None:
    """A head with ``Expect: 100-continue`` is told to go on before its body is sent."""
    # curl sends it with a large body and waits a second for the ``100 Continue`` before sending
    # the body anyway: the lean layer never sent it, so each such request stalled for a second.
    body = b'{"stmt": "SELECT 1"}'
    head = (
        b"POST /_sql HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        b"Content-Length: 20\r\nConnection: close\r\n\r\n"
    )
    with (
        _standin(StandInConfig(http=http)) as crate,
        socket.create_connection(("127.0.0.1", crate.port), timeout=5) as sock,
    ):
        sock.sendall(head)
        interim = sock.recv(65536)
        sock.sendall(body)
        chunks = [interim]
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert b"".join(chunks[1:]).startswith(b"HTTP/1.1 200 OK\r\n")


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /_sql HTTP/1.1\r\nX: " + b"a" * 4_000_000 + b"\r\n\r\n",
        b"POST /_sql HTTP/1.1\r\nContent-Length: 4000000\r\n\r\n" + b"b" * 4_000_000,
    ],
    ids=["4-MB-head", "4-MB-body-past-the-limit"],
)
def test_a_refusal_in_one_large_write_is_answered_not_reset(request_bytes: bytes) -> None:
    """A 4 MB head (431) or body past the limit (413) sent at once: the client reads the answer."""
    # The lean layer closed with the rest unread, so the kernel reset the connection and the
    # client saw ``ConnectionResetError`` instead of the answer.
    with _standin(StandInConfig(http="lean", max_body_bytes=1024 * 1024)) as crate:
        answer = _raw(crate.port, request_bytes)
        requests = crate.counters.requests
    assert answer.startswith((b"HTTP/1.1 431 ", b"HTTP/1.1 413 ")) and requests == 0


def test_a_head_not_complete_in_head_timeout_is_a_408() -> None:
    """A head that stops coming is answered 408 and closed after ``head_timeout``; not before."""
    with (
        _standin(StandInConfig(http="lean", head_timeout=0.3)) as crate,
        socket.create_connection(("127.0.0.1", crate.port), timeout=5) as slow,
        socket.create_connection(("127.0.0.1", crate.port), timeout=5) as stalled,
    ):
        started = time.monotonic()
        stalled.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        slow.sendall(b"GET / HTTP/1.1\r\n")
        time.sleep(0.1)
        slow.sendall(b"Host: x\r\nConnection: close\r\n\r\n")  # complete within the time
        served = b"".join(iter(lambda: slow.recv(65536), b""))
        refused = b"".join(iter(lambda: stalled.recv(65536), b""))
        waited = time.monotonic() - started
    assert served.startswith(b"HTTP/1.1 200 OK\r\n")
    assert refused.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert 0.3 <= waited < 4


async def test_pipelined_requests_behind_a_slow_one_pause_reading_at_the_buffer_bound() -> None:
    """5 MB pipelined behind a slow request: at most about 1 MiB is buffered; all are answered."""
    crate = _standin(StandInConfig(http="lean", latency_ms=400))
    await crate.start()
    try:
        big = orjson.dumps({"stmt": "SELECT ? AS v", "args": ["x" * 125_000]})
        data = _post(b'{"stmt": "SELECT 1"}') + _post(big) * 39 + _post(big, close=True)
        reader, writer = await asyncio.open_connection("127.0.0.1", crate.port)
        writer.write(data)
        await asyncio.sleep(0.05)
        crate.latency_ms = 0  # the first request is served in 400 ms, the others at once
        lean = crate._lean
        assert lean is not None
        peak = 0
        for _ in range(100):  # while the first request is served
            peak = max([peak, *(len(conn.buffer) for conn in lean.connections)])
            await asyncio.sleep(0.002)
        answer = await asyncio.wait_for(reader.read(), 30)
        writer.close()
    finally:
        await crate.stop()
    assert len(data) > 5_000_000 and 512 * 1024 <= peak <= 1024 * 1024 + 512 * 1024
    assert answer.count(b"HTTP/1.1 200 OK\r\n") == 41 == crate.counters.requests


async def test_lean_stop_closes_open_connections() -> None:
    """Stopping the lean stand-in aborts idle keep-alive connections and stops listening."""
    crate = _standin(StandInConfig(http="lean"))
    await crate.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", crate.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    port = crate.port
    await crate.stop()
    await asyncio.wait_for(reader.read(), 5)  # the rest, then EOF: the server closed it
    assert reader.at_eof()
    writer.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_module_entry_point_with_http_lean_counts_bench_bodies() -> None:
    """``--http lean --count-only`` (what compare starts) serves and counts every bench row."""
    with standin_process("--http", "lean") as url:
        async with aiohttp.ClientSession() as session:
            await post_sql(session, url, default_schema().crate_create_table("bench"))
            for body in _bench_bodies():
                async with session.post(f"{url}/_sql", data=body) as resp:
                    assert resp.status == 200
            await post_sql(session, url, "REFRESH TABLE bench")
            _, counted = await post_sql(session, url, "SELECT count(*) FROM bench")
    assert counted["rows"] == [[300]]
