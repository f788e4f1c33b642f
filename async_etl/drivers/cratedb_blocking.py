"""The blocking twin of ``drivers.cratedb.CrateDBClient``: CrateDB's ``/_sql`` over urllib3.

For the thread runner's CrateDB sink.  urllib3 is the optional ``threads`` extra
(``pip install 'async-etl[threads]'``), so only that sink imports this module.  The same
settings, the same decisions (``core.crate_protocol``, ``core.crate_resolve``) and the same
errors as the async client; see ``drivers.cratedb`` for the design.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Unpack

import urllib3
from urllib3.exceptions import HTTPError

from async_etl import errors
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
from async_etl.drivers.cratedb import ClientSettings, _Settings
from async_etl.errors import LoadError

__all__ = ["BlockingCrateDBClient"]


class BlockingCrateDBClient(_Settings):
    """The blocking twin of ``CrateDBClient`` (urllib3, thread-safe); ``close()`` when done.

    Raises ``ConfigError`` at construction for a bad URL or ``concurrency < 1``.
    """

    def __init__(self, url: str | Endpoint, **settings: Unpack[ClientSettings]) -> None:
        super().__init__(url, **settings)
        self._headers = self.endpoint.headers()
        self._pool: urllib3.HTTPConnectionPool | None = urllib3.connection_from_url(
            self.endpoint.base_url,
            maxsize=self.concurrency,
            block=True,
            retries=False,
            timeout=urllib3.Timeout(total=self.timeout),
        )

    def close(self) -> None:
        """Close the connection pool; safe to call twice."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def _request(self, method: str, path: str, body: bytes | None = None) -> tuple[Response, bytes]:
        if self._pool is None:
            raise LoadError(f"{self.where}: client is not open")
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

    def post(self, body: bytes) -> Response:
        """POST a ready ``/_sql`` body once (gzipped above the threshold) and parse the answer.

        Raises ``TransientLoadError`` (kind NETWORK) when no answer came back; an error answer
        is returned, not raised (see ``error_of``).
        """
        return self._request("POST", "/_sql", body)[0]

    def execute(self, stmt: str, args: Sequence[Any] | None = None) -> Response:
        """Run one statement; raise ``TransientLoadError`` / ``LoadError`` / ``DataError``."""
        response = self.post(build_request(stmt, args))
        err = error_of(response, self.where)
        if err is not None:
            raise err
        return response

    def resolve(
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
        """Decide the undecided items of ``verdict`` by resending them (as ``CrateDBClient``)."""
        resolution = Resolution(verdict, rows, group)
        while (items := resolution.next_group()) is not None:
            try:
                response = self.post(body_of(items))
            except errors.TransientLoadError as exc:
                resolution.transient(items, exc.message)
                continue
            judged = judge_resent(resolution, items, response, self.where, attempt=attempt,
                                  upsert=upsert, idempotent=idempotent)  # fmt: skip
            if judged is not None:
                resolution.feed(items, judged)
        return resolution.verdict()

    def server_version(self) -> str:
        """``GET /`` and return the version number; raise like ``execute`` when it fails."""
        response, raw = self._request("GET", "/")
        return checked_version(response, raw, self.where)
