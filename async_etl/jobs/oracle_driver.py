"""The Oracle target driver: one chunk = one Oracle transaction (stage, merge, commit).

Per chunk, on one target connection (and one source connection while reading):

1. the chunk's source rows go into the global temporary staging table (``executemany`` of
   ``staging_insert``, batch by batch; the stop flag is checked between batches);
2. every statement of ``scd_sql_oracle.merge_statements`` runs in order, ``cursor.rowcount``
   counted under the statement's label (a type-1 MERGE reports "upserted": the new keys are
   counted first, so inserted and updated stay exact);
3. COMMIT (staging empties itself); the runner then checkpoints the chunk in the PostgreSQL
   state store.  A crash between the two re-runs the chunk, and the merge at the same T is
   idempotent, so it converges.

With ``on_bad_row = "reject"`` the merge runs after a savepoint; on a data error (ORA-01400,
ORA-12899, ORA-01722, ...) it rolls back to it and bisects the chunk's rows into a probe
table shaped like the target (``CREATE ... AS SELECT * ... WHERE 1 = 0``: NOT NULL and types,
no CHECK constraints), each range in its own savepoint, then re-stages the good rows plus the
current target row of each refused key (so a refused key does not look deleted).  A row with
a value Oracle cannot store exactly (``core.exact.oracle_refusal``: ``''``, which Oracle reads
as NULL; more than 38 digits; text over 4000 bytes) is never staged: it is rejected with the
reason (``fail``: the chunk fails with it) and its key's current row is staged instead.  Every
row of a business key staged twice is handled alike (``core.duplicates``; ``fail`` names it).

DDL is created once and "already exists" (ORA-00955, ORA-01408) is ignored, since Oracle
before 23ai has no ``IF NOT EXISTS``.  Integration tests run only when ``ORACLE_DSN`` is set.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any

import anyio

from async_etl.core import drift
from async_etl.core import scd_sql_oracle as ora
from async_etl.core.chunks import Chunk
from async_etl.core.duplicates import duplicate_keys, duplicate_message, duplicate_reason
from async_etl.core.exact import oracle_refusal, row_refusal
from async_etl.core.modes import OLD_SUFFIX, new_table, oracle_swap_sql
from async_etl.core.run_identity import Place
from async_etl.core.scd_sql_common import chunk_values, quote, short_name
from async_etl.core.specs import ScdColumns
from async_etl.core.urls import mask_url
from async_etl.drivers.oracle import (
    is_data_error,
    oracle_code,
    oracle_connection,
    oracle_error,
    oracle_params,
)
from async_etl.errors import ConfigError, DataError
from async_etl.jobs.coltypes import oracle_type
from async_etl.jobs.context import (
    COUNTERS,
    ChunkResult,
    Holder,
    JobContext,
    Reject,
    key_json,
    null_key_rejects,
)
from async_etl.sources.port import Source, source_connection

__all__ = ["OracleTarget", "oracle_bind"]

_EXISTS = frozenset({"ORA-00955", "ORA-01408", "ORA-01430"})


def oracle_bind(value: Any) -> Any:
    """A value as the Oracle driver should bind it: booleans 0/1, datetimes naive UTC."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def _with_schema(table: str, suffix: str) -> str:
    schema, _, _ = table.rpartition(".")
    name = short_name(table, suffix)
    return f"{schema}.{name}" if schema else name


