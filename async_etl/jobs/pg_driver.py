"""The PostgreSQL target driver: one chunk = one transaction (stage, merge, checkpoint).

Per chunk, on one connection (one budget token), in ONE transaction:

0. when the chunk's key range holds no row of the target yet (an initial load, a new key
   range, every chunk of a full refresh) and ``on_bad_row = "fail"``, the rows go straight
   into the target by the same path as step 2 (type 2: with the initial version's
   ``valid_from`` / ``valid_to`` / ``is_current`` appended by the source's SELECT, or, into a
   full refresh's new table not made LIKE an existing target, filled by that table's column
   defaults, set for the run and dropped again by ``swap``): one write instead of two, the
   target's unique indexes still refusing a key read twice; then 4 and 5;
1. ``CREATE TEMP TABLE IF NOT EXISTS`` the staging table (``ON COMMIT DELETE ROWS``);
2. stage the chunk's source rows:
   * source in the same database: ``INSERT INTO staging SELECT ... `` (no round trip);
   * another PostgreSQL database: binary ``COPY`` out of the source piped into binary
     ``COPY`` in (a bounded memory stream between the two, the stop flag checked between
     buffers);
   * Oracle: batches from the source adapter through ``copy_records_to_table``, on the
     exact codecs (``drivers.postgres.use_exact_codecs``): asyncpg's own write the dates
     9999-12-31 and 0001-01-01 (Oracle's "end of time") as ``infinity`` / ``-infinity``;
     a text longer than its ``varchar(n)`` target is marked as the SELECT guards mark a
     PostgreSQL source's (``core.pg_casts.guard_rows``), so it is refused, never cut;
3. every statement of ``scd_sql_pg.merge_statements`` (counted ones return one row), or,
   for a type-2 run later than every version, the one statement of
   ``scd_sql_pg_latest.latest_merge_statements`` (one join of staging with the chunk's
   current rows instead of three);
   before it, a business key staged twice fails the chunk naming it, or with
   ``on_bad_row = "reject"`` has all its rows rejected and the target's current row re-staged
   in their place (``core.duplicates``);
   with ``on_bad_row = "reject"`` the merge runs in a savepoint and a data error hands over to
   ``rejects.find_bad_rows`` before it runs again;
4. ``CHECKPOINT_CHUNK`` (and the rejects) when the state store is this database, with the
   incremental cursor the chunk covers: the job's cursor commits with the chunk's data; a
   chunk found COMMITTED already rolls this copy back: by this run's own earlier attempt
   whose commit went unacknowledged, the chunk is done, counted from its checkpoint; by a
   run that lost its lock to this one, a ``CheckpointError`` (``jobs.pg_checkpoint``);
5. COMMIT.  A failure anywhere rolls everything back: no partial chunk is ever visible.
   When the checkpoint is in the chunk's own transaction, the COMMIT does not wait for its
   WAL to reach the disk (``SET LOCAL synchronous_commit = off``): a server crash can lose
   a chunk only together with its checkpoint (the resumed run loads it again), and the
   run's later synchronous commits on this database (the run row every ``UPDATE_EVERY``
   chunks and at the end, a full refresh's swap) flush every chunk committed before them.
   A checkpoint kept in another database waits for the flush, as before.

The connection is the one the worker's previous chunk gave back when there is one
(``drivers.postgres_connections.Shelf``; a retry always connects afresh); a chunk leaves
nothing on it but the TEMP staging table (its rows deleted at commit).  A source in another
PostgreSQL database is connected to at the same time as the target, before step 0, where
neither is kept (``connected_ahead``; its budget tokens are taken target first, as before).

Modes (``core.modes``): ``append`` COPYs (or, same database, ``INSERT ... SELECT``s) the
chunk straight into the target, with no staging, comparison or key index (with
``on_bad_row = "reject"`` it goes through staging so bad rows can be found), and commits it
with its checkpoint; a ``full_refresh`` loads its new table like an initial load and ``swap``
replaces the target with it in one transaction.  With ``on_bad_row = "fail"`` the new table is
created without its unique indexes: every chunk is COPYed straight in with no emptiness check
(a new run starts the table empty, and a chunk's rows are there only once it committed, in its
own key range; nothing on the table can refuse a row, so no savepoint), and ``swap`` builds the
indexes (at the same time, one connection each; each commits without waiting for its WAL flush,
which the swap's commit waits for) before the transaction that drops and renames; building an
index once costs less than maintaining it row by row, and a key the source holds twice fails
the build, naming the key, with the old table untouched.

Beside it: ``jobs.pg_tables`` (whether tables exist, the target's indexes, when the engine's
key index would repeat one of them) and ``jobs.pg_pipe`` (the binary COPY pipe from another
PostgreSQL database, and the index builds run together).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

from async_etl.core import drift, state_sql
from async_etl.core import refresh_pg as refresh
from async_etl.core import scd_sql_pg as pg
from async_etl.core import sequences_pg as seq
from async_etl.core.chunks import Chunk
from async_etl.core.modes import indexes_after_load
from async_etl.core.modes import pg_swap_sql as swap_sql
from async_etl.core.pg_casts import (
    cast_select,
    copy_casts,
    guard_rows,
    guarded_columns,
    length_guards,
    too_long_line,
    unbounded,
)
from async_etl.core.pg_user_types import UserType, user_types_from_rows, user_types_sql
from async_etl.core.run_identity import Place
from async_etl.core.scd_sql_common import Sql, chunk_values, quote
from async_etl.core.scd_sql_pg import STAGING
from async_etl.core.specs import ScdColumns
from async_etl.core.urls import mask_url
from async_etl.drivers.postgres import (
    PostgresError,
    UniqueViolation,
    is_data_error,
    use_exact_codecs,
)
from async_etl.drivers.postgres_connections import (
    connected_ahead,
    let_go,
    pg_connection,
    reusing,
)
from async_etl.errors import ConfigError, DataError, LoadError, TransientError
from async_etl.jobs.context import (
    COUNTERS,
    ChunkResult,
    Holder,
    JobContext,
    Reject,
    key_json,
    null_key_rejects,
)
from async_etl.jobs.pg_checkpoint import (
    LEDGER,
    Landed,
    checkpoint_in,
    ensure_ledger,
    forget_landed,
    in_schema_of,
    landed_runs,
)
from async_etl.jobs.pg_pipe import bound, pipe, run_all
from async_etl.jobs.pg_tables import (
    drop_repeat,
    engine_indexes,
    key_indexed,
    no_repeat,
    table_exists,
    tables_exist,
    target_indexes,
)
from async_etl.jobs.spec import ledger
from async_etl.log import get_logger
from async_etl.sources.port import Source, source_connection
from async_etl.sources.postgres import PgSource, read_place

__all__ = ["INDEX_BUILD_MB", "STAGING", "PgTarget"]

log = get_logger(__name__)

INDEX_BUILD_MB = 256
"""``maintenance_work_mem`` (MB) shared by the builds of a loaded table's unique indexes."""

