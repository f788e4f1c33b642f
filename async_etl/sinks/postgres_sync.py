"""The blocking PostgreSQL sink: psycopg 3 binary COPY, exactly once per batch (thread runner).

The twin of ``async_etl.sinks.postgres.PostgresSink`` and the same contract: each batch is one
transaction of ``COPY ... FROM STDIN (FORMAT binary)`` with the worker-encoded payload plus one
ledger row keyed by the batch's first id, and a retry first asks the ledger whether the earlier
attempt committed.  The statements come from ``async_etl.sinks.pg_sql`` — both sinks run the
same SQL text (psycopg's ``RawCursor`` takes the ``$n`` placeholders asyncpg uses).

Connections: a small pool of at most ``concurrency`` psycopg connections shared by the sender
threads (a ``BoundedSemaphore`` in front of a LIFO of idle connections), so the thread runner
holds exactly as many connections as the async runner's asyncpg pool.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg

from async_etl.core import sink_rules
from async_etl.core.urls import mask_url
from async_etl.drivers.postgres import connect_blocking, translate_psycopg
from async_etl.sinks.pg_sql import PgStatements
from async_etl.typing import EncodedBatch, Encoding, IdRange, SendResult, Target

if TYPE_CHECKING:
    from async_etl.core.schema import Schema

_IDLE = psycopg.pq.TransactionStatus.IDLE


class _Pool:
    """At most ``size`` psycopg connections, opened on demand and shared between threads."""

    def __init__(self, dsn: str, size: int) -> None:
        self._dsn = dsn
        self._slots = threading.BoundedSemaphore(size)
        self._idle: queue.LifoQueue[psycopg.Connection[Any]] = queue.LifoQueue()

    def _take(self) -> psycopg.Connection[Any]:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        return connect_blocking(self._dsn)

    def _drop(self, conn: psycopg.Connection[Any]) -> None:
        conn.close()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """Borrow a connection (waiting for a free slot); a broken one is closed, not returned."""
        with self._slots:
            conn = self._take()
            try:
                yield conn
            except BaseException:
                if conn.broken or conn.closed or conn.info.transaction_status != _IDLE:
                    self._drop(conn)
                else:
                    self._idle.put(conn)
                raise
            self._idle.put(conn)

    def close(self) -> None:
        """Close every idle connection (callers have returned theirs)."""
        while True:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                return
            self._drop(conn)


class BlockingPostgresSink:
    """A ``BlockingSink`` writing to PostgreSQL with psycopg binary COPY, ``concurrency`` conns."""

    def __init__(self, dsn: str, *, table: str, concurrency: int, unlogged: bool = False) -> None:
        self._dsn = dsn
        self._table = table
        self._unlogged = unlogged
        self._sql = PgStatements.for_table(table)
        self._pool: _Pool | None = _Pool(dsn, max(1, concurrency))
        self._copy = ""
        self._where = f"PostgreSQL {mask_url(dsn)} table {table}"

    def describe(self) -> str:
        """A human-readable, password-free name for reports."""
        return f"{mask_url(self._dsn)} table {self._table}"

    def _require(self) -> _Pool:
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
                if sql.create_schema:
                    conn.execute(sql.create_schema)
                conn.execute(schema.pg_create_table(self._table, unlogged=self._unlogged))
                conn.execute(sql.create_ledger)
                ledgered = _value(conn.execute(sql.next_from_ledger, (self._table,)))
                table_next = None
                if ledgered is None:  # no ledger yet: a table filled by something else, or empty
                    table_next = _value(conn.execute(sql.next_from_table))
        except (psycopg.Error, OSError) as exc:
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
        except (psycopg.Error, OSError) as exc:
            err = translate_psycopg(exc, self._where)
            refused = sink_rules.outcome(batch, err)
            if refused is None:
                raise err from exc
            return refused
        return SendResult(delivered=rows)

    def _landed(self, conn: psycopg.Connection[Any], batch: EncodedBatch) -> bool:
        found = conn.execute(self._sql.landed, (self._table, batch.ids.start)).fetchone()
        return found is not None

    def count(self, ids: IdRange) -> int | None:
        """Rows of the run's id range present in the table; raises like ``prepare``."""
        if self._pool is None:
            return None
        try:
            with self._pool.connection() as conn:
                row = conn.execute(self._sql.count, (ids.start, ids.stop)).fetchone()
        except (psycopg.Error, OSError) as exc:
            raise translate_psycopg(exc, self._where) from exc
        return int(row[0]) if row else 0

    def close(self) -> None:
        """Close the connections (idempotent)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()


def _value(cursor: psycopg.Cursor[Any]) -> Any:
    """The first column of the first row (None without a row), like asyncpg's ``fetchval``."""
    row = cursor.fetchone()
    return row[0] if row else None
