"""The CrateDB stand-in's HTTP server and the ``CrateStandIn`` context manager.

Theory of operation
-------------------
One ``CrateStandIn`` owns everything it needs — catalog, engine, parse cache, random
generator, counters — so two stand-ins in one process share nothing.  The aiohttp handler for
``POST /_sql`` is a straight line of decisions, each one either answering or passing on:

1. count the request; refuse missing / wrong Basic credentials with a plain-text 401 and close
   the connection;
2. wait for one of ``capacity`` service slots (when set), then sleep the service time —
   ``latency_ms``, growing with the requests in service — and any stall in progress
   (``capacity.CapacityModel``, a model of a saturating server, not of CrateDB);
3. read and validate the body (gzip / deflate request bodies are inflated by aiohttp), parse
   the statement through a bounded per-instance LRU cache — any problem is 400 / 4000;
4. draw the injected faults from the seeded generator: 503 / 5030 (``fail_rate``),
   429 / 4290 (``busy_rate``), or a dropped connection (``drop_rate``) — drops alternate
   between "before" (nothing applied) and "after" (applied, then the socket is aborted
   without a response), so clients meet the ambiguous case; a bulk request first takes the
   next fault of ``schedule_faults`` (forced, whatever the rates), so a test can be sure
   each kind occurs;
5. run the statement on the pure ``Engine`` synchronously (no ``await`` while applying, so
   every request is atomic with respect to the others), with the ``Default-Schema`` the
   connection carried on its first request;
6. serialise with orjson, adding ``duration`` (ms) and, on errors, ``error_trace`` if asked.

A client that disconnects mid-request (its body cut short, or gone during the service time)
is not an error: the request ends without an answer and without a log line; any other
exception in the handler is aiohttp's "Error handling request" with its traceback.

The engine, store and parser do no I/O; this module is the only one that touches sockets.
The stand-in runs in the caller's event loop (``async with``) or on a private loop in a
background thread (``with``); ``python -m async_etl.testing.crate`` runs it as a process.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any

import orjson
from aiohttp import web

from async_etl.testing.crate import protocol
from async_etl.testing.crate.capacity import CapacityModel
from async_etl.testing.crate.config import FAULT_KINDS, Counters, StandInConfig
from async_etl.testing.crate.engine import Engine
from async_etl.testing.crate.exchange import DROP, TEXT, Exchange, Reply
from async_etl.testing.crate.lean import LeanServer, serve_lean
from async_etl.testing.crate.sql import SQLParseError, UnsupportedSQLError, parse
from async_etl.testing.crate.sqlast import WRITES, Statement
from async_etl.testing.crate.store import Catalog
from async_etl.testing.crate.systables import NodeInfo

_BODY_KEYS = frozenset({"stmt", "args", "bulk_args"})


class CrateStandIn:
    """A protocol-faithful CrateDB HTTP ``/_sql`` endpoint, in memory.

    Use ``async with CrateStandIn(StandInConfig()) as crate:`` inside an event loop, or
    ``with CrateStandIn(...) as crate:`` from synchronous code (a background thread then runs
    the server).  ``crate.url`` is ``http://127.0.0.1:PORT``.  The fault knobs
    (``latency_ms``, ``fail_rate``, ``busy_rate``, ``item_fail_rate``, ``drop_rate``,
    ``count_only``) are plain attributes and may be changed while it runs; ``counters`` says
    what happened.  In ``count_only`` mode INSERTs are counted, not stored, and primary-key
    uniqueness is not checked.  ``clock`` drives the tables' refresh interval.
    """

    def __init__(
        self,
        config: StandInConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or StandInConfig()
        cfg = self.config
        self.latency_ms = cfg.latency_ms
        self.fail_rate = cfg.fail_rate
        self.busy_rate = cfg.busy_rate
        self.item_fail_rate = cfg.item_fail_rate
        self.drop_rate = cfg.drop_rate
        self.analysis_per_item = cfg.analysis_per_item
        self.count_only = cfg.count_only
        self.counters = Counters()
        self.model = CapacityModel(
            capacity=cfg.capacity,
            growth=cfg.growth,
            stall_every=cfg.stall_every,
            stall_ms=cfg.stall_ms,
        )
        self._slots = asyncio.Semaphore(cfg.capacity) if cfg.capacity > 0 else None
        self.catalog = Catalog(clock)
        self.engine = Engine(self.catalog, self._node(""), self.counters)
        self.url = ""
        self._rng = random.Random(cfg.seed)
        self._drops = 0
        self._scheduled: deque[str] = deque()
        self._parse = functools.lru_cache(maxsize=cfg.parse_cache_size)(parse)
        self._schemas: dict[int, tuple[object, str]] = {}
        self._open: dict[int, object] = {}  # transports that sent a request, maybe closed since
        self._runner: web.AppRunner | None = None
        self._lean: LeanServer | None = None
        self._thread: threading.Thread | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None
        self._thread_stop: asyncio.Event | None = None
        self._auth: bytes | None = None
        if cfg.user is not None:
            token = base64.b64encode(f"{cfg.user}:{cfg.password}".encode()).decode()
            self._auth = f"Basic {token}".encode()

    def _node(self, url: str) -> NodeInfo:
        return NodeInfo(self.config.version, self.config.node_name, self.config.cluster_name, url)

    @property
    def port(self) -> int:
        """The port the server listens on (0 before it started)."""
        return int(self.url.rsplit(":", 1)[1]) if self.url else 0

    # -- lifecycle -----------------------------------------------------------------------
    def app(self) -> web.Application:
        """The aiohttp application (for embedding in another server or test client)."""
        application = web.Application(client_max_size=self.config.max_body_bytes)
        application.router.add_get("/", self._info)
        application.router.add_post("/_sql", self._sql)
        application.router.add_post("/_sql/{tail:.*}", self._sql)
        return application

    async def start(self) -> str:
        """Bind and serve in the running loop; returns the URL. Raises ``OSError`` if busy."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.config.host, self.config.port))
        except OSError:
            sock.close()
            raise
        if self.config.http == "lean":
            self._lean = await serve_lean(self, sock)
        else:
            self._runner = web.AppRunner(
                self.app(), access_log=None, handle_signals=False, shutdown_timeout=0.5
            )
            await self._runner.setup()
            await web.SockSite(self._runner, sock).start()
        host, port = sock.getsockname()[:2]
        self.url = f"http://{host}:{port}"
        self.engine.node = self._node(self.url)
        return self.url

    async def stop(self) -> None:
        """Stop serving and close every connection."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        if self._lean is not None:
            lean, self._lean = self._lean, None
            await lean.close()

    async def __aenter__(self) -> CrateStandIn:
        """Start in the running loop."""
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop."""
        await self.stop()

    def __enter__(self) -> CrateStandIn:
        """Start on a private event loop in a background thread; raises ``OSError`` if busy."""
        ready = threading.Event()
        failure: list[BaseException] = []

        async def serve() -> None:
            self._thread_loop = asyncio.get_running_loop()
            self._thread_stop = asyncio.Event()
            try:
                await self.start()
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            try:
                await self._thread_stop.wait()
            finally:
                await self.stop()

        self._thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            raise failure[0]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the background server and join its thread."""
        if self._thread_loop is not None and self._thread_stop is not None:
            self._thread_loop.call_soon_threadsafe(self._thread_stop.set)
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    # -- handlers ------------------------------------------------------------------------
    def refusal(self, authorization: str) -> Reply | None:
        """The plain-text 401 for missing / wrong Basic credentials (``None``: let it in)."""
        if self._auth is None or authorization.encode() == self._auth:
            return None  # a Bearer JWT is never accepted: nothing to verify it with
        self.counters.faults["auth"] += 1
        return Reply(
            401,
            b"trust authentication failed for user\n",
            TEXT,
            (("WWW-Authenticate", 'Basic realm="CrateDB"'),),
            close=True,
        )

    def info_reply(self, authorization: str) -> Reply:
        """The answer to ``GET /``: node information, or the 401."""
        refused = self.refusal(authorization)
        if refused is not None:
            return refused
        cfg = self.config
        body = protocol.node_info(cfg.version, cfg.node_name, cfg.cluster_name)
        return Reply(200, orjson.dumps(body))

    async def _info(self, request: web.Request) -> web.StreamResponse:
        return _response(self.info_reply(request.headers.get("Authorization", "")), request)

    def count_connection(self, transport: object) -> None:
        """Raise ``peak_connections`` when this request's connection makes a new peak.

        Closed connections are dropped only when the count would rise, so each request costs
        a dict insert and the peak is exact: every connection open now has sent a request.
        """
        if transport is None:
            return
        open_ = self._open
        open_[id(transport)] = transport
        counters = self.counters
        if len(open_) > counters.peak_connections:
            self._open = open_ = {k: t for k, t in open_.items() if _alive(t)}
            counters.peak_connections = max(counters.peak_connections, len(open_))

    def _default_schema(self, request: web.Request) -> str:
        """The connection's schema: read from the header on its first request only."""
        transport = request.transport
        key = id(transport)
        known = self._schemas.get(key)
        if known is not None and known[0] is transport:
            return known[1]
        schema = request.headers.get("Default-Schema") or "doc"
        if transport is not None:
            if len(self._schemas) > 4096:
                self._schemas = {k: v for k, v in self._schemas.items() if _alive(v[0])}
            self._schemas[key] = (transport, schema)
        return schema

    async def _sql(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        exchange = Exchange(
            transport=request.transport,
            authorization=request.headers.get("Authorization", ""),
            schema=lambda: self._default_schema(request),
            read=request.read,
            trace=query.get("error_trace", "false") != "false",
            types=query.get("types", "false") != "false",
        )
        try:
            reply = await self.sql_reply(exchange)
        except ConnectionResetError:
            if _alive(request.transport):
                raise  # not the client leaving: aiohttp logs it with its traceback
            return web.Response(status=499)  # the client left mid-request: nobody to answer
        return _response(reply, request)

    async def sql_reply(self, exchange: Exchange) -> Reply:
        """Steps 1-6 of the theory of operation for one ``POST /_sql``, whatever the HTTP layer."""
        started = time.perf_counter()
        self.counters.requests += 1
        self.count_connection(exchange.transport)
        refused = self.refusal(exchange.authorization)
        if refused is not None:
            return refused
        if self._slots is None:
            await self._serve()
        else:
            async with self._slots:
                await self._serve()
        return self.answer(
            await exchange.read(), exchange.schema(), exchange.trace, exchange.types, started
        )

    async def _serve(self) -> None:
        """Wait out the service time and any stall (``capacity.CapacityModel``)."""
        model = self.model
        model.latency_ms = self.latency_ms
        model.admit(time.monotonic())
        counters = self.counters
        counters.peak_in_service = max(counters.peak_in_service, model.busy)
        counters.stalls = model.stalls
        try:
            wait = model.service_s()
            if wait > 0:
                await asyncio.sleep(wait)
            hold = model.hold_s(time.monotonic())
            if hold > 0:
                await asyncio.sleep(hold)
        finally:
            model.release()

    def answer(self, raw: bytes, schema: str, trace: bool, types: bool, started: float) -> Reply:
        """Read the body, draw the faults and run the statement (steps 3-6); never awaits."""
        bulk: list[Any] | None = None
        try:
            stmt, args, bulk_args = self._read(raw)
            bulk = bulk_args
            forced = self._next_scheduled() if bulk is not None else None
            drop = self._draw_faults(forced)
            if drop == "before":
                return DROP
            body = self.engine.run(
                stmt,
                args,
                bulk_args,
                schema,
                count_only=self.count_only,
                item_fault=self._item_fault(forced == "item_fail") if bulk is not None else None,
                types=types,
            )
            if drop == "after":
                return DROP
            status = 200
        except protocol.CrateError as err:
            status, body = err.status, err.body(trace and bulk is None)
            if self.analysis_per_item and bulk and len(bulk) > 1 and err.code == 4000:
                status, body = 200, protocol.every_item_failed(len(bulk), err)
        body["duration"] = round((time.perf_counter() - started) * 1000.0, 3)
        return Reply(status, orjson.dumps(body))

    def _read(self, raw: bytes) -> tuple[Statement, list[Any], list[Any] | None]:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise protocol.parse_error(
                "Failed to parse source [request body is not JSON]"
            ) from None
        if not isinstance(data, dict) or not data:
            raise protocol.parse_error("Failed to parse source [empty or not an object]")
        extra = set(data) - _BODY_KEYS
        if extra:
            raise protocol.parse_error(f"Failed to parse source [unknown field {sorted(extra)[0]}]")
        stmt_text, args, bulk_args = data.get("stmt"), data.get("args"), data.get("bulk_args")
        if not isinstance(stmt_text, str) or not stmt_text.strip():
            raise protocol.parse_error("Field [stmt] was not defined")
        if args is not None and not isinstance(args, list):
            raise protocol.parse_error("Field [args] must be an array")
        if bulk_args is not None and not isinstance(bulk_args, list):
            raise protocol.parse_error("Field [bulk_args] must be an array")
        if args and bulk_args:
            raise protocol.parse_error("request body contains args and bulk_args. It's forbidden")
        try:
            stmt = self._parse(stmt_text)
        except UnsupportedSQLError as exc:
            raise protocol.unsupported(str(exc)) from None
        except SQLParseError as exc:
            raise protocol.parse_error(str(exc)) from None
        if bulk_args is not None and not isinstance(stmt, WRITES) and not bulk_args:
            bulk_args = None
        return stmt, args or [], bulk_args

    # -- faults --------------------------------------------------------------------------
    def schedule_faults(self, *kinds: str) -> None:
        """Force ``kinds`` (``FAULT_KINDS`` but ``auth``), one each, on the next bulk requests.

        A scheduled fault comes before the random draws: ``item_fail`` fails the request's first
        item.  Raises ``ValueError`` for another kind.  Safe to call from any thread.
        """
        for kind in kinds:
            if kind not in FAULT_KINDS or kind == "auth":
                raise ValueError(f"schedule_faults: {kind!r} is not a fault kind of a bulk request")
        self._scheduled.extend(kinds)

    def _next_scheduled(self) -> str | None:
        try:
            return self._scheduled.popleft()
        except IndexError:
            return None

    def _draw_faults(self, forced: str | None) -> str | None:
        """Decide this request's injected fault; raises ``CrateError`` for 503 / 429."""
        rng = self._rng
        if forced == "fail" or (self.fail_rate > 0 and rng.random() < self.fail_rate):
            self.counters.faults["fail"] += 1
            raise protocol.unavailable()
        if forced == "busy" or (self.busy_rate > 0 and rng.random() < self.busy_rate):
            self.counters.faults["busy"] += 1
            raise protocol.busy()
        if forced in ("drop_before", "drop_after"):
            self.counters.faults[forced] += 1
            return forced.removeprefix("drop_")
        if self.drop_rate > 0 and rng.random() < self.drop_rate:
            self._drops += 1
            when = "before" if self._drops % 2 else "after"
            self.counters.faults[f"drop_{when}"] += 1
            return when
        return None

    def _item_fault(self, fail_first: bool) -> Callable[[], bool] | None:
        rate = self.item_fail_rate
        if rate <= 0 and not fail_first:
            return None
        draw = self._rng.random
        first = [fail_first]

        def fault() -> bool:
            if first[0]:
                first[0] = False
                return True
            return rate > 0 and draw() < rate

        return fault


def _response(reply: Reply, request: web.Request) -> web.StreamResponse:
    """An aiohttp response for ``reply``; a drop aborts the connection without answering."""
    if reply.drop:
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=500)
    response = web.Response(
        status=reply.status,
        body=reply.body,
        content_type=reply.content_type,
        charset="utf-8" if reply.content_type == TEXT else None,
        headers=dict(reply.headers),
    )
    if reply.close:
        response.force_close()
    return response


def _alive(transport: object) -> bool:
    closing = getattr(transport, "is_closing", None)
    return bool(closing is not None and not closing())
