"""CrateDB's HTTP ``/_sql`` endpoint: an aiohttp client (its blocking twin: ``cratedb_blocking``).

``CrateDBClient`` owns one ``ClientSession`` (one connection pool bounded by ``concurrency``);
``BlockingCrateDBClient`` owns one urllib3 pool with ``maxsize = concurrency`` and
``block=True``, shared by the thread runner's sender threads, so neither runner holds more
connections than the other.  Both do the I/O only: every decision — body encoding, response
shapes, error kinds, resolving undecided bulk items — comes from
``async_etl.core.crate_protocol`` and ``core.crate_resolve``, and a dropped connection is a
``TransientLoadError`` (kind NETWORK) in both.  urllib3's own retries are off: the runner's
``Delivery`` decides every retry.  Used by the CrateDB sinks and by mapper jobs for ad-hoc
statements.  Messages name the endpoint as ``CrateDB http://user@host:4200``, never the password.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, TypedDict, TypeVar, Unpack

import aiohttp
import anyio
import anyio.lowlevel
import yarl

from async_etl import errors
from async_etl.core.classify import tls_refusal
from async_etl.core.crate_protocol import (
    BulkVerdict,
    Endpoint,
    Response,
    build_request,
    checked_version,
    error_of,
    maybe_gzip,
    parse_response,
    parse_retry_after,
)
from async_etl.core.crate_resolve import Resolution, judge_resent
from async_etl.errors import ConfigError, LoadError

__all__ = ["ClientSettings", "CrateDBClient", "gzip_paced", "listed_types"]

T = TypeVar("T")

# what a dropped connection, a reset, a truncated body or a timeout raise inside aiohttp
_NETWORK_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError)


_INLINE_GZIP_MAX = 256 * 1024
_GZIP_SLICE = 128 * 1024  # ~0.3 ms of level-1 deflate: the longest the loop is held


async def gzip_paced(body: bytes) -> bytes:
    """``body`` gzipped at level 1 a slice at a time, letting the event loop run in between.

    What ``maybe_gzip`` sends (any gzip stream of ``body`` decompresses the same), without a
    thread: a loop thread busy with Python work (a writer's intake) holds the GIL, so a
    compressing thread can wait up to the interpreter's switch interval (5 ms) to hand its
    result back, and the request waits with it.
    """
    deflate = zlib.compressobj(1, zlib.DEFLATED, 31)  # wbits 31: a gzip header and trailer
    view = memoryview(body)
    parts = []
    for start in range(0, len(body), _GZIP_SLICE):
        if start:
            await anyio.lowlevel.checkpoint()
        parts.append(deflate.compress(view[start : start + _GZIP_SLICE]))
    parts.append(deflate.flush())
    return b"".join(parts)


class ClientSettings(TypedDict, total=False):
    """The keyword settings of both clients (defaults in ``_Settings``)."""

    concurrency: int
    timeout: float
    gzip_threshold: int


class _Settings:
    """What both clients hold: the endpoint, its password-free name, pool size and limits.

    Raises ``ConfigError`` at construction for a bad URL or ``concurrency < 1``.
    """

    def __init__(
        self,
        url: str | Endpoint,
        *,
        concurrency: int = 4,
        timeout: float = 60.0,
        gzip_threshold: int = 8192,
    ) -> None:
        self.endpoint = url if isinstance(url, Endpoint) else Endpoint.parse(url)
        if concurrency < 1:
            raise ConfigError(f"CrateDB concurrency must be at least 1, got {concurrency}")
        self.where = f"CrateDB {self.endpoint.display}"
        self.concurrency = concurrency
        self.timeout = timeout
        self.gzip_threshold = gzip_threshold


class CrateDBClient(_Settings):
    """One pooled HTTP client per CrateDB endpoint; ``async with`` or ``open()``/``aclose()``.

    Bodies of ``_INLINE_GZIP_MAX`` bytes and more are gzipped in a thread, or with
    ``gzip_in_thread=False`` in the loop a slice at a time (``gzip_paced``: for a caller whose
    loop thread is itself busy).  Raises ``ConfigError`` at construction for a bad URL or
    ``concurrency < 1``.
    """

    def __init__(
        self,
        url: str | Endpoint,
        *,
        gzip_in_thread: bool = True,
        **settings: Unpack[ClientSettings],
    ) -> None:
        super().__init__(url, **settings)
        self.gzip_in_thread = gzip_in_thread
        self._session: aiohttp.ClientSession | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._sql_url = yarl.URL(self.endpoint.sql_url)  # parsed once, not per request

    async def open(self) -> None:
        """Create the session and its pool (inside the running loop); a no-op when open."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.concurrency),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers=self.endpoint.headers(),
                cookie_jar=aiohttp.DummyCookieJar(),  # CrateDB sets no cookies
            )
            self._limiter = anyio.CapacityLimiter(self.concurrency)

    async def aclose(self) -> None:
        """Close the session; safe to call twice or before ``open``."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def __aenter__(self) -> CrateDBClient:
        """Open the client."""
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the client."""
        await self.aclose()

    def _require(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise LoadError(f"{self.where}: client is not open")
        return self._session

    def _network(self, exc: BaseException) -> errors.AsyncEtlError:
        detail = str(exc) or "no detail"
        if (cure := tls_refusal(detail)) is not None:  # no retry cures it (core.classify)
            return errors.ConfigError(f"{self.where}: {type(exc).__name__}: {detail}; {cure}")
        return errors.network(f"{self.where}: {type(exc).__name__}: {detail}")

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run CPU work (gzip, JSON of a large body) in a thread, bounded by ``concurrency``."""
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    async def _compress(self, body: bytes) -> tuple[bytes, dict[str, str]]:
        if self.gzip_threshold <= 0 or len(body) < self.gzip_threshold:
            return body, {}
        if len(body) < _INLINE_GZIP_MAX:  # ~0.1 ms at level 1: cheaper than a thread hop
            return maybe_gzip(body, self.gzip_threshold)
        if not self.gzip_in_thread:  # in the loop, a slice at a time (see gzip_paced)
            return await gzip_paced(body), {"Content-Encoding": "gzip"}
        # zlib releases the GIL: compress large bodies off the event loop
        return await self.in_thread(maybe_gzip, body, self.gzip_threshold)

    async def post(self, body: bytes) -> Response:
        """POST a ready ``/_sql`` body once (gzipped above the threshold) and parse the answer.

        Raises ``TransientLoadError`` (kind NETWORK) when no answer came back; an error answer
        is returned, not raised (see ``error_of``).
        """
        session = self._require()
        data, extra = await self._compress(body)
        try:
            async with session.post(self._sql_url, data=data, headers=extra or None) as resp:
                raw = await resp.read()
                retry_after = parse_retry_after(resp.headers.get("Retry-After"), now=time.time())
                ctype = resp.headers.get("Content-Type", "")
                return parse_response(resp.status, raw, ctype, retry_after=retry_after)
        except _NETWORK_ERRORS as exc:
            raise self._network(exc) from exc

    async def execute(self, stmt: str, args: Sequence[Any] | None = None) -> Response:
        """Run one statement; raise ``TransientLoadError`` / ``LoadError`` / ``DataError``."""
        response = await self.post(build_request(stmt, args))
        err = error_of(response, self.where)
        if err is not None:
            raise err
        return response

    async def bulk(self, stmt: str, bulk_args: Sequence[Sequence[Any]]) -> Response:
        """Run one bulk statement; the per-item outcomes are in ``results`` (see ``judge_bulk``).

        Raises like ``execute`` when the request as a whole failed.
        """
        response = await self.post(build_request(stmt, bulk_args=bulk_args))
        err = error_of(response, self.where, bulk_rows=len(bulk_args))
        if err is not None:
            raise err
        return response

    async def resolve(
        self,
        verdict: BulkVerdict,
        rows: int,
        body_of: Callable[[tuple[int, ...]], bytes],
        *,
        attempt: int,
        upsert: bool,
        idempotent: bool = False,
        group: int = 10,
        whole: bool = False,
    ) -> BulkVerdict:
        """Decide the undecided items of ``verdict`` by resending them (``core.crate_resolve``).

        ``body_of(indices)`` is the bulk body of those batch items with the judged attempt's
        statement.  Returns the verdict without undecided items.  Raises ``LoadError`` when an
        answer is not a bulk answer; whole-request failures are decided, not raised.
        ``whole``: the request was refused as a whole; bisect all ``rows`` items instead
        (``Resolution.whole``; ``verdict`` and ``group`` are then unused).
        """
        resolution = Resolution.whole(rows) if whole else Resolution(verdict, rows, group)
        while (items := resolution.next_group()) is not None:
            try:
                response = await self.post(body_of(items))
            except errors.TransientLoadError as exc:
                resolution.transient(items, exc.message)
                continue
            judged = judge_resent(resolution, items, response, self.where, attempt=attempt,
                                  upsert=upsert, idempotent=idempotent)  # fmt: skip
            if judged is not None:
                resolution.feed(items, judged)
        return resolution.verdict()

    async def server_version(self) -> str:
        """``GET /`` and return the version number; raise like ``execute`` when it fails."""
        session = self._require()
        try:
            async with session.get(self.endpoint.base_url + "/") as resp:
                raw = await resp.read()
                response = parse_response(resp.status, raw, resp.headers.get("Content-Type", ""))
        except _NETWORK_ERRORS as exc:
            raise self._network(exc) from exc
        return checked_version(response, raw, self.where)


async def listed_types(
    client: CrateDBClient, schema: str, table: str, rows: Sequence[Sequence[Any]]
) -> list[tuple[str, str]]:
    """(name, type) of a table's top-level columns from ``information_schema.columns`` rows.

    ``rows``: (column_name, data_type, character_maximum_length); a ``VARCHAR(n)`` /
    ``CHAR(n)`` type keeps n (``drift.crate_listed_type``).  When the table has an array of
    text, whose element length information_schema never gives, one ``SHOW CREATE TABLE``
    (``drift.crate_show_create_sql``) tells ``ARRAY(VARCHAR(n))`` / ``ARRAY(CHARACTER(n))``
    from ``ARRAY(TEXT)``: such a column reads ``character varying(n)[]`` / ``character(n)[]``
    (``drift.crate_array_types``).  Raises ``LoadError`` / ``TransientLoadError`` like
    ``CrateDBClient.execute``.
    """
    from async_etl.core import drift
    from async_etl.core.crate_answers import query_rows

    listed = [(str(r[0]), drift.crate_listed_type(str(r[1]), r[2]))
              for r in rows if "[" not in str(r[0])]  # fmt: skip
    if not any(drift.crate_text_array(t) for _, t in listed):
        return listed
    stmt = drift.crate_show_create_sql(schema, table)
    found = query_rows(await client.execute(stmt), client.where, stmt, width=1)
    bounded = drift.crate_array_types(str(found[0][0])) if found else {}
    return [(name, bounded.get(name, t)) for name, t in listed]