NO_FLUSH_WAIT = state_sql.NO_FLUSH_WAIT


REJECT_DEFERRABLE = (
    'which the merges of on_bad_row = "reject" cannot load beside (ON CONFLICT takes no '
    'deferrable constraint): use on_bad_row = "fail", which keeps it'
)
"""Why a type-1 full refresh that rejects rows refuses a deferrable key."""
MERGE_DEFERRABLE = (
    "which a merge (INSERT ... ON CONFLICT) cannot load beside (ON CONFLICT takes no "
    'deferrable constraint): re-create it NOT DEFERRABLE, or load with mode = "full_refresh" '
    'and on_bad_row = "fail", which keeps it'
)
"""Why a type-1 merge into an existing table refuses a deferrable key."""


async def _lost(conn: Any, table: str) -> list[str]:
    """What a drop-and-rename of ``table`` cannot keep (``refresh_pg.BLOCKERS_SQL``), one each."""
    return [str(r[0]) for r in await conn.fetch(refresh.BLOCKERS_SQL.text, quote(table))]


class PgTarget:
    """Merges chunks into ``[target] table`` of a PostgreSQL database."""

    def __init__(self, url: str, table: str) -> None:
        self.url = url
        self.table = table
        self.where = f"target {mask_url(url)} {table}"
        self.staging_collate: dict[str, str | None] = {}
        """Chunk-key column -> the target column's own collation (set by ``prepare``)."""
        self.nullable_key = False
        """Whether a business-key column of the target accepts NULL (set by ``prepare``)."""
        self.partitioned = False
        """Whether the table the chunks merge into is partitioned (set by ``prepare``)."""
        self.partition_key: tuple[str | None, ...] = ()
        """The existing target's partition key columns (None: an expression; set by ``columns``
        for a partitioned table, empty otherwise)."""
        self.dropped_columns = 0
        """The existing target's dropped columns, which count toward PostgreSQL's column limit
        (set by ``columns``)."""
        self.source_unique: bool | None = None
        """Whether the source's own unique index makes the business key unique, so no chunk
        can stage a key twice and the duplicate check is skipped (set by the first chunk that
        reads a PostgreSQL source; None: not known, check)."""
        self.deferred = False
        """Full refresh, ``on_bad_row = "fail"``: the new table's unique indexes are built by
        ``swap``, after the load, and every chunk goes straight in (set by ``prepare``)."""
        self.by_default = False
        """Type-2 deferred load into a new table not made LIKE an existing target: the
        initial version's values are the new table's column defaults, so chunks send only
        the source's columns; ``swap`` takes the as-of default off again (set by ``prepare``)."""

    def connection(self, holder: Holder, app: str) -> AbstractAsyncContextManager[Any]:
        """A target connection under a budget token (errors translated, URL masked)."""
        return pg_connection(self.url, holder, app=app, where=self.where)

    async def max_valid_from(self, holder: Holder, app: str, cols: ScdColumns) -> datetime | None:
        """Reach the target; its latest version start (None: no table yet, or type 1)."""
        async with self.connection(holder, app) as conn:
            if cols.type != 2 or not await table_exists(conn, self.table):
                return None
            value: datetime | None = await conn.fetchval(
                pg.max_valid_from_sql(self.table, cols).text
            )
            return value

    async def holds_history(self, holder: Holder, app: str, cols: ScdColumns) -> bool:
        """Whether the (type-2) table holds an expired version; False when it does not exist."""
        async with self.connection(holder, app) as conn:
            if not await table_exists(conn, self.table):
                return False
            return bool(await conn.fetchval(pg.history_sql(self.table, cols).text))

    async def collations(self, holder: Holder, app: str) -> frozenset[str] | None:
        """Every collation name of the target database (key ranges may compare in any)."""
        async with self.connection(holder, app) as conn:
            rows = await conn.fetch(pg.collation_names_sql().text)
        return frozenset(str(r[0]) for r in rows)

    async def place(self, holder: Holder, app: str, table: str) -> Place:
        """Where ``table`` is, as the server resolves it (``sources.postgres.read_place``).

        Raises translated driver errors.
        """
        async with self.connection(holder, app) as conn:
            return await read_place(conn, table)

    async def columns(self, holder: Holder, app: str) -> list[tuple[str, str]] | None:
        """(name, type) of the target table's columns in order; None when it does not exist.

        Raises ``ConfigError`` when the name is a relation other than a table (a view, a
        sequence, ...), or a table with a generated column (``drift.pg_generated_problem``):
        it would fail later, after the run was recorded, or read as drift.
        """
        st = drift.target_columns_sql("postgresql")
        dropped = drift.PG_DROPPED_COLUMNS_SQL
        async with self.connection(holder, app) as conn:
            rows = await conn.fetch(st.text, *st.args({"table": quote(self.table)}))
            if rows:
                self.dropped_columns = int(
                    await conn.fetchval(dropped.text, *dropped.args({"table": quote(self.table)}))
                )
        refused = drift.pg_not_a_table(str(rows[0][2])) if rows else None
        if refused is not None:
            raise ConfigError(f"{self.where} {refused}")
        generated = drift.pg_generated_problem([(str(r[0]), str(r[3])) for r in rows])
        if generated is not None:
            raise ConfigError(f"{self.where}: {generated}")
        if rows and rows[0][2] == "p":
            st = drift.pg_partition_key_sql()
            async with self.connection(holder, app) as conn:
                parts = await conn.fetch(st.text, *st.args({"relation": quote(self.table)}))
            self.partition_key = tuple(None if r[0] is None else str(r[0]) for r in parts)
        return [(str(r[0]), str(r[1])) for r in rows] or None

    async def refresh_problem(self, holder: Holder, app: str) -> str | None:
        """Why a full refresh may not replace this (existing) table, or None.

        ``core.refresh_pg.blockers_problem`` over what a drop-and-rename of it cannot keep
        (``BLOCKERS_SQL``): the decision ``prepare`` takes again (``_kept``), asked by preflight
        so that ``check`` and ``run`` refuse it before anything is recorded.  Raises translated
        driver errors.
        """
        async with self.connection(holder, app) as conn:
            return refresh.blockers_problem(await _lost(conn, self.table))

    async def user_types(
        self, holder: Holder, app: str, types: Sequence[str]
    ) -> dict[str, UserType]:
        """``types`` (``drift.pg_types_to_check``) as the target database defines them.

        With the user types they reach; kind None: it has no such type (``pg_user_types``).
        """
        st = user_types_sql()
        async with self.connection(holder, app) as conn:
            rows = await conn.fetch(st.text, *st.args({"types": list(types)}))
        return user_types_from_rows(rows)

    async def prepare(self, ctx: JobContext) -> None:
        """Create the target and its indexes if missing; add ``ctx.add_columns``.

        Key columns are created in the chunk collation (``ctx.collate``).  Staging key columns
        take the collation the target's columns really have (a table created beforehand may
        differ), so the merge's key joins never mix two explicit collations; its range filters
        name the chunk collation themselves.  A type-1 target with an index of its own that is
        the business key's arbiter (its primary key, say) gets no ``<t>_bk`` beside it, and a
        merge drops the one an earlier run built there when it is provably the engine's
        (``pg_tables.drop_repeat``).
        """
        keyed = ctx.spec.mode != "append"
        if self.keeps_landed(ctx) and ctx.spec.target.table.rpartition(".")[2] == LEDGER:
            raise ConfigError(
                f"{self.where}: the table {LEDGER} beside the target is the chunk ledger of a "
                "job whose [state] url is another database; name the target otherwise"
            )
        self.deferred = indexes_after_load(ctx.spec.mode, ctx.on_bad_row, "postgresql")
        try:
            made = pg.target_ddl(self.table, ctx.columns, ctx.cols, ctx.key_collate, keyed=keyed,
                                 indexes=not self.deferred)  # fmt: skip
            ddl = made + [
                drift.add_column_sql("postgresql", self.table, n, t) for n, t in ctx.add_columns
            ]
        except ValueError as exc:
            raise ConfigError(f"{self.where}: {exc}") from exc
        ledger = self.keeps_landed(ctx)  # chunks land with a ledger row
        async with self.connection(ctx.hold, ctx.app) as conn:
            if ctx.spec.mode == "full_refresh":
                if ctx.resumed and not await table_exists(conn, self.table):
                    return  # resumed after the swap committed: nothing is left to load
                kept = False
                if ctx.resumed:  # its new table may have been made LIKE the target
                    kept = await table_exists(conn, self._final(ctx))
                else:  # a new run starts its new table empty
                    await conn.execute(f"DROP TABLE IF EXISTS {quote(self.table)}")
                    if kept := await self._kept(conn, ctx):  # the target's own definition
                        final = self._final(ctx)
                        if not self.deferred:  # rejecting rows needs the indexes now
                            indexes = await target_indexes(conn, final, ctx.cols)
                            self._refuse_deferrable_key(final, ctx.cols, indexes, REJECT_DEFERRABLE)
                        await conn.execute(refresh.like_sql(self.table, final).text)
                        if not self.deferred:
                            ddl = no_repeat(ddl, self.table, ctx.cols, final, indexes)
                            ddl += self._index_sql(final, indexes)
                # a kept definition keeps its own defaults: its chunks send every column
                self.by_default = self.deferred and ctx.cols.type == 2 and not kept
                if self.deferred and ctx.cols.type == 2 and ctx.resumed:
                    # the new table tells whether it was made LIKE a target or from the run's
                    # own DDL; a target may have been dropped or created while the run stopped
                    self.by_default = await self._holds_as_of(conn, ctx)
                if self.by_default:  # set again on resume (repeatable)
                    ddl.append(pg.initial_defaults_sql(self.table, ctx.cols, ctx.as_of))
            else:
                ddl, ledger = await self._missing(conn, ctx, ddl, made, keyed)
            for st in ddl:
                await conn.execute(st.text)
            if ledger:
                await ensure_ledger(conn, ctx.spec.target.table)
            st = pg.KEY_COLLATIONS_SQL
            keys = list(ctx.spec.source.key)
            rows = await conn.fetch(
                st.text, *st.args({"relation": quote(self.table), "keys": keys})
            )
            st = pg.NULLABLE_COLUMNS_SQL
            nullable = await conn.fetch(st.text, *st.args({"relation": quote(self.table)}))
            st = pg.PARTITIONED_SQL
            self.partitioned = bool(
                await conn.fetchval(st.text, *st.args({"relation": quote(self.table)}))
            )
        self.nullable_key = bool({str(r[0]) for r in nullable} & set(ctx.cols.business_key))
        own = {str(r[0]): r[1] for r in rows}
        self.staging_collate = {k: own.get(k) for k in ctx.spec.source.key}

    async def _missing(
        self, conn: Any, ctx: JobContext, ddl: list[Sql], made: list[Sql], keyed: bool
    ) -> tuple[list[Sql], bool]:
        """(What a merge or append sends of ``ddl``: ``made`` + added columns, make the ledger).

        One catalog query (``scd_sql_pg.target_ready_sql``: the table, its indexes and the
        ledger when the run keeps one) first: when all are there only the added columns are
        sent and no ledger is made, so a role with DML on the target alone (no CREATE on its
        schema or database) runs the job again.  Else every statement goes, and the ledger
        (``ensure_ledger``).  A type-1 target's own indexes are read first (they may hold the
        key's arbiter, and then the engine makes no ``<t>_bk``: ``no_repeat`` /
        ``drop_repeat``).
        """
        own_key = False
        if keyed and ctx.cols.type == 1 and await table_exists(conn, self.table):
            indexes = await target_indexes(conn, self.table, ctx.cols)
            self._refuse_deferrable_key(self.table, ctx.cols, indexes, MERGE_DEFERRABLE)
            ddl = no_repeat(ddl, self.table, ctx.cols, self.table, indexes)
            await drop_repeat(conn, self.table, ctx.cols, indexes)
            own_key = key_indexed(self.table, ctx.cols, indexes)
        ledger = self.keeps_landed(ctx)
        beside = [in_schema_of(ctx.spec.target.table, LEDGER)] if ledger else []
        ready = pg.target_ready_sql(self.table, ctx.cols, indexes=keyed and not own_key,
                                    beside=beside)  # fmt: skip
        if await conn.fetchval(ready):
            return [st for st in ddl if st not in made], False
        return ddl, ledger

    async def swap(self, ctx: JobContext) -> None:
        """Full refresh: build the new table's indexes, then drop the target, rename the new in.

        The indexes are built first, each on its own connection at the same time (they lock
        only the new table, which no reader sees; a lone index on the connection that checked
        the tables, which the swap then uses too), then one transaction drops the target and
        renames the new table and its indexes in: readers of the target wait only for that.  A
        business key loaded twice fails its index (``DataError`` naming the key); nothing is
        swapped in and the old table stays.  Safe to repeat: built indexes are kept.
        """
        final = self._final(ctx)
        async with reusing():  # the checks, a lone index build and the swap on one connection
            async with self.connection(ctx.hold, ctx.app) as conn:
                new, old = await tables_exist(conn, self.table, final)  # one round trip for both
                if not new:
                    return  # the swap committed already
                kept = await self._kept(conn, ctx, old)
                indexes = await target_indexes(conn, final, ctx.cols) if kept else []
            own = self.deferred and not key_indexed(final, ctx.cols, indexes)
            statements = pg.index_ddl(self.table, ctx.cols) if own else []
            if self.deferred:
                statements += self._index_sql(final, indexes)
            if len(statements) <= 1:
                for st in statements:
                    await self._build_index(ctx, st, INDEX_BUILD_MB, workers=True)
                return await self._swap_in(ctx, final, kept, indexes)
        # several indexes: each on its own connection at the same time, none kept meanwhile
        await let_go()  # the caller's own ``reusing`` block may keep one
        memory = INDEX_BUILD_MB // len(statements)
        await run_all(*(bound(self._build_index, ctx, st, memory, False) for st in statements))
        await self._swap_in(ctx, final, kept, indexes)

    async def _swap_in(
        self, ctx: JobContext, final: str, kept: bool, indexes: Sequence[refresh.TargetIndex]
    ) -> None:
        """One transaction: drop the target, rename the new table and its indexes in."""
        async with self.connection(ctx.hold, ctx.app) as conn, conn.transaction():
            if not await table_exists(conn, self.table):
                return
            if kept:
                await self._keep_definition(conn, final)
            if self.by_default:  # the target's DDL gives valid_from no default
                await conn.execute(pg.drop_initial_default_sql(self.table, ctx.cols).text)
            for st in swap_sql(final, ctx.cols):
                await conn.execute(st.text)
            for st in refresh.rename_statements(final, indexes, engine_indexes(final)):
                await conn.execute(st.text)

    async def after_load(self, ctx: JobContext) -> None:
        """Move the loaded table's identity / serial sequences past its values (``sequences_pg``).

        The table is the target (a full refresh's once swapped in; before that, nothing is
        visible to move).  Raises translated driver errors.
        """
        table = self._final(ctx)
        async with self.connection(ctx.hold, ctx.app) as conn:
            if ctx.spec.mode == "full_refresh" and await table_exists(conn, self.table):
                return  # not swapped in: the target's rows and sequences are the old ones
            st = seq.SEQUENCE_COLUMNS_SQL
            owned = await conn.fetch(st.text, *st.args({"relation": quote(table)}))
            for column, sequence in owned:
                st = seq.advance_sql(quote(table), column, sequence)
                moved = await conn.fetchval(st.text, sequence)
                if moved is not None:
                    log.info("sequence_advanced", column=column, sequence=sequence, to=moved)

    def keeps_landed(self, ctx: JobContext) -> bool:
        """True when the run state is in another database: chunks land with a ledger row.

        ``jobs.spec.ledger`` decides (the loader's ``[state] forget_timeout`` check asks it too).
        """
        return ledger(ctx.state_url, self.url)

    async def landed_runs(self, ctx: JobContext) -> list[str]:
        """The runs the ledger beside the target holds rows of (``pg_checkpoint.landed_runs``).

        ``[]`` without connecting when the run keeps no ledger (state in the target's database).
        """
        if not self.keeps_landed(ctx):
            return []
        async with self.connection(ctx.hold, ctx.app) as conn:
            return await landed_runs(conn, ctx.spec.target.table)

    async def forget_landed(self, ctx: JobContext, run_ids: Sequence[str]) -> None:
        """Delete the ledger rows of ``run_ids`` (``pg_checkpoint.forget_landed``)."""
        async with self.connection(ctx.hold, ctx.app) as conn:
            await forget_landed(conn, ctx.spec.target.table, run_ids)

    async def _holds_as_of(self, conn: Any, ctx: JobContext) -> bool:
        """Whether the new table carries this run's as-of default (the swap then drops it).

        Asked on resume, of the new table itself: it holds that default when the run made
        it from its own DDL (a target created while the run was stopped changes nothing),
        and not when it was made LIKE a target, which keeps that definition's defaults even
        if the target was dropped while the run was stopped (or when the run stopped before
        it set them: its chunks then send every column, as they did before the stop).
        """
        st = pg.holds_initial_default_sql(ctx.cols)
        values = {"relation": quote(self.table), "column": ctx.cols.valid_from, "as_of": ctx.as_of}
        return bool(await conn.fetchval(st.text, *st.args(values)))

    @staticmethod
    def _final(ctx: JobContext) -> str:
        """The table a full refresh ends in (``self.table`` is its new table)."""
        return ctx.spec.target.table

    async def _kept(self, conn: Any, ctx: JobContext, exists: bool | None = None) -> bool:
        """Whether the full refresh's target exists (its definition is then kept).

        ``exists``: whether it does, when the caller read that already (None: read it here).
        Raises ``ConfigError`` naming what a drop-and-rename of it cannot keep.
        """
        final = self._final(ctx)
        if not (await table_exists(conn, final) if exists is None else exists):
            return False
        problem = refresh.blockers_problem(await _lost(conn, final))
        if problem is not None:  # the words preflight says (``refresh_problem``)
            raise ConfigError(f"target {mask_url(self.url)} {final}: {problem}")
        return True

    def _refuse_deferrable_key(
        self, table: str, cols: ScdColumns, indexes: Sequence[refresh.TargetIndex], why: str
    ) -> None:
        """``ConfigError`` (``why`` after the index) when ``table``'s key is DEFERRABLE.

        A type-1 load into ``table`` merges with ``INSERT ... ON CONFLICT`` (business key), which
        PostgreSQL refuses beside a deferrable unique constraint on the conflict columns
        ("ON CONFLICT does not support deferrable unique constraints/exclusion constraints as
        arbiters", the ``INSERT`` reference page): every chunk would fail, so the run is
        refused before it writes anything.  A full refresh with ``on_bad_row = "fail"`` builds
        the key at the swap and keeps it deferrable; it is not refused.
        """
        for ix in indexes:
            if cols.type == 1 and ix.deferrable_key:
                raise ConfigError(
                    f"{self.where}: {table}'s {ix.name} on the business key is DEFERRABLE, {why}"
                )

    def _index_sql(self, final: str, indexes: Sequence[refresh.TargetIndex]) -> list[Sql]:
        """The target's own indexes rebuilt on the new table (``ConfigError`` if one cannot)."""
        try:
            return refresh.index_statements(self.table, indexes, engine_indexes(final))
        except ValueError as exc:
            raise ConfigError(f"{self.where}: {exc}") from exc

    async def _keep_definition(self, conn: Any, final: str) -> None:
        """In the swap's transaction: privileges, comment, options, foreign keys, owner.

        A statement the session may not run (e.g. the owner cannot be given away) refuses the
        swap in one line; the transaction rolls back and the old table stays.
        """
        for row in await conn.fetch(refresh.KEEP_SQL.text, quote(final), quote(self.table)):
            try:
                async with conn.transaction():
                    await conn.execute(str(row[0]))
            except PostgresError as exc:
                raise ConfigError(f"{self.where}: cannot keep {final}'s definition on the "
                                  f"new table ({row[0]}: {exc}); nothing was swapped "
                                  "in") from None  # fmt: skip

    async def _build_index(self, ctx: JobContext, st: Sql, memory_mb: int, workers: bool) -> None:
        """One unique index of the loaded table (if missing); ``DataError`` on a key twice.

        ``workers``: whether the server may give the build parallel workers (its
        ``max_parallel_maintenance_workers``); builds run side by side get none.
        """
        # the sort spills at the default 64MB: two SCD2 indexes on 1M rows built one after
        # the other took 1.46 s at 64MB, 0.96 s at 256MB, 0.99 s in parallel; side by side at
        # 128MB each, with no workers both sort in memory (64-71 MB) and took a median 340 ms
        # against 369 ms with the default two workers each (six processes on two cores,
        # their sorted runs written to temporary files and merged by the leader)
        serial = "" if workers else "SET LOCAL max_parallel_maintenance_workers = 0; "
        async with self.connection(ctx.hold, ctx.app) as conn:
            try:
                async with conn.transaction():
                    # a build lost in a crash is built again: the swap's commit waits the flush
                    await conn.execute(
                        f"SET LOCAL maintenance_work_mem = '{memory_mb}MB'; {serial}{NO_FLUSH_WAIT}"
                    )
                    await conn.execute(st.text)
            except UniqueViolation:
                bk = ctx.cols.business_key
                dup = await conn.fetchrow(pg.duplicate_keys_sql(self.table, ctx.cols).text)
                if dup is None:
                    raise
                from async_etl.core.duplicates import duplicate_message  # a failure's words

                key = dict(zip(bk, tuple(dup)[: len(bk)], strict=True))
                raise DataError(f"{self.where}: {duplicate_message(key, int(dup[len(bk)]))}; "
                                "nothing was swapped in (fix the source, then run with "
                                "--fresh)") from None  # fmt: skip

    async def run_chunk(self, ctx: JobContext, chunk: Chunk, source: Source) -> ChunkResult:
        """Stage, merge and checkpoint ``chunk`` in one transaction; raises translated errors.

        A chunk this run committed already (a retry after a lost COMMIT reply) is rolled back
        and answered from its checkpoint (``jobs.pg_checkpoint``).
        """
        in_state = not self.keeps_landed(ctx)
        keys = [(self.url, ctx.app, ctx.hold)]
        if isinstance(source, PgSource) and not ctx.same_database(source.url, self.url):
            keys.append((source.url, ctx.app, ctx.hold))  # ``_stage`` reads it: open both at once
        try:
            return await self._run_chunk(ctx, chunk, source, in_state, keys)
        except LoadError as exc:  # PostgreSQL's 'value too long ...' names no column
            line = too_long_line(exc.message, self._guarded(ctx))
            if line is None or isinstance(exc, TransientError):
                raise
            said = exc.message.removeprefix(f"{self.where}: ")
            raise DataError(f"job {ctx.spec.name}: {self.where}: {line} ({said})") from exc

    @staticmethod
    def _guarded(ctx: JobContext) -> dict[str, int]:
        """The columns ``_select`` guards against a ``varchar(n)`` cut: name -> n."""
        target = [ctx.cols.target_type_of(n) for n in ctx.names]
        if not any(target):
            return {}
        return guarded_columns(ctx.names, [t for _, t in ctx.columns], target)

    def _staged(self, ctx: JobContext) -> list[tuple[str, str]]:
        """Staging's columns: the source's, a guarded ``varchar(m)`` without its length.

        A guarded value too long for the target is one character longer than the source's
        (``core.pg_casts.cast_select``), so that ``unguard`` can give it back as it was.
        """
        guarded = self._guarded(ctx)
        if not guarded:
            return list(ctx.columns)
        return [(n, unbounded(t) if n in guarded else t) for n, t in ctx.columns]

    async def _run_chunk(
        self, ctx: JobContext, chunk: Chunk, source: Source, in_state: bool, keys: list[Any]
    ) -> ChunkResult:
        """``run_chunk``'s transaction."""
        async with connected_ahead(keys), self.connection(ctx.hold, ctx.app) as conn:
            try:
                async with conn.transaction():
                    if in_state:  # lost in a crash only with its checkpoint: no flush wait
                        await conn.execute(NO_FLUSH_WAIT)
                    rows = await self._load_direct(ctx, conn, chunk, source)
                    if rows is not None:
                        counts = {**dict.fromkeys(COUNTERS, 0), "inserted": rows}
                        rejects: list[Reject] = []
                    else:
                        await conn.execute(
                            pg.staging_ddl(
                                STAGING, self._staged(ctx), collate=self.staging_collate
                            ).text
                        )
                        rows = await self._stage(ctx, conn, chunk, source, STAGING)
                        ctx.check_stop()
                        counts, rejects = await self._merge(ctx, conn, chunk)
                    await checkpoint_in(conn, ctx, chunk, rows, counts, rejects, self.where,
                                        ledger=not in_state)  # fmt: skip
            except Landed as landed:  # rolled back: the earlier, unacknowledged commit stands
                return landed.result
        return ChunkResult(chunk.index, rows, counts, tuple(rejects), checkpointed=in_state)

    async def _direct(self, ctx: JobContext, conn: Any, chunk: Chunk) -> bool:
        """Whether the chunk goes straight into the target, with no staging and no merge.

        Append always does; a merge or SCD2 chunk does when its key range is empty in the
        target (an initial load, a new key range, every chunk of a full refresh): each row
        is then a new key.  The target's unique indexes still refuse a key read twice.  With
        ``on_bad_row = "reject"`` rows go through staging, where bad ones can be found.
        """
        if ctx.on_bad_row == "reject":
            return False
        if ctx.spec.mode == "append" or self.deferred:
            return True  # a full refresh's new table holds only committed chunks' own ranges
        if self.nullable_key:  # a NULL key would go in unrefused: staging refuses it
            return False
        empty = pg.range_is_empty_sql(self.table, ctx.spec.source.key, chunk)
        return bool(await conn.fetchval(empty.text, *empty.args(chunk_values(chunk))))

    async def _load_direct(
        self, ctx: JobContext, conn: Any, chunk: Chunk, source: Source
    ) -> int | None:
        """Load the chunk straight into the target when ``_direct``; its rows (None: not done).

        Runs in a savepoint: a key read twice (a unique violation) rolls back to it and the
        chunk goes through staging instead, whose duplicate check names the key.  A full
        refresh's new table with its indexes deferred has nothing to refuse a row: no savepoint.
        """
        if not await self._direct(ctx, conn, chunk):
            return None
        no_tail = ctx.spec.mode == "append" or self.by_default  # by_default: the defaults fill it
        tail = () if no_tail else ctx.cols.scd
        if self.deferred:  # no unique index yet (``swap`` builds them): nothing can refuse
            return await self._stage(ctx, conn, chunk, source, self.table, tail)
        try:
            async with conn.transaction():
                return await self._stage(ctx, conn, chunk, source, self.table, tail)
        except UniqueViolation:
            return None

    async def _stage(
        self,
        ctx: JobContext,
        conn: Any,
        chunk: Chunk,
        source: Source,
        dest: str,
        tail: Sequence[str] = (),
    ) -> int:
        """Copy the chunk's source rows into ``dest`` (staging, or the target itself).

        ``tail``: the type-2 bookkeeping columns, filled with the initial version's values.
        """
        columns = [*ctx.names, *tail]
        names = ", ".join(quote(n) for n in columns)
        consts = pg.initial_version_tail(ctx.cols, ctx.as_of) if tail else ()
        if isinstance(source, PgSource) and ctx.same_database(source.url, self.url):
            st, args = source.extract(chunk, consts, self._select(ctx, cast=False))
            status = await conn.execute(
                f"INSERT INTO {quote(dest)} ({names}) {pg.OVERRIDE} {st.text}", *args
            )
            return int(str(status).rsplit(" ", 1)[-1])
        schema, _, name = dest.rpartition(".")
        async with source_connection(source, ctx.hold, ctx.app) as sconn:
            if isinstance(source, PgSource):
                if self.source_unique is None and dest == STAGING:
                    self.source_unique = await source.unique_on(sconn, ctx.cols.business_key)
                select = self._select(ctx, cast=dest != STAGING)
                return await pipe(ctx, source, sconn, conn, chunk, dest, columns, consts, select)
            total = 0
            extra = (ctx.as_of, None, True) if tail else ()
            await use_exact_codecs(conn)  # 9999-12-31 stays itself, not 'infinity'
            guarded = self._guarded(ctx)  # no SELECT guards Python rows: the same rule here
            async for batch in source.batches(sconn, chunk, ctx.batch_rows):
                ctx.check_stop()
                if guarded:
                    batch = guard_rows(batch, guarded, ctx.names)
                records = [(*r, *extra) for r in batch] if extra else batch
                await conn.copy_records_to_table(
                    name, schema_name=schema or None, records=records, columns=columns
                )
                total += len(batch)
            return total

    @staticmethod
    def _select(ctx: JobContext, *, cast: bool = True) -> str:
        """The source's columns as a binary COPY into the target reads them (``core.pg_casts``).

        With ``cast``, cast to the existing target's types where the binary formats differ
        (``integer[]`` into ``bigint[]``); staging has the source's own types and needs no
        cast, nor does an ``INSERT ... SELECT`` in one database.  Always guarded where a
        ``varchar(n)`` target would cut a value's excess blanks (``length_guards``).  A full
        refresh's new table is made LIKE the target whose types preflight read (or, with no
        target, from the source's: no cast, no guard).
        """
        types = [t for _, t in ctx.columns]
        target = [ctx.cols.target_type_of(n) for n in ctx.names]
        if not any(target):
            return "*"
        casts = copy_casts(types, target) if cast else ()
        return cast_select(ctx.names, casts, guards=length_guards(types, target))

    async def _merge(
        self, ctx: JobContext, conn: Any, chunk: Chunk
    ) -> tuple[dict[str, int], list[Reject]]:
        key = ctx.spec.source.key
        values = chunk_values(chunk, ctx.as_of)
        if ctx.spec.mode == "append":  # insert every staged row, keys may repeat
            held: list[Reject] = []
            statements = pg.initial_insert_statements(self.table, STAGING, ctx.cols)
        else:
            held = await self._drop_null_keys(ctx, conn) + await self._hold_duplicates(ctx, conn)
            latest = None
            if ctx.after_all:  # a run later than every version: one statement, one join
                from async_etl.core.scd_sql_pg_latest import latest_merge_statements

                latest = latest_merge_statements(self.table, STAGING, ctx.cols, key, chunk)
            statements = latest or pg.merge_statements(
                self.table, STAGING, ctx.cols, key, chunk, after_all=ctx.after_all,
                partitioned=self.partitioned,
            )  # fmt: skip

        async def apply() -> dict[str, int]:
            totals = dict.fromkeys(COUNTERS, 0)
            for st in statements:
                if st.counts == "rows":
                    got = await conn.fetchrow(st.text, *st.args(values))
                    for k in COUNTERS:
                        totals[k] += int(got[k])
                else:
                    await conn.execute(st.text, *st.args(values))
            return totals

        if ctx.on_bad_row != "reject":
            return await apply(), []
        try:
            async with conn.transaction():
                return await apply(), held
        except Exception as exc:
            if not is_data_error(exc):
                raise
        from async_etl.jobs.rejects import find_bad_rows  # only once a chunk has a bad row

        rejects = await find_bad_rows(
            conn, table=self.table, staging=STAGING, cols=ctx.cols, as_of=ctx.as_of,
            guarded=self._guarded(ctx),
        )  # fmt: skip
        return await apply(), held + rejects

    async def _drop_null_keys(self, ctx: JobContext, conn: Any) -> list[Reject]:
        """Staged rows with a NULL business-key part: fail naming one, or reject each.

        Raises ``DataError`` with ``on_bad_row = "fail"``.
        """
        bk = ctx.cols.business_key
        found = await conn.fetch(pg.drop_null_keys_sql(STAGING, ctx.cols).text)
        return null_key_rejects(ctx, self.where, [dict(zip(bk, r, strict=True)) for r in found])

    async def _hold_duplicates(self, ctx: JobContext, conn: Any) -> list[Reject]:
        """Business keys staged twice: fail naming one, or reject all their rows and hold them.

        Holding re-stages the target's current row of each such key (``core.duplicates``).
        Skipped when the source's own unique index makes the key unique (``source_unique``).
        Raises ``DataError`` with ``on_bad_row = "fail"``.
        """
        if self.source_unique:  # the source's unique index already refuses a key twice
            return []
        bk = ctx.cols.business_key
        dups = await conn.fetch(pg.duplicate_keys_sql(STAGING, ctx.cols).text)
        if not dups:
            return []
        from async_etl.core.duplicates import duplicate_message, duplicate_reason  # found some

        keys = [(dict(zip(bk, tuple(r)[: len(bk)], strict=True)), int(r[len(bk)])) for r in dups]
        if ctx.on_bad_row != "reject":
            raise DataError(f"{self.where}: {duplicate_message(*keys[0])}")
        await conn.execute(pg.hold_duplicates_sql(self.table, STAGING, ctx.cols).text)
        return [(key_json(k), duplicate_reason(n)) for k, n in keys for _ in range(n)]
