"""The writer's PostgreSQL sink: binary COPY and the ledger row in one transaction.

``PostgresRowsSink`` subclasses the bench sink (``sinks.postgres``) and keeps its exactly-once
machinery, replacing ``prepare(schema)`` with ``open(columns, primary_key)``.

* A batch is one transaction in one round trip: the ledger row and the COPY as one simple
  query (``drivers.postgres_copy``; PostgreSQL runs it as one implicit transaction, the ledger
  row first, so its key is locked for the whole COPY).  The ledger key is
  ``table#writer-<uuid>`` and the writer's sequence numbers start at 1, so two writers on one
  table never share a key, and a retried batch whose first attempt committed is seen landed.
* A batch that ``plain`` passes (``core.pg_native``) travels as its rows (``RecordsBatch``) and
  asyncpg encodes it in C, in slices that let the event loop run (a ``timestamptz`` column's
  values as naive UTC through the ``timestamp`` encoder, ``pg_native.wire_rows``: the same
  bytes, at less than half the cost); should asyncpg still refuse
  a value on the client (nothing is written then), the answer is a retry of the batch encoded
  by the reference encoders, which refuse the bad rows with their reasons.
* A COPY the server refuses for a row's content (a duplicate key, a CHECK) is bisected in
  savepoints inside the batch's one transaction, so only the offending rows are rejected, each
  with its own reason; the ledger row holds how many rows landed (not which: a batch cancelled
  in flight that committed with rows refused is ``landed`` None, reported undelivered "may
  have landed").

``encode(rows)`` is CPU work (the writer runs large batches in a thread).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any

import anyio
import anyio.lowlevel

from async_etl.core import pg_native, sink_rules
from async_etl.core.crate_protocol import BulkVerdict
from async_etl.core.crate_resolve import Resolution
from async_etl.core.pg_copy import copy_payload, copy_rows
from async_etl.core.row_codecs import PG_TYPES, Encoded, PgColumn, encode_pg_rows, pg_row_encoder
from async_etl.core.schema import quote_ident
from async_etl.core.writer_sql import (
    PG_COLUMNS,
    PG_DECLARED,
    PG_PRIMARY_KEY,
    create_refused,
    create_table,
    declared_problem,
    key_problem,
    lookup_type,
    pick_columns,
)
from async_etl.drivers.postgres import (
    PG_ERRORS,
    Connection,
    PostgresError,
    keep_session,
    open_pool,
    pooled,
    translate_pg,
)
from async_etl.drivers.postgres_copy import copy_after
from async_etl.errors import AsyncEtlError, ConfigError, DataError
from async_etl.sinks.pg_sql import VOID_ROWS
from async_etl.sinks.postgres import PostgresSink
from async_etl.sinks.rows_common import Declared, RecordsBatch, encoded_again, split_declared
from async_etl.typing import EncodedBatch, RowError, SendResult, WireFormat

UNDEFINED_OBJECT = "42704"
"""PostgreSQL's SQLSTATE for an unknown type in ``CREATE TABLE`` (``type "x" does not exist``)."""


class _DriverRefusedError(Exception):
    """asyncpg's encoder refused a value on the client: the COPY was aborted, nothing written."""


async def _paced(
    rows: Sequence[tuple[Any, ...]], every: int, cast: Sequence[str | None]
) -> AsyncIterator[tuple[Any, ...]]:
    """``rows`` one by one (``pg_native.wire_rows`` of ``cast``), yielding every ``every``."""
    for start in range(0, len(rows), every):
        if start:
            await anyio.lowlevel.checkpoint()
        for row in pg_native.wire_rows(rows[start : start + every], cast):
            yield row


LANDED_BEFORE = "refused in an earlier attempt of its batch, whose commit answer was lost"
"""The reason for a row of a batch ledgered with fewer rows than it holds (see ``send``)."""


def _landed_before(batch: EncodedBatch, stored: int) -> SendResult:
    """The result for a batch the ledger shows committed, ``stored`` of its rows delivered."""
    refused = max(0, batch.row_count - stored)
    return SendResult(batch.row_count - refused, (RowError(None, LANDED_BEFORE),) * refused)


def _data_error(exc: PostgresError, where: str) -> bool:
    """Whether the server refused a COPY for a row's content (a ``DataError``)."""
    return isinstance(translate_pg(exc, where), DataError)


_SAVEPOINT = "SAVEPOINT async_etl_part"
_RELEASE = "RELEASE SAVEPOINT async_etl_part"
_ROLLBACK_TO = f"ROLLBACK TO SAVEPOINT async_etl_part; {_RELEASE}"


