"""The PostgreSQL source of mapper jobs: column types, estimates, chunk cuts, chunk reads.

All SQL text comes from ``async_etl.core.scd_sql_pg``; this adapter only runs it on a
connection it is handed (the job owns connections and their budget tokens).  Column types are
read with their modifiers (``varchar(20)``, ``numeric(12,2)``) from the catalog: a table's
own entry, after a ``SELECT * ... LIMIT 0`` of it that fails as reading it would (a missing
table, no privilege), or for a query a throw-away TEMP table created from it in a
transaction that is rolled back.  Either way inspecting a source writes nothing; a table's
needs no DDL, so it works on a read-only session (a standby, ``default_transaction_read_only``)
and costs a start three round trips and a temporary table's creation fewer.

Text keys: chunk bounds, ``ntile`` and ``ORDER BY`` compare in the run's chunk collation
(``core.collation``: the key column's own one, or code-point order ``"C"``), named explicitly
in every statement, so the target applies the very same ranges.  ``describe`` reports
each key column's collation for that choice.

``batches`` (the rows of a CrateDB or Oracle target) reads values exactly: intervals and bit
strings as text, infinite, BC and far-future dates as ``core.pg_values.PgMoment``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from async_etl.core import incremental as inc
from async_etl.core import key_stats as ks
from async_etl.core import scd_sql_pg as pg
from async_etl.core.chunks import NO_CUTS, Chunk, Cuts, sample_percent
from async_etl.core.collation import KeyCollation
from async_etl.core.drift import (
    NEAR_TABLE_SQL,
    near_table_args,
    near_table_hint,
    pg_column_types_sql,
)
from async_etl.core.pg_user_types import UserType, user_types_from_rows, user_types_sql
from async_etl.core.run_identity import PG_CLUSTER_SQL, PG_PLACE_SQL, Place
from async_etl.core.scd_sql_common import Sql, chunk_values, quote
from async_etl.core.sqltext import (
    EXACT_FLOATS_SQL,
    floats_print_exactly,
    inline_integers,
    inline_literals,
    quote_literals_sql,
    typed_literals,
)
from async_etl.drivers.postgres import PG_ERRORS, translate_pg, use_exact_codecs
from async_etl.errors import AsyncEtlError, DataError
from async_etl.log import get_logger
from async_etl.sources._base import SourceBase, reads
from async_etl.sources.port import Estimate

__all__ = ["PgSource", "read_place"]

log = get_logger(__name__)

_PROBE = "_async_etl_probe"


async def read_place(conn: Any, table: str | None) -> Place:
    """Where ``table`` is in the database of ``conn`` (``core.run_identity.Place``).

    ``PG_PLACE_SQL``, and ``PG_CLUSTER_SQL`` when the user may read it: the same whatever
    host name, user or password reached the server.  ``table`` None (a query): no table.
    Shared by the source and the target (``jobs.pg_driver``); raises the driver's errors.
    """
    schema, _, name = (table or "").rpartition(".")
    st = PG_PLACE_SQL
    values = {"relation": quote(table) if table else None, "schema": schema or None, "name": name}
    oid, readable, found_schema, found_name = await conn.fetchrow(st.text, *st.args(values))
    cluster = await conn.fetchval(PG_CLUSTER_SQL.text) if readable else None
    return cluster, str(oid), (f"{found_schema}.{found_name}" if table else None)


async def near_table(conn: Any, table: str) -> tuple[str, str] | None:
    """``(schema, name)`` of a table named ``table`` but for case, or None (``NEAR_TABLE_SQL``)."""
    row = await conn.fetchrow(NEAR_TABLE_SQL, *near_table_args(table))
    return None if row is None else (str(row[0]), str(row[1]))


class PgSource(SourceBase):
    """Reads the ``[source]`` query or table of a job from PostgreSQL (see ``SourceBase``)."""

    dialect = "postgresql"
    style = "pg"

    @property
    def relation(self) -> str:
        """``(query) AS q`` or the quoted table ``AS q``."""
        return pg.source_relation(self.query, self.table)

    def _translate(self, exc: BaseException) -> AsyncEtlError | None:
        return translate_pg(exc, self.where) if isinstance(exc, PG_ERRORS) else None

    @asynccontextmanager
    async def _probing(self, conn: Any) -> AsyncIterator[str]:
        """The relation whose catalog entry has the source's columns (see the module doc).

        A table: the table itself, once ``SELECT * ... LIMIT 0`` of it succeeded (one round
        trip, no transaction).  A query: a throw-away TEMP table shaped like it, in a
        transaction rolled back when the block ends.
        """
        if self.table is not None:
            try:
                await conn.execute(f"SELECT * FROM {self.relation} LIMIT 0")
            except PG_ERRORS as exc:  # undefined_table: name one differing in case only
                if getattr(exc, "sqlstate", None) != "42P01":
                    raise
                hint = near_table_hint(self.table, await near_table(conn, self.table))
                if not hint:
                    raise
                raise type(exc)(f"{exc}{hint}") from exc
            yield quote(self.table)
            return
        tr = conn.transaction()
        await tr.start()
        try:
            await conn.execute(
                f"CREATE TEMP TABLE {_PROBE} AS SELECT * FROM {self.relation} LIMIT 0"
            )
            yield f"pg_temp.{_PROBE}"
        finally:
            await tr.rollback()

    async def _columns(self, conn: Any, relation: str) -> list[tuple[str, str]]:
        rows = await conn.fetch(pg_column_types_sql("$1::regclass"), relation)
        return [(str(r[0]), str(r[1])) for r in rows]

    async def _key_collations(self, conn: Any, relation: str) -> list[KeyCollation | None]:
        st = pg.KEY_COLLATIONS_SQL
        rows = await conn.fetch(st.text, *st.args({"relation": relation, "keys": list(self.key)}))
        found = {str(r[0]): None if r[1] is None else KeyCollation(str(r[1]), r[2]) for r in rows}
        return [found.get(k) for k in self.key]

    @reads
    async def columns(self, conn: Any) -> list[tuple[str, str]]:
        """(name, SQL type with modifiers) of every source column, in order; writes nothing."""
        async with self._probing(conn) as relation:
            return await self._columns(conn, relation)

    @reads
    async def describe(self, conn: Any) -> tuple[list[tuple[str, str]], list[KeyCollation | None]]:
        """``columns``, and each key column's collation (None: a type without one).

        Both from one probe (for a query, one rolled-back transaction); writes nothing.
        """
        async with self._probing(conn) as relation:
            return await self._columns(conn, relation), await self._key_collations(conn, relation)

    @reads
    async def place(self, conn: Any) -> Place:
        """Where the source is (``read_place``): its database, and its table (a query: None)."""
        return await read_place(conn, self.table if self.query is None else None)

    @reads
    async def user_types(self, conn: Any, types: Sequence[str]) -> dict[str, UserType]:
        """``types`` (its columns' ``format_type`` names) as the source database defines them.

        With the user types they reach (``core.pg_user_types``); one round trip.
        """
        st = user_types_sql()
        return user_types_from_rows(await conn.fetch(st.text, *st.args({"types": list(types)})))

    @reads
    async def estimate(self, conn: Any) -> Estimate:
        """Row estimate: ``estimate_table_sql`` for a table, else ``EXPLAIN``; -1 when unknown.

        A window with a lower bound (an incremental run after the first) is counted exactly.
        The ``EXPLAIN`` document comes back as the plan (a query, a view, a table without
        statistics: ``incremental.row_cap`` reads it with no further round trip); else None.
        A plan ``query_plan`` read (a first incremental run's cursor check: the same rows, no
        window yet) is taken instead of a second ``EXPLAIN``, once.
        """
        if self.window is not None and self.window.start is not None:
            st = inc.window_count_sql("pg", self.relation, self.window)
            return Estimate(
                int(await conn.fetchval(st.text, *st.args(self._window_values()))), None
            )
        if self.table is not None:
            st = pg.estimate_table_sql()
            value = await conn.fetchval(st.text, quote(self.table))
            if value is not None and int(value) >= 0:
                return Estimate(int(value), None)
        doc, self.plan_read = self.plan_read, None  # query_plan's, taken once
        if doc is None:
            query = (
                self.query if self.query is not None else f"SELECT * FROM {quote(self.table or '')}"
            )
            doc = await conn.fetchval(pg.estimate_query_sql(query).text)
        try:
            return Estimate(pg.parse_explain_rows(doc), doc)
        except (KeyError, IndexError, TypeError, ValueError):
            return Estimate(-1, doc)

    @reads
    async def boundaries(
        self, conn: Any, n: int, collate: tuple[str | None, ...] = (), estimate: int = -1
    ) -> Cuts:
        """The cuts of ``n`` chunks of about equal row counts (none when ``n <= 1``).

        Sorted in ``collate`` (one collation per key column), and returned in that order.
        A table (not a view) of ``estimate`` rows large enough to sample
        (``chunks.sample_percent``) is cut at its key's histogram when the statistics are
        fresh (``core.key_stats``: no scan), else by a block sample.  A cut Python cannot
        hold (a BC date, a year past 9999) gives no cuts: one chunk, logged.
        """
        if n <= 1:
            return Cuts([], NO_CUTS)
        sample = sample_percent(estimate, n) if self.table is not None else None
        why = None
        if sample is not None:
            found, why, sampleable = await self._stats_cuts(conn, n, collate, estimate)
            if found is not None:
                return found
            if not sampleable:
                sample, why = None, None  # a view or a foreign table: read every row
        st = pg.boundaries_sql(self.query, self.table, self.key, collate, self.window, sample)
        args = st.args({"n": n, **self._window_values()})
        try:
            rows = await conn.fetch(st.text, *args)
        except (ValueError, OverflowError) as exc:  # a cut Python cannot hold (a BC date)
            log.warning("one_chunk", why=f"a chunk cut of {list(self.key)} is unreadable: {exc}")
            return Cuts([], NO_CUTS)  # one chunk covers every key: correct, only not parallel
        return Cuts([tuple(r) for r in rows], ks.from_sample(sample, why))

    async def _stats_cuts(
        self, conn: Any, n: int, collate: tuple[str | None, ...], estimate: int
    ) -> tuple[Cuts | None, str | None, bool]:
        """Cuts from the key's histogram (None: refused), why not, and whether to sample.

        Two catalog reads, no scan of the table (``core.key_stats``).
        """
        st = ks.KEY_STATS_SQL
        table = quote(self.table or "")
        row = await conn.fetchrow(st.text, *st.args({"table": table, "column": self.key[0]}))
        stats = ks.KeyStats.from_row(row)
        if self.window is not None:
            why: str | None = "an incremental window (the statistics cover the whole table)"
        else:
            why = ks.stats_refusal(stats, n, estimate, len(self.key))
        if why is not None:
            return None, why, stats.sampleable
        assert stats.type_name is not None
        hist = ks.histogram_sql(stats.type_name, collate[0] if collate else None)
        try:
            rows = await conn.fetch(hist.text, list(stats.bounds or ()))
        except (ValueError, OverflowError) as exc:  # a bound Python cannot hold (a BC date)
            return None, f"a histogram bound is unreadable: {exc}", True
        cuts = ks.histogram_cuts([(int(r[0]), r[1]) for r in rows], n)
        if cuts is None:
            return None, "the histogram is ordered in another collation", True
        return Cuts(list(cuts), ks.from_stats(stats)), None, True

    @reads
    async def null_keys(self, conn: Any) -> int:
        """How many source rows have a NULL in a key column."""
        st = inc.null_keys_sql("pg", self.relation, self.key, self.window)
        return int(await conn.fetchval(st.text, *st.args(self._window_values())))

    @reads
    async def unique_on(self, conn: Any, columns: Sequence[str]) -> bool:
        """Whether the source table's own unique index makes ``columns`` unique (a query: no).

        See ``scd_sql_pg.UNIQUE_ON_SQL``: only a plain unique index on non-collatable columns,
        all among ``columns``, counts.
        """
        if self.table is None or self.query is not None:
            return False
        st = pg.UNIQUE_ON_SQL
        return bool(await conn.fetchval(st.text, quote(self.table), list(columns)))

    @reads
    async def null_key_rows(self, conn: Any, limit: int) -> list[dict[str, Any]]:
        """Key values of up to ``limit`` rows with a NULL key part (for the rejects table)."""
        st = inc.null_keys_sql("pg", self.relation, self.key, self.window, limit)
        rows = await conn.fetch(st.text, *st.args(self._window_values()))
        return [dict(zip(self.key, r, strict=True)) for r in rows]

    @reads
    async def query_plan(self, conn: Any) -> Any:
        """PostgreSQL's plan of reading the whole source, for ``incremental.row_cap``.

        ``EXPLAIN (FORMAT JSON)`` without ``ANALYZE``: planned, not run.  Kept as
        ``plan_read`` for the next ``estimate``, which then sends none.
        """
        self.plan_read = await conn.fetchval(
            pg.estimate_query_sql(f"SELECT * FROM {self.relation}").text
        )
        return self.plan_read

    @reads
    async def holds(self, conn: Any, column: str, value: Any) -> bool:
        """Whether a row holds the date or time cursor ``value`` itself (``inc.holds_sql``)."""
        st, values = inc.holds_sql(self.relation, column, value)
        return bool(await conn.fetchval(st.text, *st.args(values)))

    @reads
    async def max_cursor(self, conn: Any, column: str) -> tuple[Any, bool]:
        """The highest value of ``column`` in the whole source, and whether it is NaN / +inf.

        (None, False): no value.  ``incremental.is_endless`` decides the second from
        PostgreSQL's text of the value (asyncpg reads ``infinity`` as it reads 9999-12-31).

        Raises ``DataError`` in one line when that value has no Python form (a year past
        9999): the run's cursor could not be kept.
        """
        text = inc.max_cursor_sql("pg", self.relation, column).text
        try:
            row = await conn.fetchrow(inc.max_cursor_sql("pg", self.relation, column, True).text)
            return row[0], inc.is_endless(row[0], row[1])
        except (ValueError, OverflowError):
            shown = await conn.fetchval(f"SELECT m::text FROM ({text}) AS q(m)")
            raise DataError(
                f"source cursor column {column}: its highest value {shown} has no Python form "
                "(years 1 to 9999 only), so the run's cursor cannot be kept"
            ) from None

    def extract(
        self, chunk: Chunk, tail: Sequence[str] = (), select: str = "*"
    ) -> tuple[Sql, list[Any]]:
        """The chunk's read statement and its arguments (``tail``: constants appended).

        ``select``: the columns as read (``core.pg_casts.cast_select``: cast to a target's).
        """
        st = pg.extract_sql(self.query, self.table, self.key, chunk, self.window, tail, select)
        return st, st.args({**chunk_values(chunk), **self._window_values()})

    async def batches(
        self, conn: Any, chunk: Chunk, size: int
    ) -> AsyncIterator[list[tuple[Any, ...]]]:
        """The chunk's rows in key order, ``size`` at a time (a server-side cursor).

        Values are read exactly (``drivers.postgres.use_exact_codecs``): only a target that
        stores Python values (CrateDB, Oracle) reads rows here; a PostgreSQL one copies them.
        The chunk's cuts are bound exactly too (a 9999-12-31 cut as 9999-12-31, not asyncpg's
        ``infinity``), as those targets bind them: the source and the target split the keys
        alike.
        """
        st, args = self.extract(chunk)
        with self.reading():
            await use_exact_codecs(conn)
            async with conn.transaction(readonly=True):
                batch: list[tuple[Any, ...]] = []
                async for record in conn.cursor(st.text, *args, prefetch=size):
                    batch.append(tuple(record))
                    if len(batch) >= size:
                        yield batch
                        batch = []
                if batch:
                    yield batch

    @reads
    async def copy_out(
        self,
        conn: Any,
        chunk: Chunk,
        output: Callable[[bytes], Awaitable[None]],
        tail: Sequence[str] = (),
        select: str = "*",
    ) -> int:
        """Stream the chunk as binary COPY data into ``output``; the row count.

        ``tail`` and ``select`` as for ``extract``.
        """
        st, args = self.extract(chunk, tail, select)
        standard = _standard_strings(conn)
        # integer bounds: no round trips to inline
        inlined = inline_integers(st.text, args, standard_strings=standard)
        if inlined is None:
            inlined = await _inline_through_server(conn, st.text, args, standard)
        status = await conn.copy_from_query(inlined, output=output, format="binary")
        tail = str(status).rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0


def _standard_strings(conn: Any) -> bool:
    """The session's ``standard_conforming_strings`` (reported by the server), as a bool."""
    return str(getattr(conn.get_settings(), "standard_conforming_strings", "on")) != "off"


async def _inline_through_server(
    conn: Any, text: str, args: Sequence[Any], standard_strings: bool
) -> str:
    """``text`` with each argument inlined as the literal the server writes for it.

    Two round trips, as asyncpg's own inlining (``copy_from_query`` with arguments): a
    prepare of ``text`` for its parameter types, then ``core.sqltext.quote_literals_sql``
    with the same arguments through the same codecs on the same connection, so each
    literal holds the very value the chunk plan bound.  Unlike asyncpg's, the placeholders
    are found by ``core.sqltext`` (none inside the user's string literals or comments) and
    each literal is cast to its parameter's type.  A session that prints floats inexactly
    (``extra_float_digits`` below 1, set on its role, database or URL) writes the literals
    again under ``EXACT_FLOATS_SQL`` (``_exact_floats``): else a float bound is another
    number and the rows between the two fall in the neighbouring chunk, not the one the
    plan (and the target) gives them.  Untranslated driver errors.
    """
    ps = await conn.prepare(text)
    types = [_type_name(t) for t in ps.get_parameters()]
    quoted: list[Any] = []
    if types:
        sql = quote_literals_sql(types)
        row = await conn.fetchrow(sql, *args)
        if not floats_print_exactly(row[-2], row[-1]):
            row = await _exact_floats(conn, sql, args)
        quoted = list(row)[: len(types)]
    literals = typed_literals(quoted, types)
    return inline_literals(text, literals, standard_strings=standard_strings)


async def _exact_floats(conn: Any, sql: str, args: Sequence[Any]) -> Any:
    """``sql``'s row under ``EXACT_FLOATS_SQL``; the session keeps its own setting.

    In a transaction (a savepoint when one is open) rolled back after: the ``SET LOCAL``
    ends with it.  Untranslated driver errors.
    """
    tr = conn.transaction()
    await tr.start()
    try:
        await conn.execute(EXACT_FLOATS_SQL)
        return await conn.fetchrow(sql, *args)
    finally:
        await tr.rollback()


def _type_name(t: Any) -> str:
    """An asyncpg ``Type`` as a qualified, quoted type name (``int4[]`` -> ``_int4``)."""
    name = "_" + t.name[:-2] if t.name.endswith("[]") else t.name
    return ".".join('"' + part.replace('"', '""') + '"' for part in (t.schema, name))
