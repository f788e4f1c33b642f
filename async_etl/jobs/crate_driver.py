"""The CrateDB target driver: per chunk, read, diff in Python, send idempotent bulks.

CrateDB has no transactions, so a chunk is made safe to repeat instead (see
``core.scd_sql_crate``): per chunk, on one HTTP client (one budget token),

1. ``REFRESH TABLE``, then read the chunk's current target rows (``current_rows_sql``);
2. read the chunk's source rows (values converted to what CrateDB stores: epoch ms, doubles);
3. a business key read twice fails the chunk naming it, or with ``on_bad_row = "reject"``
   has all its rows rejected and is diffed as its current target row (``core.duplicates``);
   ``scd.diff`` at the run's T (epoch ms) and send ``render(plan)`` bulk by bulk, in order;
   every write addresses one deterministic primary key (inserts ``ON CONFLICT DO NOTHING``);
4. ``REFRESH TABLE``; the runner then checkpoints the chunk in the PostgreSQL state store.

A request that fails transiently (connection dropped, 429, 503, 5002/503x) is resent after a
backoff.  Bulk answers are judged item by item by the load generator's own rules
(``crate_protocol.judge_bulk``, with every statement idempotent): items that fail transiently
are resent alone; a bare ``rowcount -2`` (CrateDB details only 10 failures per shard) is
*undecided* and resolved at once by resending it in small bulks, then alone, to learn its
error (``core.crate_resolve``).  Resending is harmless because every statement is idempotent,
and a crash at any point is repaired by re-running the chunk from step 1.  Items refused for
good (and rows of a bulk the server refused as a whole, found by splitting it in halves)
become rejects; with ``fail`` the first of them fails the chunk with its key and reason.
Refusals found by an attempt of a chunk are remembered by statement and values, so a retry of
the chunk rejects them again without resending them.  Caveat: CrateDB cannot roll an expiry
back, so a key whose new version is rejected may be left without a current row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import anyio
import orjson

from async_etl.core import drift
from async_etl.core import scd_sql_crate as crate
from async_etl.core.chunks import Chunk, row_in_chunk
from async_etl.core.crate_answers import optional_number, query_rows
from async_etl.core.crate_protocol import NO_DETAIL, Endpoint, build_request, verdict_for
from async_etl.core.crate_resolve import detail_group
from async_etl.core.duplicates import duplicate_message, duplicate_reason, hold_duplicates
from async_etl.core.exact import crate_row_check, text_length_check
from async_etl.core.modes import crate_swap_sql
from async_etl.core.retry import RetryPolicy
from async_etl.core.run_identity import Place
from async_etl.core.scd import Action, InsertVersion, ScdPlan, diff
from async_etl.core.scd_sql_common import chunk_values
from async_etl.core.specs import ScdColumns
from async_etl.drivers.cratedb import CrateDBClient, listed_types
from async_etl.errors import ConfigError, DataError, LoadError, TransientError
from async_etl.jobs.coltypes import crate_type, crate_value, epoch_ms, from_epoch_ms
from async_etl.jobs.context import (
    ChunkResult,
    Holder,
    JobContext,
    Reject,
    key_json,
    null_key_rejects,
)
from async_etl.log import get_logger
from async_etl.runtime.retrying import backoff, retrying
from async_etl.sources.port import Source, source_connection

INNER_RETRIES = 3
"""Bulk-level retries per request inside one chunk attempt."""

__all__ = ["CrateTarget"]

log = get_logger(__name__)


async def _number(client: CrateDBClient, stmt: str, *, count: bool = True) -> Any:
    """The one number ``stmt`` answers; None when it is NULL or the table does not exist.

    ``count=False``: a statement answering no number; True when it ran, False: no table.
    """
    try:
        resp = await client.execute(stmt)
    except LoadError as exc:
        if any(f" {code} " in f" {exc.message} " for code in (4041, 4045)):
            return None if count else False
        raise
    return optional_number(resp, client.where, stmt) if count else True


class CrateTarget:
    """Loads chunks into a CrateDB table through the HTTP ``/_sql`` endpoint."""

    def __init__(self, url: str, table: str) -> None:
        self.url = url
        self.table = table
        self.dropped_columns = 0
        """Always 0: no column limit counts dropped columns here (the ``Target`` port's)."""
        self.endpoint = Endpoint.parse(url)
        self.where = f"target CrateDB {self.endpoint.display} {table}"
        self._group: int | None = None
        self._refused: dict[int, dict[bytes, str]] = {}
        self._plans: dict[int, ScdPlan] = {}  # a chunk's first plan, kept across its retries

    def _client(self) -> CrateDBClient:
        return CrateDBClient(self.endpoint, concurrency=1, timeout=60.0)

    async def max_valid_from(self, holder: Holder, app: str, cols: ScdColumns) -> datetime | None:
        """Reach the server; the latest version start (None: no table yet, or type 1)."""
        async with holder(self.url), self._client() as client:
            await client.server_version()
            if cols.type != 2:
                return None
            value = await _number(client, crate.max_valid_from_sql(self.table, cols))
        return None if value is None else from_epoch_ms(value)

    async def holds_history(self, holder: Holder, app: str, cols: ScdColumns) -> bool:
        """Whether the (type-2) table holds an expired version; False when it does not exist."""
        async with holder(self.url), self._client() as client:
            # a refresh first: rows written since the last one are not visible to a read yet
            if await _number(client, crate.refresh_sql(self.table), count=False) is False:
                return False
            return bool(await _number(client, crate.history_sql(self.table, cols)))

    async def columns(self, holder: Holder, app: str) -> list[tuple[str, str]] | None:
        """(name, CrateDB type) of the target table's columns in order; None: no such table.

        A ``VARCHAR(n)`` column reads ``character varying(n)``, ``CHAR(n)`` ``character(n)``,
        ``ARRAY(VARCHAR(n))`` ``character varying(n)[]`` (``cratedb.listed_types``), so that
        preflight refuses a text array into the last (``drift.sql_fits``).
        """
        schema, _, name = self.endpoint.qualify(self.table).rpartition(".")
        st = drift.target_columns_sql("cratedb")
        args = st.args({"schema": schema, "table": name})
        async with holder(self.url), self._client() as client:
            resp = await client.execute(st.text, args)
            found = query_rows(resp, client.where, st.text, width=3)
            rows = await listed_types(client, schema, name, found) if found else []
        return rows or None

    async def place(self, holder: Holder, app: str, table: str) -> Place:
        """(None, None, ``table`` in the URL's schema): nothing is asked."""
        del holder, app
        return None, None, self.endpoint.qualify(table)

    async def collations(self, holder: Holder, app: str) -> frozenset[str] | None:
        """None: CrateDB compares text by its UTF-8 bytes (code-point order) only."""
        del holder, app
        return None

    async def prepare(self, ctx: JobContext) -> None:
        """``CREATE TABLE IF NOT EXISTS`` with the deterministic primary key; add columns."""
        try:
            columns = [(n, crate_type(t)) for n, t in ctx.columns]
            ddl = [crate.target_ddl(self.table, columns, ctx.cols)]
            ddl += [drift.add_column_sql("cratedb", self.table, n, t).text
                    for n, t in ctx.add_columns]  # fmt: skip
        except ValueError as exc:
            raise ConfigError(f"{self.where}: {exc}") from exc
        async with ctx.hold(self.url), self._client() as client:
            if ctx.spec.mode == "full_refresh":
                if ctx.resumed and not await self._exists(ctx, client, self.table):
                    return  # resumed after the swap: nothing is left to load
                if not ctx.resumed:  # a new run starts its new table empty
                    drop = crate.drop_table_sql(self.table)
                    await self._retry(ctx, lambda: client.execute(drop))
            for text in ddl:
                await self._retry(ctx, lambda text=text: client.execute(text))

    async def _exists(self, ctx: JobContext, client: CrateDBClient, table: str) -> bool:
        """Whether ``table`` exists (a read of it does not answer 4041 / 4045)."""
        text = crate.exists_sql(table)
        try:
            await self._retry(ctx, lambda: client.execute(text))
        except LoadError as exc:
            if any(f" {code} " in f" {exc.message} " for code in (4041, 4045)):
                return False
            raise
        return True

    async def after_load(self, ctx: JobContext) -> None:
        """Nothing to do after the load (CrateDB has no sequences to move)."""

    async def landed_runs(self, ctx: JobContext) -> list[str]:
        """``[]``: no chunk ledger here."""
        return []

    async def forget_landed(self, ctx: JobContext, run_ids: Sequence[str]) -> None:
        """Nothing kept: nothing to forget."""

    async def swap(self, ctx: JobContext) -> None:
        """Full refresh: ``ALTER CLUSTER SWAP TABLE`` the new table in (target made first).

        CrateDB swaps only two existing tables; a target that does not exist yet is created
        empty first, so readers see no table, then an empty one, then the loaded one.
        """
        final = ctx.spec.target.table
        async with ctx.hold(self.url), self._client() as client:
            if not await self._exists(ctx, client, self.table):
                return  # the swap happened already
            columns = [(n, crate_type(t)) for n, t in ctx.columns]
            create = crate.target_ddl(final, columns, ctx.cols)
            await self._retry(ctx, lambda: client.execute(create))
            swap = crate_swap_sql(final)
            await self._retry(ctx, lambda: client.execute(swap))

    async def run_chunk(self, ctx: JobContext, chunk: Chunk, source: Source) -> ChunkResult:
        """Read, diff and write one chunk (safe to repeat); the runner checkpoints it."""
        cols = ctx.cols
        types = [t for _, t in ctx.columns]
        convert = crate_value(types)
        refusal = crate_row_check(ctx.names, types)  # core.exact, types parsed once
        too_long = text_length_check(ctx.names, [cols.target_type_of(n) for n in ctx.names])
        bk = cols.business_key
        async with ctx.hold(self.url), self._client() as client:
            refresh = crate.refresh_sql(self.table)
            await self._retry(ctx, lambda: client.execute(refresh))
            current = await self._current(ctx, client, chunk, convert)
            rows: list[dict[str, Any]] = []
            inexact: dict[tuple[Any, ...], str] = {}  # key -> why a value is not exact
            null_keys: list[dict[str, Any]] = []  # rows with a NULL business key part
            read = 0
            async with source_connection(source, ctx.hold, ctx.app) as sconn:
                async for batch in source.batches(sconn, chunk, ctx.batch_rows):
                    ctx.check_stop()
                    read += len(batch)
                    for r in batch:
                        row = dict(zip(ctx.names, convert(r), strict=True))
                        if any(row[c] is None for c in bk):
                            null_keys.append(row)
                            continue
                        reason = refusal(r) or too_long(r)
                        if reason is None:
                            rows.append(row)
                        else:
                            inexact.setdefault(tuple(row[c] for c in bk), reason)
            rejects = self._null_keys(ctx, bk, null_keys) + self._inexact(ctx, bk, inexact)
            if inexact:  # a refused key keeps its current version: out of the diff
                rows = [r for r in rows if tuple(r[c] for c in bk) not in inexact]
                current = [r for r in current if tuple(r[c] for c in bk) not in inexact]
            rows, held = hold_duplicates(cols, rows, current)
            rejects += self._duplicates(ctx, bk, held)
            plan = diff(cols, current, rows, epoch_ms(ctx.as_of))
            first = self._plans.setdefault(chunk.index, plan)
            ctx.check_stop()  # last point where nothing of this chunk was written
            known = self._refused.setdefault(chunk.index, {})
            rejects += await self._write(ctx, client, plan, known)
            await self._retry(ctx, lambda: client.execute(refresh))
        self._refused.pop(chunk.index, None)
        self._plans.pop(chunk.index, None)
        counts = first.counts(skip=self._refused_actions(first, known))
        return ChunkResult(chunk.index, read, counts, tuple(rejects))

    def _refused_actions(self, plan: ScdPlan, known: dict[bytes, str]) -> set[int]:
        """The indexes of ``plan``'s actions whose write was refused (rejects, not changes).

        The counts come from the chunk's first plan: a retried attempt diffs against what the
        failed one already wrote, and would count those rows as unchanged.
        """
        out: set[int] = set()
        offset = 0
        for bulk in crate.render(self.table, plan):
            for i, item in enumerate(bulk.bulk_args):
                if _item_id(bulk.stmt, item) in known:
                    out.add(offset + i)
            offset += len(bulk.bulk_args)
        return out

    def _null_keys(
        self, ctx: JobContext, bk: Sequence[str], rows: Sequence[dict[str, Any]]
    ) -> list[Reject]:
        """One reject per source row with a NULL business key part (``null_key_rejects``)."""
        return null_key_rejects(ctx, self.where, [{c: row[c] for c in bk} for row in rows])

    def _duplicates(
        self, ctx: JobContext, bk: Sequence[str], held: dict[tuple[Any, ...], int]
    ) -> list[Reject]:
        """One reject per row of each business key read twice (``core.duplicates``).

        Raises ``DataError`` naming the first such key unless ``on_bad_row = "reject"``.
        """
        named = [(dict(zip(bk, key, strict=True)), n) for key, n in held.items()]
        if named and ctx.on_bad_row != "reject":
            raise DataError(f"{self.where}: {duplicate_message(*named[0])}")
        return [(key_json(key), duplicate_reason(n)) for key, n in named for _ in range(n)]

    def _inexact(
        self, ctx: JobContext, bk: Sequence[str], inexact: dict[tuple[Any, ...], str]
    ) -> list[Reject]:
        """Rejects for the keys with a value CrateDB cannot store exactly (``core.exact``).

        Raises ``DataError`` naming the first of them unless ``on_bad_row = "reject"``.
        """
        rejects = [(key_json(dict(zip(bk, key, strict=True))), why) for key, why in inexact.items()]
        if rejects and ctx.on_bad_row != "reject":
            key, why = rejects[0]
            raise DataError(f"{self.where}: row {key} refused: {why}")
        return rejects

    async def _current(
        self, ctx: JobContext, client: CrateDBClient, chunk: Chunk, convert: Any
    ) -> list[dict[str, Any]]:
        """The chunk's current target rows (after a refresh).

        A one-column key uses ``current_rows_sql`` as is.  A composite key reads the range of
        its first column (``k0 >= lo0 AND k0 <= hi0``: no ``OR``, which some CrateDB-compatible
        endpoints lack) and keeps the rows inside the chunk by exact tuple comparison.
        """
        key = ctx.spec.source.key
        bounds = {k: v if k == "as_of" else convert([v])[0]
                  for k, v in chunk_values(chunk).items()}  # fmt: skip
        if len(key) == 1:
            st = crate.current_rows_sql(self.table, ctx.cols, key, chunk)
            text, args = st.text, st.args(bounds)
        else:
            text, args = crate.first_column_range_sql(self.table, ctx.cols, key[0], chunk, bounds)
        resp = await self._retry(ctx, lambda: client.execute(text, args))
        found = query_rows(resp, client.where, text)
        rows = [dict(zip(resp.cols, row, strict=True)) for row in found]
        if len(key) == 1:
            return rows
        lower = None if chunk.lower is None else tuple(convert(list(chunk.lower)))
        upper = None if chunk.upper is None else tuple(convert(list(chunk.upper)))
        inside = Chunk(chunk.index, lower, upper)
        return [r for r in rows if row_in_chunk([r[k] for k in key], inside)]

    async def _write(
        self, ctx: JobContext, client: CrateDBClient, plan: ScdPlan, known: dict[bytes, str]
    ) -> list[Reject]:
        """Send the plan bulk by bulk; return the rejects.

        ``known`` holds the items refused in an earlier attempt of this chunk (by statement and
        values): they are rejected again with their reason, not resent, so a chunk retry
        neither loses nor re-learns them.
        """
        keys = [_key_of(a, plan.cols) for a in plan.actions]
        rejects: list[Reject] = []
        offset = 0
        for bulk in crate.render(self.table, plan):
            n = len(bulk.bulk_args)
            ids = [_item_id(bulk.stmt, item) for item in bulk.bulk_args]
            bad = [(i, known[x]) for i, x in enumerate(ids) if x in known]
            todo = [i for i, x in enumerate(ids) if x not in known]
            sent = await self._bulk(ctx, client, bulk.stmt, [bulk.bulk_args[i] for i in todo])
            for index, reason in sent:
                known[ids[todo[index]]] = reason
            bad += [(todo[index], reason) for index, reason in sent]
            for index, reason in sorted(bad):
                key = dict(zip(plan.cols.business_key, keys[offset + index], strict=True))
                if ctx.on_bad_row != "reject":
                    raise DataError(f"{self.where}: row {key_json(key)} refused: {reason}")
                rejects.append((key_json(key), reason))
            offset += n
        return rejects

    async def _bulk(
        self, ctx: JobContext, client: CrateDBClient, stmt: str, args: Sequence[Sequence[Any]]
    ) -> list[tuple[int, str]]:
        """Send one bulk until every item is applied or refused; the refused (index, reason).

        Items are judged by ``crate_protocol.judge_bulk`` (every statement here is idempotent);
        undecided items (a bare ``rowcount -2``) are resolved by resending them in small bulks
        (``core.crate_resolve``), so a refusal is never retried as if it were transient.
        """
        upsert = "DO UPDATE" in stmt.upper()
        group = await self._detail_group(client)
        pending = list(range(len(args)))
        refused: list[tuple[int, str]] = []
        attempt = 0
        while pending:
            attempt += 1
            batch = [args[i] for i in pending]
            try:
                resp = await client.bulk(stmt, batch)
            except TransientError as exc:
                await self._backoff(ctx, attempt, exc)
                continue
            except LoadError as exc:
                if exc.retryable:
                    raise
                # refused whole (a value it cannot cast): bisect to the rows, in "fail" mode
                # too, so the run's error names the row's key (``_write``), not just the bulk
                refused += await self._split(ctx, client, stmt, batch, pending, exc.message)
                break
            verdict = verdict_for(len(batch), resp, where=client.where, attempt=attempt,
                                  upsert=upsert, idempotent=True)  # fmt: skip
            if verdict.undecided and not (verdict.rejected and ctx.on_bad_row != "reject"):
                verdict = await client.resolve(
                    verdict, len(batch), _body_of(stmt, batch),
                    attempt=attempt, upsert=upsert, idempotent=True, group=group,
                )  # fmt: skip
            refused += [(pending[i], reason) for i, reason in verdict.rejected]
            refused += [(pending[i], NO_DETAIL) for i in verdict.undecided]
            if refused and ctx.on_bad_row != "reject":
                break
            pending = [pending[i] for i in verdict.retry]
            if pending:
                reason = f"{self.where}: {verdict.retry_reason}"
                await self._backoff(ctx, attempt, TransientError(reason))
        return refused

    async def _detail_group(self, client: CrateDBClient) -> int:
        """How many undecided items to resend per request to this server (asked once)."""
        if self._group is None:
            self._group = detail_group(await client.server_version())
        return self._group

    async def _split(
        self,
        ctx: JobContext,
        client: CrateDBClient,
        stmt: str,
        batch: list[Sequence[Any]],
        indexes: list[int],
        message: str,
    ) -> list[tuple[int, str]]:
        """Bisect a bulk the server refused as a whole: the items refused, with their reasons.

        Each half goes through ``_bulk`` again, so the per-item answers of a half the server
        accepts are judged too (a NOT NULL item there is a reject, not a silent loss).
        """
        if len(batch) == 1:
            return [(indexes[0], message)]
        mid = len(batch) // 2
        out: list[tuple[int, str]] = []
        for part, idx in ((batch[:mid], indexes[:mid]), (batch[mid:], indexes[mid:])):
            out += [(idx[i], why) for i, why in await self._bulk(ctx, client, stmt, part)]
            if out and ctx.on_bad_row != "reject":
                break  # "fail": the first refused row is the one the error names
        return out

    async def _backoff(self, ctx: JobContext, attempt: int, exc: TransientError) -> None:
        # bulk-level retries resend only the failed items; they sit inside the runner's chunk
        # retries, so they are kept few (the chunk retry is the outer loop, not a multiplier)
        await anyio.sleep(backoff(exc, attempt, _inner(ctx.policy), what=self.where))

    async def _retry(self, ctx: JobContext, call: Any) -> Any:
        return await retrying(call, _inner(ctx.policy), what=self.where)


def _key_of(action: Action, cols: ScdColumns) -> tuple[Any, ...]:
    if isinstance(action, InsertVersion):
        return tuple(action.row[c] for c in cols.business_key)
    return tuple(action.key)


def _item_id(stmt: str, item: Sequence[Any]) -> bytes:
    """A bulk item's identity across attempts of a chunk: its statement and values."""
    return orjson.dumps([stmt, item], default=str)


def _body_of(stmt: str, batch: Sequence[Sequence[Any]]) -> Callable[[tuple[int, ...]], bytes]:
    """The bulk body of some items of ``batch`` (for resolving undecided items)."""

    def body(items: tuple[int, ...]) -> bytes:
        return build_request(stmt, bulk_args=[batch[i] for i in items])

    return body


def _inner(policy: RetryPolicy) -> RetryPolicy:
    """The run's policy with at most ``INNER_RETRIES`` retries (requests inside one chunk)."""
    return replace(policy, max_retries=min(INNER_RETRIES, policy.max_retries))