class PostgresRowsSink(PostgresSink):
    """A PostgreSQL table filled by a writer (binary COPY, ledger exactly-once)."""

    wire: WireFormat = "pg_binary"

    def __init__(self, dsn: str, *, table: str, concurrency: int) -> None:
        super().__init__(dsn, table=table, concurrency=concurrency)
        quote_ident(table)
        self.ledger_key = f"{table}#writer-{uuid.uuid4().hex}"
        self._pg_columns: tuple[PgColumn, ...] = ()
        self._fast = pg_row_encoder(())
        self.native = False  # every column's type can go through asyncpg's encoders
        self._plan = pg_native.ColumnPlan.of(())  # how the intake looks at the columns
        self._cast: tuple[str | None, ...] = ()  # pg_native.encode_as of the columns
        self._encoding = anyio.CapacityLimiter(1)  # re-encoding a batch the driver refused

    async def open(self, columns: Declared, primary_key: Sequence[str]) -> tuple[str, ...]:
        """Connect, create the table (when declared) and the ledger; return the columns to fill.

        Raises ``ConfigError`` for a missing table, an unknown column, a column type the
        writer cannot encode, and a declared type the server does not know or that differs
        from the existing table's (``writer_sql.declared_problem``); ``TransientLoadError`` /
        ``LoadError`` like the bench sink.
        """
        declared, wanted = split_declared(columns)
        try:
            if self._pool is None:
                # the writer's connections keep no session state: no reset query a batch
                self._pool = await open_pool(
                    self._dsn, min_size=1, max_size=self._size, command_timeout=300,
                    reset=keep_session,
                )  # fmt: skip
            # one transaction: a table (or schema) created for columns the writer cannot
            # encode is rolled back with the ConfigError, leaving nothing behind
            async with pooled(self._pool) as conn, conn.transaction():
                if self._sql.create_schema and declared is not None:
                    await conn.execute(self._sql.create_schema)
                if declared is not None:
                    create = create_table(self._table, declared, primary_key)  # checked first
                    await self._check_declared(conn, declared)
                    await conn.execute(create)
                await conn.execute(self._sql.create_ledger)
                listed = await conn.fetch(PG_COLUMNS, quote_ident(self._table))
                found = [r for r in listed if not r[4]]
                generated = {r[0] for r in listed if r[4]}
                always = {r[0] for r in found if r[5]}
                by_name = {
                    r[0]: PgColumn(r[0], r[1], bool(r[2]), int(r[3]), bool(r[6])) for r in found
                }
                names = pick_columns(self._table, [r[0] for r in found], wanted, generated, always)
                cols = tuple(by_name[n] for n in names)
                self._check_encodable(cols)
                if primary_key:  # an existing table keeps its own key: it must be this one
                    key = await conn.fetch(PG_PRIMARY_KEY, quote_ident(self._table))
                    why = key_problem(self._where, self._table, primary_key, [r[0] for r in key])
                    if why is not None:
                        raise ConfigError(why)
        except AsyncEtlError:
            raise
        except PG_ERRORS as exc:
            if declared is not None and getattr(exc, "sqlstate", "") == UNDEFINED_OBJECT:
                why = create_refused(self._where, self._table, declared, str(exc))
                raise ConfigError(why) from None
            raise translate_pg(exc, self._where) from exc
        self._pg_columns = cols
        self._fast = pg_row_encoder(cols)
        self._plan = pg_native.ColumnPlan.of(cols)
        self.native = self._plan.native  # pg_native.native_table(cols), decided by the plan
        self._cast = pg_native.encode_as(cols)
        self._columns = names
        return names

    async def _check_declared(self, conn: Any, declared: Mapping[str, str]) -> None:
        """Raise ``ConfigError`` for the first declared type unknown or differing (one line).

        ``CREATE TABLE IF NOT EXISTS`` checks nothing of a table that exists: the types are
        resolved here, before it.  A name that is no type's syntax makes ``to_regtype`` raise;
        each type is then resolved alone (each in a savepoint) to name its column.
        """
        names = list(declared)
        try:
            async with conn.transaction():
                rows = await conn.fetch(PG_DECLARED, quote_ident(self._table), names,
                                        [lookup_type(t) for t in declared.values()])  # fmt: skip
        except PG_ERRORS as exc:
            if not getattr(exc, "sqlstate", "").startswith("42"):
                raise
            rows = []
            for name in names:
                try:
                    async with conn.transaction():
                        await conn.fetchval("SELECT to_regtype($1)", lookup_type(declared[name]))
                except PG_ERRORS:
                    rows.append((name, True, None, False))
                    break
            else:
                raise
        for name, unknown, has, differs in rows:
            why = declared_problem(self._where, self._table, name, declared[name], unknown,
                                   has, differs)  # fmt: skip
            if why is not None:
                raise ConfigError(why)

    def _check_encodable(self, cols: Sequence[PgColumn]) -> None:
        """Raise ``ConfigError`` naming the first column whose type the writer cannot encode."""
        for col in cols:
            if col.typname not in PG_TYPES:
                known = ", ".join(sorted(PG_TYPES))
                shown = f"{col.typname[1:]}[]" if col.typname.startswith("_") else col.typname
                raise ConfigError(
                    f"{self._where}: column {col.name!r} has type {shown}, "
                    f"which the writer cannot encode (it takes {known})"
                )

    def plain(self, rows: Sequence[tuple[Any, ...]]) -> bool:
        """True when asyncpg may encode ``rows`` (a slice of a batch) as they are."""
        return self._plan.plain(rows)

    def look(self, rows: Sequence[tuple[Any, ...]], check: bool) -> tuple[bool, int]:
        """``plain`` (only when ``check``; else False) and the size estimate of the intake's rows.

        ``rows``: tuples as wide as the columns, each column seen once for both
        (``pg_native.ColumnPlan.look``: one pass where that proves it plain).
        """
        return self._plan.look(rows, check)

    async def send(self, batch: EncodedBatch, attempt: int) -> SendResult:
        """COPY one batch with its ledger row, in one transaction (see ``PostgresSink``).

        A ``RecordsBatch`` whose value asyncpg refuses on the client comes back as a retry of
        the same rows encoded by the reference encoders; the rows they refuse are rejected.
        """
        if not isinstance(batch, RecordsBatch):
            return await self._send_isolating(batch, attempt)
        try:
            return await self._send_isolating(batch, attempt)
        except _DriverRefusedError:
            pass
        encoded = await anyio.to_thread.run_sync(self.encode, batch.records, limiter=self._encoding)
        return encoded_again(batch, encoded, self.wire)

    async def _send_isolating(self, batch: EncodedBatch, attempt: int) -> SendResult:
        """``PostgresSink.send``, but a data error rejects only the rows that cause it.

        One transaction: the ledger row and the COPY of the whole batch, one simple query (one
        round trip, the ledger row first).  When the server refuses the COPY for a row's
        content, a second transaction COPYs halves in savepoints (``Resolution.whole``) until
        each refused row stands alone with its own reason; its ledger row holds how many rows
        landed, so a retry after a lost commit reports the same split.
        """
        if self._pool is None:
            raise sink_rules.closed(self._where)
        try:
            async with pooled(self._pool) as conn:
                if sink_rules.ask_ledger(attempt):
                    stored = await conn.fetchval(
                        self._sql.ledgered_rows, self.ledger_key, batch.ids.start
                    )
                    if stored is not None:
                        return _landed_before(batch, int(stored))
                record = self._sql.record_literal(self.ledger_key, batch.ids.start, batch.row_count)
                try:  # the usual case: no savepoint, one round trip
                    await self._copy(conn, batch, record)
                    return SendResult(delivered=batch.row_count)
                except PostgresError as exc:
                    if batch.row_count == 1 or not _data_error(exc, self._where):
                        raise
                async with conn.transaction():
                    refused = await self._isolate(conn, batch)
                    delivered = batch.row_count - len(refused)
                    await conn.execute(
                        self._sql.record, self.ledger_key, batch.ids.start, delivered
                    )
        except PG_ERRORS as exc:
            err = translate_pg(exc, self._where)
            whole = sink_rules.outcome(batch, err)
            if whole is None:
                raise err from exc
            return whole
        ids = batch.row_ids()
        rejected = tuple(RowError(ids[pos], why) for pos, why in refused)
        return SendResult(delivered, rejected)

    async def _isolate(self, conn: Connection, batch: EncodedBatch) -> tuple[tuple[int, str], ...]:
        """The positions of the rows of refused ``batch`` refused alone, with their reasons.

        COPYs halves in savepoints until each refused row stands alone (the rest stay written).
        """
        part_of = self._parts(batch)
        resolution = Resolution.whole(batch.row_count)
        while (group := resolution.next_group()) is not None:
            part = part_of(group)
            reason = await self._try_copy(conn, part)
            if reason is None:
                resolution.feed(group, BulkVerdict(len(group)))
            else:
                resolution.refused(group, reason)
        return resolution.verdict().rejected

    def _parts(self, batch: EncodedBatch) -> Callable[[Sequence[int]], EncodedBatch]:
        """A function giving the batch of the rows of ``batch`` at some positions."""
        if isinstance(batch, RecordsBatch):
            records = batch.records
            return lambda group: RecordsBatch(
                batch.ids, b"", self.wire, records=[records[i] for i in group]
            )
        rows = copy_rows(batch.payload)
        return lambda group: EncodedBatch(
            batch.ids, copy_payload(rows[i] for i in group), self.wire
        )

    async def _try_copy(self, conn: Connection, batch: EncodedBatch) -> str | None:
        """COPY ``batch`` in a savepoint: None, or the data error that refused it (rolled back).

        The savepoint is released either way, so the transaction holds one level of them
        however many parts it tries: asyncpg's nested ``transaction()`` rolls back *to* its
        savepoint and keeps it, each next one nests inside, and every level then holds a
        transaction-id lock until the end (a batch of 5,000 refused rows, bisected in ~10,000
        COPYs, ran the server out of shared memory: ``max_locks_per_transaction``).  Raises any
        other error (translated), which ends the enclosing transaction.
        """
        await conn.execute(_SAVEPOINT)
        try:
            await self._copy(conn, batch)
        except PostgresError as exc:
            err = translate_pg(exc, self._where)
            if not isinstance(err, DataError):
                raise err from exc
            await conn.execute(_ROLLBACK_TO)
            return err.message
        await conn.execute(_RELEASE)
        return None

    async def _copy(self, conn: Connection, batch: EncodedBatch, before: str | None = None) -> None:
        """COPY ``batch``, after ``before`` (the ledger row) in the same simple query when given.

        Raises ``_DriverRefusedError`` when asyncpg's encoders refuse a value of a
        ``RecordsBatch`` (nothing is written), the server's ``PostgresError`` as it is.
        """
        columns, table, schema = self._columns, self._name, self._schema_name
        if not isinstance(batch, RecordsBatch):
            await copy_after(conn, before, table, columns, schema=schema, payload=batch.payload)
            return
        rows, cast = batch.records, self._cast
        width = max(1, len(columns))
        try:
            records: Iterable[tuple[Any, ...]] | AsyncIterator[tuple[Any, ...]]
            if len(rows) * width > pg_native.PACE_ABOVE:
                records = _paced(rows, max(1, pg_native.SLICE_VALUES // width), cast)
            else:
                records = pg_native.wire_rows(rows, cast)
            await copy_after(
                conn, before, table, columns, schema=schema, records=records, encode_as=cast
            )
        except PostgresError:
            raise
        except (TypeError, ValueError, OverflowError) as exc:  # raised by a client encoder
            raise _DriverRefusedError(str(exc)) from exc

    async def landed(self, batch: EncodedBatch) -> bool | None:
        """Whether every row of ``batch`` committed; None when that cannot be told.

        Claims the batch's ledger key with a void row (``VOID_ROWS``) and commits it.  The
        claim waits for a cut-off transaction still holding the key (its ledger row goes
        first), so a commit in flight is not mistaken for none; and a cut-off query the
        server has not run yet finds the key taken, so its ledger row and its COPY roll back
        together: False stays true (the batch is never sent again).  A batch that committed
        with some rows refused (``_isolate``) is None: the ledger keeps how many landed, not
        which, so its rows are not all counted delivered.
        """
        if self._pool is None:
            return None
        stored = None
        try:
            async with pooled(self._pool) as conn:
                absent = await conn.fetchval(
                    self._sql.claim, self.ledger_key, batch.ids.start, VOID_ROWS
                )
                if absent is None:
                    stored = await conn.fetchval(
                        self._sql.ledgered_rows, self.ledger_key, batch.ids.start
                    )
        except PG_ERRORS:
            return None
        if absent is not None or stored == VOID_ROWS:
            return False
        return True if stored == batch.row_count else None

    def encode(
        self, rows: Sequence[tuple[Any, ...]], pause: Callable[[], None] | None = None
    ) -> Encoded:
        """The binary COPY payload of ``rows`` (refused rows left out, with their reason)."""
        return encode_pg_rows(self._pg_columns, rows, self._fast, pause)


__all__ = ["LANDED_BEFORE", "UNDEFINED_OBJECT", "PostgresRowsSink"]
