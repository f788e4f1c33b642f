"""The PostgreSQL source of mapper jobs: column types, estimates, chunk cuts, chunk reads.

All SQL text comes from ``async_etl.core.scd_sql_pg``; this adapter only runs it on a
connection it is handed (the job owns connections and their budget tokens).  Column types are
read with their modifiers (``varchar(20)``, ``numeric(12,2)``) from a throw-away TEMP table
created in a transaction that is rolled back, so inspecting a source writes nothing.

Text keys: chunk bounds and ``ORDER BY`` follow the database's collation.  Row-value
comparison and ``ntile`` agree with each other under any collation, so chunks still cover
the key space exactly once, but a plan sampled under one collation and re-used after the
collation changes (e.g. a restore into a database with another locale) must be run with
``--fresh``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from async_etl.core import scd_sql_pg as pg
from async_etl.core.chunks import Chunk
from async_etl.core.scd_sql_common import Sql, chunk_values, quote

__all__ = ["PgSource"]

_PROBE = "_async_etl_probe"


class PgSource:
    """Reads the ``[source]`` query or table of a job from PostgreSQL."""

    dialect = "postgresql"

    def __init__(self, url: str, key: tuple[str, ...], query: str | None, table: str | None):
        self.url = url
        self.key = key
        self.query = query
        self.table = table

    @property
    def relation(self) -> str:
        """``(query) AS q`` or the quoted table ``AS q``."""
        return pg.source_relation(self.query, self.table)

    async def columns(self, conn: Any) -> list[tuple[str, str]]:
        """(name, SQL type with modifiers) of every source column, in order; writes nothing."""
        tr = conn.transaction()
        await tr.start()
        try:
            await conn.execute(
                f"CREATE TEMP TABLE {_PROBE} AS SELECT * FROM {self.relation} LIMIT 0"
            )
            rows = await conn.fetch(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                f"WHERE attrelid = 'pg_temp.{_PROBE}'::regclass AND attnum > 0 "
                "AND NOT attisdropped ORDER BY attnum"
            )
        finally:
            await tr.rollback()
        return [(str(r[0]), str(r[1])) for r in rows]

    async def estimate(self, conn: Any) -> int:
        """Planner row estimate: ``reltuples`` for a table, else ``EXPLAIN``; -1 when unknown."""
        if self.table is not None:
            st = pg.estimate_table_sql()
            value = await conn.fetchval(st.text, self.table)
            if value is not None and int(value) >= 0:
                return int(value)
        query = self.query if self.query is not None else f"SELECT * FROM {quote(self.table or '')}"
        doc = await conn.fetchval(pg.estimate_query_sql(query).text)
        try:
            return pg.parse_explain_rows(doc)
        except (KeyError, IndexError, TypeError, ValueError):
            return -1

    async def boundaries(self, conn: Any, n: int) -> list[tuple[Any, ...]]:
        """The cuts of ``n`` chunks of about equal row counts (none when ``n <= 1``)."""
        if n <= 1:
            return []
        st = pg.boundaries_sql(self.query, self.table, self.key)
        return [tuple(r) for r in await conn.fetch(st.text, *st.args({"n": n}))]

    async def null_keys(self, conn: Any) -> int:
        """How many source rows have a NULL in a key column."""
        return int(await conn.fetchval(pg.null_keys_sql(self.query, self.table, self.key).text))

    async def null_key_rows(self, conn: Any, limit: int) -> list[dict[str, Any]]:
        """Key values of up to ``limit`` rows with a NULL key part (for the rejects table)."""
        cols = ", ".join(f"q.{quote(c)}" for c in self.key)
        cond = " OR ".join(f"q.{quote(c)} IS NULL" for c in self.key)
        rows = await conn.fetch(f"SELECT {cols} FROM {self.relation} WHERE {cond} LIMIT {limit}")
        return [dict(zip(self.key, r, strict=True)) for r in rows]

    def extract(self, chunk: Chunk) -> tuple[Sql, list[Any]]:
        """The chunk's read statement and its arguments."""
        st = pg.extract_sql(self.query, self.table, self.key, chunk)
        return st, st.args(chunk_values(chunk))

    async def batches(
        self, conn: Any, chunk: Chunk, size: int
    ) -> AsyncIterator[list[tuple[Any, ...]]]:
        """The chunk's rows in key order, ``size`` at a time (a server-side cursor)."""
        st, args = self.extract(chunk)
        async with conn.transaction(readonly=True):
            batch: list[tuple[Any, ...]] = []
            async for record in conn.cursor(st.text, *args, prefetch=size):
                batch.append(tuple(record))
                if len(batch) >= size:
                    yield batch
                    batch = []
            if batch:
                yield batch

    async def copy_out(
        self, conn: Any, chunk: Chunk, output: Callable[[bytes], Awaitable[None]]
    ) -> int:
        """Stream the chunk as binary COPY data into ``output``; the row count."""
        st, args = self.extract(chunk)
        status = await conn.copy_from_query(st.text, *args, output=output, format="binary")
        tail = str(status).rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0
