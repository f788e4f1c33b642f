"""PostgreSQL sink: binary COPY through an asyncpg pool, exactly once per batch.

Each batch is one transaction: ``COPY ... FROM STDIN (FORMAT binary)`` of the worker-encoded
payload, plus one row in a ledger table keyed by the batch's first id.  A connection lost
while committing leaves the outcome unknown; on the retry the ledger tells whether the first
attempt landed, so a batch is never written twice.  The ledger also gives the next run its
starting id without scanning the (unindexed) target.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from async_etl.core import sink_rules
from async_etl.core.schema import pg_shape_problems
from async_etl.core.urls import mask_url
from async_etl.drivers.postgres import (
    PG_ERRORS,
    Connection,
    Pool,
    open_pool,
    pooled,
    translate_pg,
)
from async_etl.errors import AsyncEtlError
from async_etl.sinks.closing import ClosingSink
from async_etl.sinks.pg_sql import LEDGER, PgStatements, split_table
from async_etl.typing import EncodedBatch, Encoding, IdRange, SendResult, Target

if TYPE_CHECKING:
    from async_etl.core.schema import Schema


async def _chunks(payload: bytes) -> AsyncIterator[bytes]:
    yield payload


__all__ = ["LEDGER", "PostgresSink", "split_table"]


class PostgresSink(ClosingSink):
    """An ``AsyncSink`` writing to PostgreSQL with binary COPY over a pool of ``concurrency``."""

    def __init__(self, dsn: str, *, table: str, concurrency: int, unlogged: bool = False) -> None:
        self._dsn = dsn
        self._table = table
        self.ledger_key = table  # the ledger's ``tbl``: a writer uses a key of its own
        self._schema_name, self._name = split_table(table)
        self._size = max(1, concurrency)
        self._unlogged = unlogged
        self._pool: Pool | None = None
        self._closed = False
        self._columns: tuple[str, ...] = ()
        self._where = f"PostgreSQL {mask_url(dsn)} table {table}"
        self._sql = PgStatements.for_table(table)

    def describe(self) -> str:
        """A human-readable, password-free name for reports."""
        return f"{mask_url(self._dsn)} table {self._table}"

    async def prepare(self, schema: Schema) -> Target:
        """Open the pool, create the table and the ledger if missing, find the next free id.

        Safe to call again after a ``TransientLoadError`` (the pool is kept and reused).
        Raises ``LoadError`` / ``TransientLoadError`` when PostgreSQL refuses or is unreachable,
        ``LoadError`` once the sink is closed.
        """
        if self._closed:
            raise sink_rules.closed(self._where)
        try:
            if self._pool is None:
                self._pool = await open_pool(
                    self._dsn, min_size=1, max_size=self._size, command_timeout=300
                )
            async with pooled(self._pool) as conn:
                await conn.execute(self._sql.create_tables(schema, unlogged=self._unlogged))
                found = await conn.fetch(self._sql.columns, self._sql.quoted)
                shape = pg_shape_problems(schema, [tuple(r) for r in found])
                sink_rules.check_shape(self._where, self._table, shape)
                ledgered = await conn.fetchval(self._sql.next_from_ledger, self._table)
                table_next = None
                if ledgered is None:  # no ledger yet: a table filled by something else, or empty
                    table_next = await conn.fetchval(self._sql.next_from_table)
        except AsyncEtlError:
            raise
        except PG_ERRORS as exc:
            raise translate_pg(exc, self._where) from exc
        self._columns = schema.names
        start = sink_rules.start_after(ledgered, table_next)
        return Target(Encoding("pg_binary"), start_id=start, description=self.describe())

    async def send(self, batch: EncodedBatch, attempt: int) -> SendResult:
        """COPY one batch and record it in the ledger, in one transaction.

        Raises ``TransientLoadError`` for a lost connection or a transient SQLSTATE,
        ``LoadError`` for a permanent one (or a closed sink); a data error rejects the batch's
        rows instead (``core.sink_rules``).
        """
        if self._pool is None:
            raise sink_rules.closed(self._where)
        rows = batch.row_count
        try:
            async with pooled(self._pool) as conn:
                if sink_rules.ask_ledger(attempt) and await self._landed(conn, batch):
                    return sink_rules.landed(batch)
                async with conn.transaction():
                    await self._copy(conn, batch)
                    await conn.execute(self._sql.record, self.ledger_key, batch.ids.start, rows)
        except PG_ERRORS as exc:
            err = translate_pg(exc, self._where)
            refused = sink_rules.outcome(batch, err)
            if refused is None:
                raise err from exc
            return refused
        return SendResult(delivered=rows)

    async def _copy(self, conn: Connection, batch: EncodedBatch) -> None:
        """COPY the batch's rows into the table (inside ``send``'s transaction)."""
        await conn.copy_to_table(
            self._name,
            schema_name=self._schema_name,
            source=_chunks(batch.payload),
            columns=list(self._columns),
            format="binary",
        )

    async def _landed(self, conn: Connection, batch: EncodedBatch) -> bool:
        found = await conn.fetchval(self._sql.landed, self.ledger_key, batch.ids.start)
        return found is not None

    async def count(self, ids: IdRange) -> int | None:
        """Rows of the run's id range present in the table."""
        if self._pool is None:
            return None
        try:
            async with pooled(self._pool) as conn:
                n = await conn.fetchval(self._sql.count, ids.start, ids.stop)
        except PG_ERRORS as exc:
            raise translate_pg(exc, self._where) from exc
        return int(n)

    async def aclose(self) -> None:
        """Close the pool (idempotent)."""
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await pool.close()
            except PG_ERRORS:  # pragma: no cover - closing a pool with broken connections
                pool.terminate()