class OracleTarget:
    """Merges chunks into ``[target] table`` of an Oracle database."""

    def __init__(self, url: str, table: str) -> None:
        oracle_params(url)  # ConfigError for a malformed URL, before anything is touched
        self.url = url
        self.table = table
        self.dropped_columns = 0
        """Always 0: no column limit counts dropped columns here (the ``Target`` port's)."""
        self.staging = _with_schema(table, "stg")
        self.probe = _with_schema(table, "rej")
        self.where = f"target {mask_url(url)} {table}"

    def connection(self, holder: Holder) -> AbstractAsyncContextManager[Any]:
        """A target connection under a budget token (errors translated, URL masked)."""
        return oracle_connection(self.url, holder, where=self.where)

    async def _exists(self, cursor: Any) -> bool:
        owner, _, name = self.table.upper().rpartition(".")
        if not owner:
            await cursor.execute("SELECT USER FROM dual")
            owner = str((await cursor.fetchone())[0])
        await cursor.execute(
            "SELECT COUNT(*) FROM all_tables WHERE owner = :1 AND table_name = :2", [owner, name]
        )
        return int((await cursor.fetchone())[0]) > 0

    async def max_valid_from(self, holder: Holder, app: str, cols: ScdColumns) -> datetime | None:
        """Reach the target; its latest version start (None: no table yet, or type 1)."""
        async with self.connection(holder) as conn:
            cursor = conn.cursor()
            if cols.type != 2 or not await self._exists(cursor):
                return None
            await cursor.execute(ora.max_valid_from_sql(self.table, cols).text)
            value: datetime | None = (await cursor.fetchone())[0]
        if value is None:
            return None
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)

    async def holds_history(self, holder: Holder, app: str, cols: ScdColumns) -> bool:
        """Whether the (type-2) table holds an expired version; False when it does not exist."""
        async with self.connection(holder) as conn:
            cursor = conn.cursor()
            if not await self._exists(cursor):
                return False
            await cursor.execute(ora.history_sql(self.table, cols).text)
            return int((await cursor.fetchone())[0]) > 0

    async def columns(self, holder: Holder, app: str) -> list[tuple[str, str]] | None:
        """(name, Oracle type) of the target table's columns in order; None: no such table."""
        async with self.connection(holder) as conn:
            cursor = conn.cursor()
            owner, _, name = self.table.upper().rpartition(".")
            if not owner:
                await cursor.execute("SELECT USER FROM dual")
                owner = str((await cursor.fetchone())[0])
            st = drift.target_columns_sql("oracle")
            await cursor.execute(st.text, st.args({"owner": owner, "table": name}))
            rows = await cursor.fetchall()
        return [(str(r[0]), drift.oracle_column_type(*r[1:])) for r in rows] or None

    async def place(self, holder: Holder, app: str, table: str) -> Place:
        """(None, None, ``table`` upper-cased as Oracle folds it): nothing is asked."""
        del holder, app
        return None, None, table.upper()

    async def collations(self, holder: Holder, app: str) -> frozenset[str] | None:
        """None: job sessions compare text in code-point order (``NLS_COMP = BINARY``)."""
        del holder, app
        return None

    async def prepare(self, ctx: JobContext) -> None:
        """Create the target, its staging table and its reject probe if missing; add columns.

        Added columns (``ctx.add_columns``) go to the target, and to staging and probe when
        those exist already (``ORA-01430``, already there, is ignored like ``ORA-00955``).
        """
        oracle_failure = oracle_error()

        try:
            columns = [(n, oracle_type(t)) for n, t in ctx.columns]
            ddl = [*ora.target_ddl(self.table, columns, ctx.cols),
                   ora.staging_ddl(self.staging, columns)]  # fmt: skip
            alters = [drift.add_column_sql("oracle", table, n, t).text
                      for table in (self.table, self.staging, self.probe)
                      for n, t in ctx.add_columns]  # fmt: skip
        except ValueError as exc:
            raise ConfigError(f"{self.where}: {exc}") from exc
        probe = (
            f"CREATE GLOBAL TEMPORARY TABLE {quote(self.probe, 'oracle')} ON COMMIT DELETE ROWS "
            f"AS SELECT * FROM {quote(self.table, 'oracle')} WHERE 1 = 0"
        )
        async with self.connection(ctx.hold) as conn:
            cursor = conn.cursor()
            if ctx.spec.mode == "full_refresh":
                if ctx.resumed and not await self._exists(cursor):
                    return  # resumed after the swap: nothing is left to load
                if not ctx.resumed and await self._exists(cursor):  # start the new table empty
                    await cursor.execute(f"DROP TABLE {quote(self.table, 'oracle')} PURGE")
            for text in [st.text for st in ddl] + [probe] + alters:
                try:
                    await cursor.execute(text)
                except oracle_failure as exc:
                    if oracle_code(exc) not in _EXISTS:
                        raise

    async def after_load(self, ctx: JobContext) -> None:
        """Nothing to do after the load (an Oracle identity column is not moved: see the README)."""

    async def landed_runs(self, ctx: JobContext) -> list[str]:
        """``[]``: no chunk ledger here."""
        return []

    async def forget_landed(self, ctx: JobContext, run_ids: Sequence[str]) -> None:
        """Nothing kept: nothing to forget."""

    async def swap(self, ctx: JobContext) -> None:
        """Full refresh: rename the old table away, the new one in, drop the old.

        Oracle DDL commits on its own (``core.modes.oracle_swap_sql``): between the two
        renames a reader finds no table, never a half-loaded one.  Repeating it after a crash
        finishes what is left.
        """
        final = OracleTarget(self.url, ctx.spec.target.table)
        old = OracleTarget(self.url, new_table(ctx.spec.target.table, OLD_SUFFIX))
        async with self.connection(ctx.hold) as conn:
            cursor = conn.cursor()
            if await self._exists(cursor):
                exists = await final._exists(cursor)
                for st in oracle_swap_sql(final.table, exists=exists):
                    await cursor.execute(st.text)
            if await old._exists(cursor):  # an earlier swap crashed after its first rename
                await cursor.execute(f"DROP TABLE {quote(old.table, 'oracle')} PURGE")

    async def run_chunk(self, ctx: JobContext, chunk: Chunk, source: Source) -> ChunkResult:
        """Stage and merge ``chunk`` in one Oracle transaction; the runner checkpoints it."""
        insert = ora.staging_insert(self.staging, ctx.names).text
        types = [t for _, t in ctx.columns]
        positions = [ctx.names.index(c) for c in ctx.cols.business_key]
        rows: list[tuple[Any, ...]] = []
        inexact: list[tuple[tuple[Any, ...], str]] = []  # (key, reason) per refused row
        bk = ctx.cols.business_key
        null_keys: list[dict[str, Any]] = []  # rows with a NULL business-key part
        read = 0
        async with self.connection(ctx.hold) as conn:
            cursor = conn.cursor()
            try:
                async with source_connection(source, ctx.hold, ctx.app) as sconn:
                    async for batch in source.batches(sconn, chunk, ctx.batch_rows):
                        ctx.check_stop()
                        read += len(batch)
                        bound = []
                        for r in batch:
                            if any(r[p] is None for p in positions):  # no key to merge by
                                null_keys.append(
                                    {c: r[p] for c, p in zip(bk, positions, strict=True)}
                                )
                                continue
                            reason = row_refusal(r, ctx.names, types, oracle_refusal)
                            if reason is None:
                                bound.append(tuple(oracle_bind(v) for v in r))
                            else:
                                key = tuple(oracle_bind(r[p]) for p in positions)
                                inexact.append((key, self._refuse(ctx, key, reason)))
                        if bound:
                            await cursor.executemany(insert, bound)
                        rows.extend(bound)
                nulls = null_key_rejects(ctx, self.where, null_keys)
                rows, held = await self._hold_duplicates(ctx, cursor, rows, positions)
                keep = [key for key, _ in inexact] + list(held)
                if keep:  # a refused key keeps its current version: stage it as it is
                    await self._stage_current(ctx, cursor, keep)
                counts, rejects = await self._merge(ctx, conn, chunk, rows, keep)
                await conn.commit()
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await conn.rollback()
                raise
        refused = nulls + [(key_json(dict(zip(bk, k, strict=True))), why) for k, why in inexact]
        refused += [(key_json(dict(zip(bk, k, strict=True))), duplicate_reason(n))
                    for k, n in held.items() for _ in range(n)]  # fmt: skip
        return ChunkResult(chunk.index, read, counts, (*refused, *rejects))

    async def _hold_duplicates(
        self, ctx: JobContext, cursor: Any, rows: list[tuple[Any, ...]], positions: list[int]
    ) -> tuple[list[tuple[Any, ...]], dict[tuple[Any, ...], int]]:
        """Business keys staged twice: fail naming one, or unstage all their rows.

        Returns the rows left staged and each duplicated key with its count (the caller
        stages the key's current target row and rejects its rows: ``core.duplicates``);
        raises ``DataError`` with ``on_bad_row = "fail"``.
        """
        dups = duplicate_keys(tuple(r[p] for p in positions) for r in rows)
        if not dups:
            return rows, {}
        bk = ctx.cols.business_key
        if ctx.on_bad_row != "reject":
            key, n = next(iter(dups.items()))
            raise DataError(
                f"{self.where}: {duplicate_message(dict(zip(bk, key, strict=True)), n)}"
            )
        await cursor.executemany(ora.unstage_keys_sql(self.staging, ctx.cols).text, list(dups))
        return [r for r in rows if tuple(r[p] for p in positions) not in dups], dups

    def _refuse(self, ctx: JobContext, key: tuple[Any, ...], reason: str) -> str:
        """``reason`` for a row Oracle cannot store exactly; raises ``DataError`` in fail mode."""
        if ctx.on_bad_row != "reject":
            row = key_json(dict(zip(ctx.cols.business_key, key, strict=True)))
            raise DataError(f"{self.where}: row {row} refused: {reason}")
        return reason

    async def _merge(
        self,
        ctx: JobContext,
        conn: Any,
        chunk: Chunk,
        rows: list[tuple[Any, ...]],
        keep: Sequence[tuple[Any, ...]] = (),
    ) -> tuple[dict[str, int], list[Reject]]:
        oracle_failure = oracle_error()

        cursor = conn.cursor()
        key = ctx.spec.source.key
        statements = ora.merge_statements(self.table, self.staging, ctx.cols, key, chunk)
        values = {k: oracle_bind(v) for k, v in chunk_values(chunk, ctx.as_of).items()}

        async def apply() -> dict[str, int]:
            totals = dict.fromkeys(COUNTERS, 0)
            for st in statements:
                new = await self._new_keys(cursor, ctx.cols) if st.counts == "upserted" else 0
                await cursor.execute(st.text, st.args(values))
                if st.counts == "upserted":
                    totals["inserted"] += new
                    totals["updated"] += max(cursor.rowcount - new, 0)
                elif st.counts in totals:
                    totals[st.counts] += cursor.rowcount
            return totals

        if ctx.on_bad_row != "reject":
            return await apply(), []
        await cursor.execute("SAVEPOINT async_etl_merge")
        try:
            return await apply(), []
        except oracle_failure as exc:
            if not is_data_error(exc):
                raise
            await cursor.execute("ROLLBACK TO SAVEPOINT async_etl_merge")
        rejects = await self._reject(ctx, cursor, rows, keep)
        return await apply(), rejects

    async def _new_keys(self, cursor: Any, cols: ScdColumns) -> int:
        bk = " AND ".join(f"t.{quote(c, 'oracle')} = s.{quote(c, 'oracle')}"
                          for c in cols.business_key)  # fmt: skip
        await cursor.execute(
            f"SELECT COUNT(*) FROM {quote(self.staging, 'oracle')} s WHERE NOT EXISTS "
            f"(SELECT 1 FROM {quote(self.table, 'oracle')} t WHERE {bk})"
        )
        return int((await cursor.fetchone())[0])

    async def _reject(
        self,
        ctx: JobContext,
        cursor: Any,
        rows: list[tuple[Any, ...]],
        keep: Sequence[tuple[Any, ...]] = (),
    ) -> list[Reject]:
        """Bisect ``rows`` into the probe; re-stage the good ones (and ``keep``); the rejects."""
        oracle_failure = oracle_error()

        cols = ctx.cols
        names = ", ".join(quote(c, "oracle") for c in cols.data)
        marks = ", ".join(f":{i + 1}" for i in range(len(cols.data)))
        extra_cols = extra_vals = ""
        if cols.type == 2:
            n = len(cols.data)
            extra_cols = ", " + ", ".join(quote(c, "oracle") for c in cols.scd)
            extra_vals = f", :{n + 1}, NULL, 1"
        probe = (f"INSERT INTO {quote(self.probe, 'oracle')} ({names}{extra_cols}) "
                 f"VALUES ({marks}{extra_vals})")  # fmt: skip
        as_of = oracle_bind(ctx.as_of)
        bad: list[tuple[int, str]] = []

        async def bisect(lo: int, hi: int) -> None:
            part = [r + ((as_of,) if cols.type == 2 else ()) for r in rows[lo:hi]]
            await cursor.execute("SAVEPOINT async_etl_probe")
            try:
                await cursor.executemany(probe, part)
            except oracle_failure as exc:
                await cursor.execute("ROLLBACK TO SAVEPOINT async_etl_probe")
                if not is_data_error(exc):
                    raise
                if hi - lo == 1:
                    bad.append((lo, " ".join(str(exc).split())))
                    return
                mid = (lo + hi) // 2
                await bisect(lo, mid)
                await bisect(mid, hi)

        if rows:
            await bisect(0, len(rows))
        if not bad:
            return []
        await self._restage(ctx, cursor, rows, {i for i, _ in bad}, keep)
        positions = [ctx.names.index(c) for c in cols.business_key]
        out = []
        for i, reason in bad:
            key = {c: rows[i][p] for c, p in zip(cols.business_key, positions, strict=True)}
            out.append((key_json(key), reason))
        return out

    async def _restage(
        self,
        ctx: JobContext,
        cursor: Any,
        rows: Sequence[tuple[Any, ...]],
        bad: set[int],
        keep: Sequence[tuple[Any, ...]] = (),
    ) -> None:
        """Stage the good rows again, and the current target row of every refused key."""
        cols = ctx.cols
        await cursor.execute(f"DELETE FROM {quote(self.staging, 'oracle')}")
        good = [r for i, r in enumerate(rows) if i not in bad]
        if good:
            await cursor.executemany(ora.staging_insert(self.staging, cols.data).text, good)
        positions = [ctx.names.index(c) for c in cols.business_key]
        keys = [tuple(rows[i][p] for p in positions) for i in sorted(bad)]
        await self._stage_current(ctx, cursor, [*keys, *keep])

    async def _stage_current(
        self, ctx: JobContext, cursor: Any, keys: Sequence[tuple[Any, ...]]
    ) -> None:
        """Stage the current target row of each business key in ``keys`` (if it has one)."""
        if keys:
            st = ora.stage_current_sql(self.staging, self.table, ctx.cols)
            await cursor.executemany(st.text, list(keys))
