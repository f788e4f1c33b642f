"""The Oracle source of mapper jobs (python-oracledb asyncio connections, ``:1`` binds).

SQL text comes from ``async_etl.core.scd_sql_oracle``; this adapter runs it on a connection
it is handed.  Column names come back as Oracle folds them (upper case) and are lower-cased
for the job; their types are mapped to PostgreSQL names (``pg_type_of_oracle``) so every
target can create its table from them.  Text keys compare in code-point order: every Oracle
connection of a job runs with ``NLS_SORT = BINARY`` and ``NLS_COMP = BINARY``
(``scd_sql_oracle.SESSION_SQL``), so ``NTILE``, ``ORDER BY`` and the chunk bounds agree with
each other and with the target's ``COLLATE "C"`` (``core.collation``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from async_etl.core import incremental as inc
from async_etl.core import scd_sql_oracle as ora
from async_etl.core.chunks import NO_CUTS, Chunk, Cuts
from async_etl.core.collation import BINARY, KeyCollation, is_text_type
from async_etl.core.key_stats import from_sample
from async_etl.core.run_identity import Place
from async_etl.core.scd_sql_common import Sql, chunk_values, quote
from async_etl.drivers.oracle import oracle_errors, translate_oracle
from async_etl.errors import AsyncEtlError
from async_etl.sources._base import SourceBase, reads
from async_etl.sources.port import Estimate

__all__ = ["OracleSource", "pg_type_of_oracle"]


class OracleSource(SourceBase):
    """Reads the ``[source]`` query or table of a job from Oracle (see ``SourceBase``)."""

    dialect = "oracle"
    style = "oracle"

    @property
    def relation(self) -> str:
        """``(query) q`` or the quoted table ``q``."""
        return ora.source_relation(self.query, self.table)

    def _translate(self, exc: BaseException) -> AsyncEtlError | None:
        return translate_oracle(exc, self.where) if isinstance(exc, oracle_errors()) else None

    @reads
    async def columns(self, conn: Any) -> list[tuple[str, str]]:
        """(lower-cased name, PostgreSQL type) of every source column, in order."""
        cursor = conn.cursor()
        await cursor.execute(f"SELECT * FROM {self.relation} WHERE 1 = 0")
        out = []
        for name, dbtype, _display, size, precision, scale, _null in cursor.description:
            type_name = str(getattr(dbtype, "name", dbtype))
            out.append((str(name).lower(), pg_type_of_oracle(type_name, precision, scale, size)))
        return out

    async def describe(self, conn: Any) -> tuple[list[tuple[str, str]], list[KeyCollation | None]]:
        """``columns``, and each key column's ordering from that one read of the columns.

        The ordering is code-point (``BINARY``) for strings, None otherwise.
        """
        columns = await self.columns(conn)
        return columns, self._key_order(columns)

    def _key_order(self, columns: list[tuple[str, str]]) -> list[KeyCollation | None]:
        types = dict(columns)
        text = KeyCollation(BINARY, BINARY)
        return [text if is_text_type(types.get(k, "")) else None for k in self.key]

    async def estimate(self, conn: Any) -> Estimate:
        """``rows``, with no plan (``incremental.row_cap`` reads PostgreSQL's only)."""
        return Estimate(await self.rows(conn), None)

    @reads
    async def rows(self, conn: Any) -> int:
        """Optimizer statistics for a table, else ``EXPLAIN PLAN``; -1 when unknown.

        A window with a lower bound (an incremental run after the first) is counted exactly.
        """
        cursor = conn.cursor()
        if self.window is not None and self.window.start is not None:
            st = inc.window_count_sql("oracle", self.relation, self.window)
            await cursor.execute(st.text, st.args(self._window_values()))
            return int((await cursor.fetchone())[0])
        if self.table is not None:
            owner, _, name = self.table.upper().rpartition(".")
            if not owner:
                await cursor.execute("SELECT USER FROM dual")
                owner = str((await cursor.fetchone())[0])
            st = ora.estimate_table_sql()
            await cursor.execute(st.text, [owner, name])
            row = await cursor.fetchone()
            if row is not None and row[0] is not None:
                return int(row[0])
        query = self.query or f"SELECT * FROM {quote(self.table or '', 'oracle')}"
        explain, read = ora.explain_sql("async_etl_estimate", query)
        try:
            await cursor.execute(explain.text)
            await cursor.execute(read.text, ["async_etl_estimate"])
            row = await cursor.fetchone()
        finally:
            await conn.rollback()
        return int(row[0]) if row is not None and row[0] is not None else -1

    @reads
    async def boundaries(
        self, conn: Any, n: int, collate: tuple[str | None, ...] = (), estimate: int = -1
    ) -> Cuts:
        """The cuts of ``n`` chunks of about equal row counts (none when ``n <= 1``).

        The session sorts in code-point order, which is what ``collate`` says for Oracle.
        Oracle reads every row (``estimate`` is not used).
        """
        del collate, estimate
        if n <= 1:
            return Cuts([], NO_CUTS)
        st = ora.boundaries_sql(self.query, self.table, self.key, self.window)
        cursor = conn.cursor()
        await cursor.execute(st.text, st.args({"n": n, **self._window_values()}))
        return Cuts([tuple(r) for r in await cursor.fetchall()], from_sample(None, None))

    async def place(self, conn: Any) -> Place:
        """(None, None, the table upper-cased as Oracle folds it; a query: None): none asked."""
        del conn
        return None, None, (self.table.upper() if self.table and self.query is None else None)

    @reads
    async def null_keys(self, conn: Any) -> int:
        """How many source rows have a NULL in a key column."""
        st = inc.null_keys_sql("oracle", self.relation, self.key, self.window)
        cursor = conn.cursor()
        await cursor.execute(st.text, st.args(self._window_values()))
        return int((await cursor.fetchone())[0])

    @reads
    async def null_key_rows(self, conn: Any, limit: int) -> list[dict[str, Any]]:
        """Key values of up to ``limit`` rows with a NULL key part."""
        st = inc.null_keys_sql("oracle", self.relation, self.key, self.window, limit)
        cursor = conn.cursor()
        await cursor.execute(st.text, st.args(self._window_values()))
        return [dict(zip(self.key, r, strict=True)) for r in await cursor.fetchall()]

    @reads
    async def query_plan(self, conn: Any) -> Any:
        """None: no plan is read from Oracle (``incremental.row_cap`` is PostgreSQL's)."""
        return None

    async def holds(self, conn: Any, column: str, value: Any) -> bool:
        """True: an Oracle date has no infinity, so a cursor at its maximum is that value."""
        return True

    async def max_cursor(self, conn: Any, column: str) -> tuple[Any, bool]:
        """The highest value of ``column`` in the whole source, and whether it is NaN / +inf.

        (None, False): no value.  Only a ``BINARY_DOUBLE`` can be NaN / +infinity here: Oracle
        dates have no infinity.
        """
        cursor = conn.cursor()
        await cursor.execute(inc.max_cursor_sql("oracle", self.relation, column).text)
        top = (await cursor.fetchone())[0]
        return top, inc.is_endless(top)

    def extract(self, chunk: Chunk) -> tuple[Sql, list[Any]]:
        """The chunk's read statement and its arguments."""
        st = ora.extract_sql(self.query, self.table, self.key, chunk, self.window)
        return st, st.args({**chunk_values(chunk), **self._window_values()})

    async def batches(
        self, conn: Any, chunk: Chunk, size: int
    ) -> AsyncIterator[list[tuple[Any, ...]]]:
        """The chunk's rows in key order, ``size`` at a time."""
        st, args = self.extract(chunk)
        with self.reading():
            cursor = conn.cursor()
            cursor.arraysize = size
            await cursor.execute(st.text, args)
            while True:
                rows = await cursor.fetchmany(size)
                if not rows:
                    return
                yield [tuple(r) for r in rows]


def pg_type_of_oracle(type_name: str, precision: int | None, scale: int | None,
                      size: int | None) -> str:  # fmt: skip
    """A PostgreSQL type for an Oracle column (``cursor.description`` type name and sizes)."""
    name = type_name.upper().removeprefix("DB_TYPE_")
    if name == "NUMBER":
        if scale == 0 and precision is not None and precision <= 18:
            return "bigint"
        if precision and scale is not None and scale > -127:
            return f"numeric({precision},{max(scale, 0)})"
        return "numeric"
    if name in ("VARCHAR", "VARCHAR2", "NVARCHAR", "NVARCHAR2", "CHAR", "NCHAR"):
        return f"character varying({size})" if size else "text"
    if name in ("CLOB", "NCLOB", "LONG"):
        return "text"
    if name in ("BINARY_DOUBLE",):
        return "double precision"
    if name in ("BINARY_FLOAT",):
        return "real"
    if name in ("DATE", "TIMESTAMP"):
        return "timestamp without time zone"
    if name in ("TIMESTAMP_TZ", "TIMESTAMP_LTZ"):
        return "timestamp with time zone"
    if name in ("BOOLEAN",):
        return "boolean"
    if name in ("RAW", "BLOB", "LONG_RAW"):
        return "bytea"
    return "text"
