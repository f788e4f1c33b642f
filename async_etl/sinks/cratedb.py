"""The CrateDB sink: ``bulk_args`` bodies over HTTP, one attempt per ``send``.

Batches arrive already encoded by the workers (``wire="crate_json"``: the whole ``/_sql`` body,
rows in id order, id first).  ``send`` posts the bytes, and ``crate_protocol.judge_bulk``
splits the answer into delivered, rejected, retry and undecided items.  Undecided items (a bare
``rowcount -2``: CrateDB details only 10 failures per shard) are resolved inside the same
``send`` by resending them in small bulks with the same statement (``core.crate_resolve``);
the retry is a new body holding exactly the items to resend.  With ``isolate_refusals`` (the
writer's sink), a bulk refused as a whole with a ``400`` (one item's value CrateDB cannot
cast or store) is bisected the same way, so the good items land and each bad one is rejected
with its own reason.  The engine owns the retry loop
and the backoff.

Every run writes a fresh id range (``start_id = max(id) + 1`` after a refresh), which is what
lets ``judge_bulk`` count a duplicate key on a re-sent row as our own earlier write.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from async_etl.core import sink_rules
from async_etl.core.crate_answers import count_of, next_id, query_rows
from async_etl.core.crate_protocol import (
    BulkVerdict,
    CrateTable,
    attempt_body,
    send_result,
    verdict_for,
)
from async_etl.core.crate_resolve import bulk_items, detail_group, refused_as_whole, subset_items
from async_etl.core.schema import crate_shape_problems
from async_etl.core.sink_rules import check_shape
from async_etl.core.writer_sql import CRATE_COLUMNS
from async_etl.drivers.cratedb import CrateDBClient
from async_etl.sinks.closing import ClosingSink
from async_etl.typing import EncodedBatch, Encoding, IdRange, SendResult, Target

if TYPE_CHECKING:
    from async_etl.core.schema import Schema

__all__ = ["CrateDBSink"]


class CrateDBSink(ClosingSink):
    """An ``AsyncSink`` writing to a CrateDB table through ``/_sql`` bulk requests.

    ``url`` is ``http[s]://user:password@host:4200?schema=s`` (``crate://`` = http);
    ``concurrency`` bounds the connection pool.  Raises ``ConfigError`` for a bad URL or table.
    """

    isolate_refusals = False
    """Bisect a bulk refused as a whole (``400``) to reject only its bad items."""

    gzip_in_thread = True
    """Gzip large bodies in a thread (False: in the loop, a slice at a time; see the client)."""

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
            url, concurrency=concurrency, timeout=timeout, gzip_threshold=gzip_threshold,
            gzip_in_thread=self.gzip_in_thread,
        )  # fmt: skip
        self.table = CrateTable(table)
        self._upsert = False
        self._stmt = ""
        self.pk: tuple[str, ...] = ()  # what a resend's ON CONFLICT names (default: the id)
        self.version = ""
        self._closed = False

    def describe(self) -> str:
        """``CrateDB http://user@host:4200 schema.table`` — no password."""
        return f"{self.client.where} {self.client.endpoint.qualify(self.table.name)}"

    async def prepare(self, schema: Schema) -> Target:
        """Check the server, create the table if missing and pick a fresh ``start_id``.

        Raises ``TransientLoadError`` when the server is unreachable or busy, ``LoadError``
        for bad credentials, privileges or DDL (or a closed sink); ``ConfigError`` for a column
        name CrateDB refuses (``Schema.crate_create_table``).
        """
        self._check_open()
        await self.client.open()
        self.version = await self.client.server_version()
        await self.client.execute(schema.crate_create_table(self.table.name))
        qualified = self.client.endpoint.qualify(self.table.name)
        found = await self.client.execute(CRATE_COLUMNS, list(qualified.rsplit(".", 1)))
        columns = query_rows(found, self.client.where, CRATE_COLUMNS, width=3)
        types = [(str(r[0]), str(r[1])) for r in columns if "[" not in str(r[0])]
        check_shape(self.client.where, self.table.name, crate_shape_problems(schema, types))
        self.table = CrateTable(self.table.name, schema.names[0])
        await self.client.execute(self.table.refresh)
        top = await self.client.execute(self.table.max_id)
        stmt = schema.crate_insert(self.table.name)
        self._upsert = "ON CONFLICT" in stmt.upper()
        self._stmt = stmt
        return Target(
            encoding=Encoding("crate_json", stmt),
            start_id=next_id(top, self.client.where, self.table.max_id),
            description=self.describe(),
            extra={"version": self.version},
        )

    async def send(self, batch: EncodedBatch, attempt: int) -> SendResult:
        """Post one bulk body once and judge every item.

        Raises ``TransientLoadError`` when the request as a whole may succeed later (network,
        429, 503, 5xx; ``retry_after`` from the header), ``LoadError`` when it never will (or
        the sink is closed).
        """
        self._check_open()
        key = sink_rules.resend_key(self.pk, self.table.id_column)
        body = attempt_body(batch.payload, attempt, self._stmt, key)
        response = await self.client.post(body)
        if self.isolate_refusals and refused_as_whole(response, batch.row_count):
            items = await self.client.in_thread(bulk_items, body)
            verdict = await self.client.resolve(
                BulkVerdict(0), batch.row_count, lambda group: subset_items(items, group),
                attempt=attempt, upsert=self._upsert, whole=True,
            )  # fmt: skip
            return await self.client.in_thread(send_result, batch, verdict, None)
        verdict = verdict_for(
            batch.row_count, response, where=self.client.where, attempt=attempt, upsert=self._upsert
        )
        if verdict.undecided:  # bare rowcount -2: resend those items to learn their error
            items = await self.client.in_thread(bulk_items, body)
            verdict = await self.client.resolve(
                verdict, batch.row_count, lambda group: subset_items(items, group),
                attempt=attempt, upsert=self._upsert, group=detail_group(self.version),
            )  # fmt: skip
        if verdict.complete:
            return SendResult(delivered=verdict.delivered)
        # rebuilding the retry body parses the payload: CPU work, off the loop
        return await self.client.in_thread(send_result, batch, verdict, response.retry_after)

    async def count(self, ids: IdRange) -> int | None:
        """Rows with ids in ``ids`` after ``REFRESH TABLE``; raises like ``prepare``."""
        self._check_open()
        await self.client.open()
        await self.client.execute(self.table.refresh)
        response = await self.client.execute(self.table.count_range, [ids.start, ids.stop])
        return count_of(response, self.client.where, self.table.count_range)

    def _check_open(self) -> None:
        if self._closed:
            raise sink_rules.closed(self.describe())

    async def aclose(self) -> None:
        """Close the connection pool; safe to call twice."""
        self._closed = True
        await self.client.aclose()
