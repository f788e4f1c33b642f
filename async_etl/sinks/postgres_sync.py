"""The blocking PostgreSQL sink: psycopg 3 binary COPY, exactly once per batch (thread runner).

The twin of ``async_etl.sinks.postgres.PostgresSink`` and the same contract: each batch is one
transaction of ``COPY ... FROM STDIN (FORMAT binary)`` with the worker-encoded payload plus one
ledger row keyed by the batch's first id, and a retry first asks the ledger whether the earlier
attempt committed.  The statements come from ``async_etl.sinks.pg_sql`` — both sinks run the
same SQL text (psycopg's ``RawCursor`` takes the ``$n`` placeholders asyncpg uses).

Connections: ``drivers.postgres_blocking.BlockingPool``, at most ``concurrency`` psycopg connections
shared by the sender threads, so the thread runner holds exactly as many connections as the
async runner's asyncpg pool.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from async_etl.core import sink_rules
from async_etl.core.schema import pg_shape_problems
from async_etl.core.urls import mask_url
from async_etl.drivers.postgres_blocking import (
    PSYCOPG_ERRORS,
    BlockingConnection,
    BlockingCursor,
    BlockingPool,
    translate_psycopg,
)
from async_etl.sinks.pg_sql import PgStatements
from async_etl.typing import EncodedBatch, Encoding, IdRange, SendResult, Target

if TYPE_CHECKING:
    from async_etl.core.schema import Schema


class BlockingPostgresSink:
    """A ``BlockingSink`` writing to PostgreSQL with psycopg binary COPY, ``concurrency`` conns."""

    def __init__(self, dsn: str, *, table: str, concurrency: int, unlogged: bool = False) -> None:
        self._dsn = dsn
        self._table = table
        self._unlogged = unlogged
        self._sql = PgStatements.for_table(table)
        self._pool: BlockingPool | None = BlockingPool(dsn, max(1, concurrency))
        self._copy = ""
        self._where = f"PostgreSQL {mask_url(dsn)} table {table}"

    def describe(self) -> str:
        """A human-readable, password-free name for reports."""
        return f"{mask_url(self._dsn)} table {self._table}"

    def _require(self) -> BlockingPool:
        if self._pool is None:
            raise sink_rules.closed(self._where)
        return self._pool

    def prepare(self, schema: Schema) -> Target:
        """Create the table and the ledger if missing, find the next free id.

        Raises ``LoadError`` / ``TransientLoadError`` when PostgreSQL refuses or is unreachable,
        ``LoadError`` once the sink is closed.
        """
        sql = self._sql
        try:
            with self._require().connection() as conn:
                conn.execute(sql.create_tables(schema, unlogged=self._unlogged))
                found = conn.execute(sql.columns, (sql.quoted,)).fetchall()
                shape = pg_shape_problems(schema, [tuple(r) for r in found])
                sink_rules.check_shape(self._where, self._table, shape)
                ledgered = _value(conn.execute(sql.next_from_ledger, (self._table,)))
                table_next = None
                if ledgered is None:  # no ledger yet: a table filled by something else, or empty
                    table_next = _value(conn.execute(sql.next_from_table))
        except PSYCOPG_ERRORS as exc:
            raise translate_psycopg(exc, self._where) from exc
        self._copy = sql.copy(schema.names)
        start = sink_rules.start_after(ledgered, table_next)
        return Target(Encoding("pg_binary"), start_id=start, description=self.describe())

    def send(self, batch: EncodedBatch, attempt: int) -> SendResult:
        """COPY one batch and record it in the ledger, in one transaction.

        Raises ``TransientLoadError`` for a lost connection or a transient SQLSTATE,
        ``LoadError`` for a permanent one (or a closed sink); a data error rejects the batch's
        rows instead (``core.sink_rules``).
        """
        rows = batch.row_count
        sql = self._sql
        try:
            with self._require().connection() as conn:
                if sink_rules.ask_ledger(attempt) and self._landed(conn, batch):
                    return sink_rules.landed(batch)
                with conn.transaction(), conn.cursor() as cur:
                    with cur.copy(self._copy) as copy:
                        copy.write(batch.payload)
                    cur.execute(sql.record, (self._table, batch.ids.start, rows))
        except PSYCOPG_ERRORS as exc:
            err = translate_psycopg(exc, self._where)
            refused = sink_rules.outcome(batch, err)
            if refused is None:
                raise err from exc
            return refused
        return SendResult(delivered=rows)

    def _landed(self, conn: BlockingConnection, batch: EncodedBatch) -> bool:
        found = conn.execute(self._sql.landed, (self._table, batch.ids.start)).fetchone()
        return found is not None

    def count(self, ids: IdRange) -> int | None:
        """Rows of the run's id range present in the table; raises like ``prepare``."""
        if self._pool is None:
            return None
        try:
            with self._pool.connection() as conn:
                row = conn.execute(self._sql.count, (ids.start, ids.stop)).fetchone()
        except PSYCOPG_ERRORS as exc:
            raise translate_psycopg(exc, self._where) from exc
        return int(row[0]) if row else 0

    def close(self) -> None:
        """Close the connections (idempotent)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()


def _value(cursor: BlockingCursor) -> Any:
    """The first column of the first row (None without a row), like asyncpg's ``fetchval``."""
    row = cursor.fetchone()
    return row[0] if row else None
