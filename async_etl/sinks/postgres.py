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

import asyncpg

from async_etl.errors import AsyncEtlError, DataError, TransientLoadError
from async_etl.sinks.pg_errors import translate_pg
from async_etl.typing import EncodedBatch, Encoding, IdRange, RowError, SendResult, Target

if TYPE_CHECKING:
    from async_etl.core.schema import Schema

LEDGER = "async_etl_bench_ledger"


async def _chunks(payload: bytes) -> AsyncIterator[bytes]:
    yield payload


def split_table(table: str) -> tuple[str | None, str]:
    """``schema.name`` -> (schema, name); ``name`` -> (None, name)."""
    schema, _, name = table.rpartition(".")
    return (schema or None), name


def mask_dsn(dsn: str) -> str:
    """The DSN with any password replaced by ``***``."""
    head, sep, tail = dsn.partition("@")
    if not sep or "://" not in head:
        return dsn
    scheme, _, cred = head.partition("://")
    user, colon, _ = cred.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{tail}"


class PostgresSink:
    """An ``AsyncSink`` writing to PostgreSQL with binary COPY over a pool of ``concurrency``."""

    def __init__(self, dsn: str, *, table: str, concurrency: int, unlogged: bool = False) -> None:
        self._dsn = dsn
        self._table = table
        self._schema_name, self._name = split_table(table)
        self._size = max(1, concurrency)
        self._unlogged = unlogged
        self._pool: asyncpg.Pool | None = None
        self._columns: tuple[str, ...] = ()
        self._where = f"PostgreSQL {mask_dsn(dsn)} table {table}"

    def describe(self) -> str:
        """A human-readable, password-free name for reports."""
        return f"{mask_dsn(self._dsn)} table {self._table}"

    @property
    def _ledger(self) -> str:
        return f'"{self._schema_name}".{LEDGER}' if self._schema_name else LEDGER

    async def prepare(self, schema: Schema) -> Target:
        """Open the pool, create the table and the ledger if missing, find the next free id."""
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn, min_size=1, max_size=self._size, command_timeout=300
            )
            async with self._pool.acquire() as conn:
                if self._schema_name:
                    await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self._schema_name}"')
                await conn.execute(schema.pg_create_table(self._table, unlogged=self._unlogged))
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {self._ledger} (tbl text NOT NULL, "
                    "start_id bigint NOT NULL, rows int NOT NULL, PRIMARY KEY (tbl, start_id))"
                )
                last = await conn.fetchval(
                    f"SELECT max(start_id + rows) FROM {self._ledger} WHERE tbl = $1", self._table
                )
                if last is None:  # no ledger yet: a table filled by something else, or empty
                    last = await conn.fetchval(
                        f"SELECT coalesce(max(id), 0) + 1 FROM {self._quoted()}"
                    )
        except AsyncEtlError:
            raise
        except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as exc:
            raise translate_pg(exc, self._where) from exc
        self._columns = schema.names
        return Target(Encoding("pg_binary"), start_id=int(last), description=self.describe())

    def _quoted(self) -> str:
        if self._schema_name:
            return f'"{self._schema_name}"."{self._name}"'
        return f'"{self._name}"'

    async def send(self, batch: EncodedBatch, attempt: int) -> SendResult:
        """COPY one batch and record it in the ledger, in one transaction."""
        assert self._pool is not None, "prepare() first"
        rows = batch.row_count
        try:
            async with self._pool.acquire() as conn:
                if attempt > 1 and await self._landed(conn, batch):
                    return SendResult(delivered=rows)
                async with conn.transaction():
                    await conn.copy_to_table(
                        self._name,
                        schema_name=self._schema_name,
                        source=_chunks(batch.payload),
                        columns=list(self._columns),
                        format="binary",
                    )
                    await conn.execute(
                        f"INSERT INTO {self._ledger} (tbl, start_id, rows) VALUES ($1, $2, $3)",
                        self._table,
                        batch.ids.start,
                        rows,
                    )
        except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError, TimeoutError) as exc:
            err = translate_pg(exc, self._where)
            if isinstance(err, DataError):  # COPY is all-or-nothing: the batch is refused
                reason = err.message
                ids = range(batch.ids.start, batch.ids.stop)
                return SendResult(delivered=0, rejected=tuple(RowError(i, reason) for i in ids))
            raise err from exc
        return SendResult(delivered=rows)

    async def _landed(self, conn: asyncpg.Connection, batch: EncodedBatch) -> bool:
        found = await conn.fetchval(
            f"SELECT 1 FROM {self._ledger} WHERE tbl = $1 AND start_id = $2",
            self._table,
            batch.ids.start,
        )
        return found is not None

    async def count(self, ids: IdRange) -> int | None:
        """Rows of the run's id range present in the table."""
        if self._pool is None:
            return None
        try:
            async with self._pool.acquire() as conn:
                n = await conn.fetchval(
                    f"SELECT count(*) FROM {self._quoted()} WHERE id >= $1 AND id < $2",
                    ids.start,
                    ids.stop,
                )
        except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as exc:
            raise translate_pg(exc, self._where) from exc
        return int(n)

    async def aclose(self) -> None:
        """Close the pool (idempotent)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await pool.close()
            except (OSError, asyncpg.InterfaceError, TransientLoadError):  # pragma: no cover
                pool.terminate()
