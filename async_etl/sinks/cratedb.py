"""The CrateDB sink: ``bulk_args`` bodies over HTTP, one attempt per ``send``.

Batches arrive already encoded by the workers (``wire="crate_json"``: the whole ``/_sql`` body,
rows in id order, id first).  ``send`` posts the bytes, and ``crate_protocol.judge_bulk``
splits the answer into delivered, rejected and retry items; the retry is a new body holding
exactly the items to resend.  The engine owns the retry loop and the backoff.

Every run writes a fresh id range (``start_id = max(id) + 1`` after a refresh), which is what
lets ``judge_bulk`` count a duplicate key on a re-sent row as our own earlier write.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from async_etl.core.crate_protocol import error_of, judge_bulk, subset_body
from async_etl.core.schema import quote_ident
from async_etl.errors import LoadError
from async_etl.sinks.crate_client import CrateDBClient
from async_etl.typing import EncodedBatch, Encoding, IdRange, RowError, SendResult, Target

if TYPE_CHECKING:
    from async_etl.core.schema import Schema

__all__ = ["CrateDBClient", "CrateDBSink"]


class CrateDBSink:
    """An ``AsyncSink`` writing to a CrateDB table through ``/_sql`` bulk requests.

    ``url`` is ``http[s]://user:password@host:4200?schema=s`` (``crate://`` = http);
    ``concurrency`` bounds the connection pool.  Raises ``ConfigError`` for a bad URL or table.
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
        self.client = CrateDBClient(
            url, concurrency=concurrency, timeout=timeout, gzip_threshold=gzip_threshold
        )
        self.table = table
        self._table = quote_ident(table)
        self._id = quote_ident("id")
        self._upsert = False
        self.version = ""

    def describe(self) -> str:
        """``CrateDB http://user@host:4200 schema.table`` — no password."""
        schema = self.client.endpoint.schema or "doc"
        qualified = self.table if "." in self.table else f"{schema}.{self.table}"
        return f"{self.client.where} {qualified}"

    async def prepare(self, schema: Schema) -> Target:
        """Check the server, create the table if missing and pick a fresh ``start_id``.

        Raises ``TransientLoadError`` when the server is unreachable or busy, ``LoadError``
        for bad credentials, privileges or DDL.
        """
        await self.client.open()
        self.version = await self.client.server_version()
        await self.client.execute(schema.crate_create_table(self.table))
        self._id = quote_ident(schema.names[0])
        await self.client.execute(f"REFRESH TABLE {self._table}")
        top = await self.client.execute(f"SELECT max({self._id}) FROM {self._table}")
        highest = top.rows[0][0] if top.rows and top.rows[0] else None
        stmt = schema.crate_insert(self.table)
        self._upsert = "ON CONFLICT" in stmt.upper()
        return Target(
            encoding=Encoding("crate_json", stmt),
            start_id=int(highest) + 1 if highest is not None else 1,
            description=self.describe(),
            extra={"version": self.version},
        )

    async def send(self, batch: EncodedBatch, attempt: int) -> SendResult:
        """Post one bulk body once and judge every item.

        Raises ``TransientLoadError`` when the request as a whole may succeed later (network,
        429, 503, 5xx; ``retry_after`` from the header), ``LoadError`` when it never will.
        """
        rows = batch.row_count
        response = await self.client.post(batch.payload)
        err = error_of(response, self.client.where, bulk_rows=rows)
        if err is not None:
            raise err
        try:
            verdict = judge_bulk(rows, response, attempt=attempt, upsert=self._upsert)
        except ValueError as exc:
            raise LoadError(f"{self.client.where}: {exc}") from exc
        if not verdict.retry and not verdict.rejected:
            return SendResult(delivered=verdict.delivered)
        retry_body, rejected = await self.client.in_thread(
            _split, batch.payload, verdict.retry, verdict.rejected
        )
        retry = None
        if retry_body is not None:
            retry = EncodedBatch(batch.ids, retry_body, batch.wire, rows=len(verdict.retry))
        return SendResult(
            delivered=verdict.delivered,
            rejected=rejected,
            retry=retry,
            retry_reason=verdict.retry_reason,
            retry_after=response.retry_after,
        )

    async def count(self, ids: IdRange) -> int | None:
        """Rows with ids in ``ids`` after ``REFRESH TABLE``; raises like ``prepare``."""
        await self.client.open()
        await self.client.execute(f"REFRESH TABLE {self._table}")
        response = await self.client.execute(
            f"SELECT count(*) FROM {self._table} WHERE {self._id} >= ? AND {self._id} < ?",
            [ids.start, ids.stop],
        )
        return int(response.rows[0][0])

    async def aclose(self) -> None:
        """Close the connection pool; safe to call twice."""
        await self.client.aclose()


def _split(
    payload: bytes, retry: tuple[int, ...], rejected: tuple[tuple[int, str], ...]
) -> tuple[bytes | None, tuple[RowError, ...]]:
    """Build the retry body and the rejected rows' errors (parses the payload: off the loop)."""
    body: bytes | None = None
    if retry:
        body, _ = subset_body(payload, retry)
    errors: tuple[RowError, ...] = ()
    if rejected:
        _, ids = subset_body(payload, [index for index, _ in rejected])
        errors = tuple(
            RowError(_as_id(row_id), reason)
            for row_id, (_, reason) in zip(ids, rejected, strict=True)
        )
    return body, errors


def _as_id(value: Any) -> int | None:
    return value if isinstance(value, int) else None
