"""CrateDB sinks against a server answering shapes outside the protocol: one-line LoadErrors."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anyio
import pytest

from async_etl.config import BenchSettings
from async_etl.core.schema import default_schema
from async_etl.errors import AsyncEtlError, LoadError
from async_etl.runtime.engine import Engine
from async_etl.runtime.threads import run_threads
from async_etl.sinks.cratedb import CrateDBSink
from async_etl.sources.synthetic import Synthetic
from async_etl.typing import IdRange

ODD_COUNTS: list[Any] = [
    {"cols": [], "rows": []},
    {"cols": ["count(*)"], "rows": []},
    {"cols": ["count(*)"], "rows": [[]]},
    {"cols": ["count(*)"], "rows": [["12"]]},
    {"cols": ["count(*)"], "rows": [[None]]},
    {"cols": ["a", "b"], "rows": [[1, 2]]},
    {"rowcount": 1},
]


def _server(count_answer: Any) -> ThreadingHTTPServer:
    """A tiny CrateDB look-alike: correct answers except to ``SELECT count(*)``."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            """Quiet."""

        def _send(self, doc: Any) -> None:
            body = json.dumps(doc).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._send({"ok": True, "status": 200, "version": {"number": "5.10.11"}})

        def do_POST(self) -> None:
            req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            stmt = req["stmt"]
            if "bulk_args" in req:
                self._send({"cols": [], "results": [{"rowcount": 1}] * len(req["bulk_args"])})
            elif stmt.startswith("SELECT max"):
                self._send({"cols": ["max(id)"], "rows": [[None]], "rowcount": 1})
            elif stmt.startswith("SELECT count(*)"):
                self._send(count_answer)
            elif "information_schema.columns" in stmt:  # the table has the records' shape
                schema = default_schema()
                rows = [[c.name, schema.crate_type(c).lower(), None] for c in schema.columns]
                cols = ["column_name", "data_type", "character_maximum_length"]
                self._send({"cols": cols, "rows": rows})
            else:
                self._send({"cols": [], "rows": [[]], "rowcount": 1})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(params=range(len(ODD_COUNTS)), ids=lambda i: json.dumps(ODD_COUNTS[i]))
def odd_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a server answering the reconcile count oddly."""
    server = _server(ODD_COUNTS[request.param])
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _settings(url: str) -> BenchSettings:
    return BenchSettings(sink=url, records=300, batch_size=100, generators=0, max_retries=0)


def _assert_names_the_count(exc: AsyncEtlError) -> None:
    assert isinstance(exc, LoadError)
    assert "\n" not in exc.message
    assert "odd answer to 'SELECT count(*)" in exc.message


async def test_async_bench_reconcile_odd_count_is_a_load_error(odd_url: str) -> None:
    """The async bench ends in one LoadError naming the count (never an IndexError)."""
    sink = CrateDBSink(odd_url, table="t", concurrency=2)
    try:
        async with Engine(_settings(odd_url)) as engine:
            with pytest.raises(LoadError) as info:
                await engine.run(Synthetic(), sink)
    finally:
        await sink.aclose()
    _assert_names_the_count(info.value)


def test_thread_bench_reconcile_odd_count_is_a_load_error(odd_url: str) -> None:
    """The thread runner's blocking sink judges the count by the same rules."""
    with pytest.raises(LoadError) as info:
        run_threads(_settings(odd_url), Synthetic(), odd_url)
    _assert_names_the_count(info.value)


async def test_sink_count_alone(odd_url: str) -> None:
    """CrateDBSink.count raises the LoadError itself, after a normal prepare."""
    sink = CrateDBSink(odd_url, table="t", concurrency=2)
    try:
        await sink.prepare(default_schema())
        with pytest.raises(LoadError) as info:
            await sink.count(IdRange(1, 10))
    finally:
        with anyio.CancelScope(shield=True):
            await sink.aclose()
    _assert_names_the_count(info.value)
