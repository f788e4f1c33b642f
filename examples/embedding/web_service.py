"""Example 1: an aiohttp service that streams POSTed JSON events through one shared writer.

    python -m examples.embedding.web_service --url postgresql://postgres@127.0.0.1/app
    python -m examples.embedding.web_service --url http://localhost:4200 --port 8080

``POST /events`` takes one event or a list of them, ``{"id": int, "kind": str, "data": {...}}``,
answers ``202 {"accepted": n}`` once the writer has taken them, ``400`` for a malformed body
and ``503`` once shutting down.  SIGTERM / SIGINT: stop accepting (503), wait for the requests
in progress, flush the writer and wait for every batch, print the report, exit 0 (1 when some
event was rejected or not delivered).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

import orjson
from aiohttp import web

from async_etl import AsyncEtlError, ConfigError, Writer, WriterReport, open_writer

COLUMNS = {"id": "bigint", "kind": "text", "data": "text"}
"""The events table (CrateDB and PostgreSQL both take these types); ``id`` is the key."""

WRITER = web.AppKey("writer", Writer)
ACCEPTING = web.AppKey("accepting", list)


def parse_events(body: bytes) -> list[tuple[int, str, str]] | str:
    """The events of a request body as rows, or why the body is refused."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return f"not JSON: {exc}"
    events = doc if isinstance(doc, list) else [doc]
    rows: list[tuple[int, str, str]] = []
    for i, event in enumerate(events):
        if not isinstance(event, dict):
            return f"event {i}: expected an object"
        key, kind = event.get("id"), event.get("kind")
        if not isinstance(key, int) or isinstance(key, bool) or not isinstance(kind, str):
            return f"event {i}: needs an integer id and a string kind"
        rows.append((key, kind, orjson.dumps(event.get("data")).decode()))
    return rows


async def post_events(request: web.Request) -> web.Response:
    """Hand the events to the shared writer; 202 once it has them."""
    if not request.app[ACCEPTING][0]:
        return web.json_response({"error": "shutting down"}, status=503)
    rows = parse_events(await request.read())
    if isinstance(rows, str):
        return web.json_response({"error": rows}, status=400)
    await request.app[WRITER].write_many(rows)  # waits when the writer is saturated
    return web.json_response({"accepted": len(rows)}, status=202)


async def serve(url: str, *, table: str, host: str, port: int) -> WriterReport:
    """Run the service until SIGTERM / SIGINT; return the writer's final report."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    writer = open_writer(
        url, table=table, columns=COLUMNS, primary_key=["id"], batch_rows=2000, linger_ms=20
    )
    async with writer:
        app = web.Application()
        app[WRITER] = writer
        app[ACCEPTING] = [True]
        app.router.add_post("/events", post_events)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0][1]
        print(f"listening on http://{host}:{bound}", flush=True)
        await stop.wait()
        app[ACCEPTING][0] = False  # new requests: 503
        await runner.cleanup()  # stop listening, let requests in progress finish
    return writer.report  # closing the writer flushed and waited for every batch


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, serve, print the report; exit status 0 when every event landed."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--url", required=True, help="postgresql://... or http://crate:4200")
    p.add_argument("--table", default="events")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    args = p.parse_args(argv)
    try:
        report = asyncio.run(serve(args.url, table=args.table, host=args.host, port=args.port))
    except AsyncEtlError as exc:  # a bad URL, an unreachable database: one line
        print(f"web_service: error: {exc.message}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    summary: dict[str, Any] = {
        "accepted": report.accepted,
        "delivered": report.delivered,
        "rejected": report.rejected,
        "undelivered": report.undelivered,
        "reasons": dict(report.reasons),
    }
    print(orjson.dumps(summary).decode(), flush=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
