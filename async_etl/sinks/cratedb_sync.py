"""The blocking CrateDB sink: ``bulk_args`` bodies over urllib3, for the thread runner.

The twin of ``async_etl.sinks.cratedb.CrateDBSink``: the same requests and the same decisions,
all from the sans-I/O ``async_etl.core.crate_protocol`` (``Endpoint``, ``CrateTable``,
``build_request``, ``maybe_gzip``, ``parse_response``, ``error_of``, ``verdict_for``,
``send_result``, ``checked_version``) and ``core.crate_resolve`` for undecided items — only the
I/O differs.

One ``urllib3`` connection pool per sink with ``maxsize = concurrency`` and ``block=True``:
the sender threads share it, so the thread runner never holds more connections than the async
runner's aiohttp connector (``limit = concurrency``).  urllib3's own retries are off: the
runner's ``Delivery`` state machine decides every retry, as in async mode.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import urllib3
from urllib3.exceptions import HTTPError

from async_etl import errors
from async_etl.core.crate_answers import count_of, next_id
from async_etl.core.crate_protocol import (
    BulkVerdict,
    CrateTable,
    Endpoint,
    Response,
    attempt_body,
    build_request,
    checked_version,
    error_of,
    maybe_gzip,
    parse_response,
    parse_retry_after,
    send_result,
    verdict_for,
)
from async_etl.core.crate_resolve import (
    BulkItems,
    Resolution,
    bulk_items,
    detail_group,
    judge_resent,
    subset_items,
)
from async_etl.errors import ConfigError, LoadError
from async_etl.typing import EncodedBatch, Encoding, IdRange, SendResult, Target

if TYPE_CHECKING:
    from async_etl.core.schema import Schema

__all__ = ["BlockingCrateDBSink"]


class BlockingCrateDBSink:
    """A ``BlockingSink`` writing to a CrateDB table through ``/_sql`` bulk requests.

    ``url`` is ``http[s]://user:password@host:4200?schema=s`` (``crate://`` = http);
    ``concurrency`` is the pool's size.  Raises ``ConfigError`` for a bad URL, table or
    concurrency.
    """

    def __init__(
        self,
        url: str,
        *,
        table: str,
        concurrency: int,
        gzip_threshold: int = 8192,
        timeout: float = 60.0,
    ) -> None:
        self.endpoint = Endpoint.parse(url)
        if concurrency < 1:
            raise ConfigError(f"CrateDB concurrency must be at least 1, got {concurrency}")
        self.where = f"CrateDB {self.endpoint.display}"
        self.table = CrateTable(table)
        self.gzip_threshold = gzip_threshold
        self.version = ""
        self._headers = self.endpoint.headers()
        self._pool: urllib3.HTTPConnectionPool | None = urllib3.connection_from_url(
            self.endpoint.base_url,
            maxsize=concurrency,
            block=True,
            retries=False,
            timeout=urllib3.Timeout(total=timeout),
        )
        self._upsert = False
        self._stmt = ""

    def describe(self) -> str:
        """``CrateDB http://user@host:4200 schema.table`` — no password."""
        return f"{self.where} {self.table.qualified(self.endpoint.schema)}"

    def _request(self, method: str, path: str, body: bytes | None = None) -> tuple[Response, bytes]:
        if self._pool is None:
            raise LoadError(f"{self.where}: sink is closed")
        headers = dict(self._headers)
        if body is not None:
            body, extra = maybe_gzip(body, self.gzip_threshold)
            headers.update(extra)
        try:
            resp = self._pool.urlopen(method, path, body=body, headers=headers, retries=False)
        except (HTTPError, OSError) as exc:
            detail = str(exc) or "no detail"
            raise errors.network(f"{self.where}: {type(exc).__name__}: {detail}") from exc
        retry_after = parse_retry_after(resp.headers.get("Retry-After"), now=time.time())
        ctype = resp.headers.get("Content-Type", "")
        raw = resp.data
        return parse_response(resp.status, raw, ctype, retry_after=retry_after), raw

    def execute(self, stmt: str, args: Sequence[Any] | None = None) -> Response:
        """Run one statement; raise ``TransientLoadError`` / ``LoadError`` / ``DataError``."""
        response, _ = self._request("POST", "/_sql", build_request(stmt, args))
        err = error_of(response, self.where)
        if err is not None:
            raise err
        return response

    def server_version(self) -> str:
        """``GET /`` and return the version number; raise like ``execute`` when it fails."""
        response, raw = self._request("GET", "/")
        return checked_version(response, raw, self.where)

    def prepare(self, schema: Schema) -> Target:
        """Check the server, create the table if missing and pick a fresh ``start_id``.

        Raises ``TransientLoadError`` when the server is unreachable or busy, ``LoadError``
        for bad credentials, privileges or DDL.
        """
        self.version = self.server_version()
        self.execute(schema.crate_create_table(self.table.name))
        self.table = CrateTable(self.table.name, schema.names[0])
        self.execute(self.table.refresh)
        top = self.execute(self.table.max_id)
        stmt = schema.crate_insert(self.table.name)
        self._upsert = "ON CONFLICT" in stmt.upper()
        self._stmt = stmt
        return Target(
            encoding=Encoding("crate_json", stmt),
            start_id=next_id(top, self.where, self.table.max_id),
            description=self.describe(),
            extra={"version": self.version},
        )

    def send(self, batch: EncodedBatch, attempt: int) -> SendResult:
        """Post one bulk body once and judge every item.

        Raises ``TransientLoadError`` when the request as a whole may succeed later (network,
        429, 503, 5xx; ``retry_after`` from the header), ``LoadError`` when it never will.
        """
        body = attempt_body(batch.payload, attempt, self._stmt, (self.table.id_column,))
        response, _ = self._request("POST", "/_sql", body)
        verdict = verdict_for(
            batch.row_count, response, where=self.where, attempt=attempt, upsert=self._upsert
        )
        if verdict.undecided:  # bare rowcount -2: resend those items to learn their error
            verdict = self._resolve(verdict, batch.row_count, bulk_items(body), attempt)
        return send_result(batch, verdict, response.retry_after)

    def _resolve(
        self, verdict: BulkVerdict, rows: int, items: BulkItems, attempt: int
    ) -> BulkVerdict:
        """Decide undecided items by resending them in small bulks (``core.crate_resolve``)."""
        resolution = Resolution(verdict, rows, detail_group(self.version))
        while (group := resolution.next_group()) is not None:
            try:
                response, _ = self._request("POST", "/_sql", subset_items(items, group))
            except errors.TransientLoadError as exc:
                resolution.transient(group, exc.message)
                continue
            judged = judge_resent(resolution, group, response, self.where, attempt=attempt,
                                  upsert=self._upsert)  # fmt: skip
            if judged is not None:
                resolution.feed(group, judged)
        return resolution.verdict()

    def count(self, ids: IdRange) -> int | None:
        """Rows with ids in ``ids`` after ``REFRESH TABLE``; raises like ``prepare``."""
        self.execute(self.table.refresh)
        response = self.execute(self.table.count_range, [ids.start, ids.stop])
        return count_of(response, self.where, self.table.count_range)

    def close(self) -> None:
        """Close the connection pool; safe to call twice."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
