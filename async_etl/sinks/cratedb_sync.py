"""The blocking CrateDB sink: ``bulk_args`` bodies over urllib3, for the thread runner.

The twin of ``async_etl.sinks.cratedb.CrateDBSink``: the same requests and the same decisions,
all from the sans-I/O ``async_etl.core.crate_protocol`` (``CrateTable``, ``verdict_for``,
``send_result``, ...) and ``core.crate_resolve`` for undecided items — only the I/O differs,
and it is done by ``async_etl.drivers.cratedb.BlockingCrateDBClient``: one urllib3 pool per
sink with ``maxsize = concurrency``, shared by the sender threads, so the thread runner never
holds more connections than the async runner's aiohttp connector (``limit = concurrency``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from async_etl.core import sink_rules
from async_etl.core.crate_answers import count_of, next_id
from async_etl.core.crate_protocol import (
    CrateTable,
    Response,
    attempt_body,
    send_result,
    verdict_for,
)
from async_etl.core.crate_resolve import bulk_items, detail_group, subset_items
from async_etl.drivers.cratedb_blocking import BlockingCrateDBClient
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
        self.client = BlockingCrateDBClient(
            url, concurrency=concurrency, timeout=timeout, gzip_threshold=gzip_threshold
        )
        self.endpoint = self.client.endpoint
        self.where = self.client.where
        self.table = CrateTable(table)
        self.version = ""
        self.pk: tuple[str, ...] = ()  # what a resend's ON CONFLICT names (default: the id)
        self._upsert = False
        self._stmt = ""
        self._closed = False

    def describe(self) -> str:
        """``CrateDB http://user@host:4200 schema.table`` — no password."""
        return f"{self.where} {self.endpoint.qualify(self.table.name)}"

    def execute(self, stmt: str, args: Sequence[Any] | None = None) -> Response:
        """Run one statement; raise ``TransientLoadError`` / ``LoadError`` / ``DataError``."""
        self._check_open()
        return self.client.execute(stmt, args)

    def prepare(self, schema: Schema) -> Target:
        """Check the server, create the table if missing and pick a fresh ``start_id``.

        Raises ``TransientLoadError`` when the server is unreachable or busy, ``LoadError``
        for bad credentials, privileges or DDL (or a closed sink); ``ConfigError`` for a column
        name CrateDB refuses (``Schema.crate_create_table``).
        """
        self._check_open()
        self.version = self.client.server_version()
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
        429, 503, 5xx; ``retry_after`` from the header), ``LoadError`` when it never will (or
        the sink is closed).
        """
        self._check_open()
        key = sink_rules.resend_key(self.pk, self.table.id_column)
        body = attempt_body(batch.payload, attempt, self._stmt, key)
        response = self.client.post(body)
        verdict = verdict_for(
            batch.row_count, response, where=self.where, attempt=attempt, upsert=self._upsert
        )
        if verdict.undecided:  # bare rowcount -2: resend those items to learn their error
            items = bulk_items(body)
            verdict = self.client.resolve(
                verdict, batch.row_count, lambda group: subset_items(items, group),
                attempt=attempt, upsert=self._upsert, group=detail_group(self.version),
            )  # fmt: skip
        return send_result(batch, verdict, response.retry_after)

    def count(self, ids: IdRange) -> int | None:
        """Rows with ids in ``ids`` after ``REFRESH TABLE``; raises like ``prepare``."""
        self.execute(self.table.refresh)
        response = self.execute(self.table.count_range, [ids.start, ids.stop])
        return count_of(response, self.where, self.table.count_range)

    def _check_open(self) -> None:
        if self._closed:
            raise sink_rules.closed(self.describe())

    def close(self) -> None:
        """Close the connection pool; safe to call twice."""
        self._closed = True
        self.client.close()
