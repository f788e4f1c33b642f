"""The writer's CrateDB sink: ``bulk_args`` inserts, resent ``ON CONFLICT (pk) DO NOTHING``.

``CrateRowsSink`` subclasses the bench sink (``sinks.cratedb``), replacing ``prepare(schema)``
with ``open(columns, primary_key)``.  A resent row that landed is counted delivered, not
written twice, so the table must have a primary key (declared when the writer creates it, or
read from the server).  The intake looks at rows through ``look`` (``core.crate_native``'s
``ColumnPlan``, decided once the columns are known).  A batch that ``plain`` passes travels as
its rows and is dumped with msgspec (``crate_native.dump_plain``) a slice at a time; any other
is encoded by ``encode``, which refuses the rows CrateDB would not store exactly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import anyio
import anyio.lowlevel

from async_etl.core import crate_native, pg_native
from async_etl.core.compare import base_type
from async_etl.core.crate_answers import query_rows
from async_etl.core.crate_names import first_column_problem, table_problem
from async_etl.core.crate_protocol import Response
from async_etl.core.exact import crate_column_type, text_bound
from async_etl.core.row_codecs import Encoded, encode_crate_rows
from async_etl.core.writer_sql import (
    CRATE_COLUMNS,
    CRATE_PRIMARY_KEY,
    crate_declared_problem,
    crate_insert,
    create_refused,
    create_table,
    key_problem,
    pick_columns,
)
from async_etl.drivers.cratedb import listed_types
from async_etl.errors import (
    AsyncEtlError,
    ConfigError,
    LoadError,
    TransientLoadError,
    first_etl_error,
)
from async_etl.sinks.cratedb import CrateDBSink
from async_etl.sinks.rows_common import Declared, RecordsBatch, encoded_again, split_declared
from async_etl.typing import EncodedBatch, SendResult, WireFormat

_NO_PRIMARY_KEY = (
    "{where}: the table has no primary key, so a resent batch could land twice "
    "(declare columns= with primary_key= to create one)"
)


async def _at_once(calls: Sequence[Callable[[], Awaitable[Any]]]) -> list[Any]:
    """Await every call of ``calls`` at once; their results, in order.

    Raises the first ``AsyncEtlError`` any of them raised (the others are cancelled), else the
    group of what they raised.
    """
    results: list[Any] = [None] * len(calls)

    async def one(pos: int) -> None:
        results[pos] = await calls[pos]()

    failed: AsyncEtlError | None = None
    try:
        async with anyio.create_task_group() as tg:
            for pos in range(len(calls)):
                tg.start_soon(one, pos)
    except BaseExceptionGroup as group:
        failed = first_etl_error(group)
        if failed is None:
            raise
    if failed is not None:  # raised as it was, with its own cause (the driver's exception)
        raise failed
    return results


class CrateRowsSink(CrateDBSink):
    """A CrateDB table filled by a writer (``bulk_args``; resends ``ON CONFLICT DO NOTHING``)."""

    wire: WireFormat = "crate_json"
    native = True  # a batch ``plain`` passes travels as its rows, dumped as they are
    isolate_refusals = True  # one row CrateDB cannot cast must not strand the batch
    gzip_in_thread = False  # the loop thread is busy with the host's rows: see gzip_paced
    _names: tuple[str, ...] = ()
    _types: tuple[str, ...] = ()
    _plan = crate_native.ColumnPlan((), ())

    async def open(self, columns: Declared, primary_key: Sequence[str]) -> tuple[str, ...]:
        """Check the server, create the table (when declared); return the columns to fill.

        Raises ``ConfigError`` for a column to fill of an ``ARRAY(VARCHAR(n))`` /
        ``ARRAY(CHARACTER(n))`` type (``_bounded_array``), a table or schema name CrateDB
        refuses (``core.crate_names``:
        one starting with ``_``, with upper case letters or reserved; checked before any round
        trip), a missing table, an unknown column, a declared name CrateDB
        refuses (``core.crate_names``: one starting with ``_``), a declared type the
        server does not know or that differs from the existing table's column
        (``writer_sql.crate_declared_problem``), or a table without a primary key (checked
        before creating); ``TransientLoadError`` / ``LoadError`` like the bench sink.
        """
        declared, wanted = split_declared(columns)
        qualified = self.client.endpoint.qualify(self.table.name)
        where = self.describe()
        if (refused := table_problem(qualified)) is not None:
            raise ConfigError(f"{where}: {refused}")
        await self.client.open()
        schema, _, name = qualified.rpartition(".")

        async def columns_found() -> Response:
            return await self.client.execute(CRATE_COLUMNS, [schema, name])

        async def types_of(found: Response) -> dict[str, str]:
            rows = query_rows(found, self.client.where, CRATE_COLUMNS, width=3)
            # VARCHAR(n) / CHAR(n) keep n: a text CrateDB would change is refused
            return dict(await listed_types(self.client, schema, name, rows))

        # one round trip's wait: the version, the key and the columns (none: no table yet)
        self.version, pk, found = await _at_once(
            [self.client.server_version, lambda: self._primary_key(schema, name), columns_found]
        )
        types = await types_of(found)
        if declared is not None:
            stmt = create_table(self.table.name, declared, primary_key)  # checked first
            if (refused := first_column_problem(declared)) is not None:
                raise ConfigError(f"{where}: columns: {refused}; rename it")
            differs = crate_declared_problem(where, self.table.name, declared, types)
            if differs is not None:  # CREATE TABLE IF NOT EXISTS would check nothing
                raise ConfigError(differs)
            if not pk and not primary_key:  # refused before anything is created
                raise ConfigError(_NO_PRIMARY_KEY.format(where=where))
            try:
                await self.client.execute(stmt)
            except TransientLoadError:
                raise
            except LoadError as exc:
                if ": 400 " not in exc.message:  # not about the statement (401, 403, ...)
                    raise
                reason = exc.message.removeprefix(f"{self.client.where}: ")
                raise ConfigError(
                    create_refused(where, self.table.name, declared, reason)
                ) from None
            if not types:  # created now
                pk = pk or await self._primary_key(schema, name)
                types = await types_of(await columns_found())
        names = pick_columns(self.table.name, list(types), wanted)
        if (refused := _bounded_array(names, types)) is not None:
            raise ConfigError(f"{where}: {refused}")
        if not pk:
            raise ConfigError(_NO_PRIMARY_KEY.format(where=where))
        if (why := key_problem(where, self.table.name, primary_key, pk)) is not None:
            raise ConfigError(why)  # an existing table keeps its own key: it must be this one
        missing = [k for k in pk if k not in names]
        if missing:
            raise ConfigError(
                f"{where}: the writer must fill the primary key column {missing[0]!r}"
            )
        self.pk = pk
        self._stmt = crate_insert(self.table.name, names)
        self._names = names
        self._types = tuple(crate_column_type(types[n]) for n in names)
        bases = [base_type(t)[0] for t in self._types]
        lengths = [text_bound(t) for t in self._types]
        self._plan = crate_native.ColumnPlan.of(bases, len(names), lengths)
        return names

    async def _primary_key(self, schema: str, name: str) -> tuple[str, ...]:
        """The table's primary key columns (none when it does not exist)."""
        keys = await self.client.execute(CRATE_PRIMARY_KEY, [schema, name])
        key_rows = query_rows(keys, self.client.where, CRATE_PRIMARY_KEY, width=1)
        return tuple(str(r[0]) for r in key_rows if str(r[0]) != "_id")

    async def landed(self, batch: EncodedBatch) -> bool | None:
        """Unknowable for CrateDB without reading the rows back: None."""
        return None

    def plain(self, rows: Sequence[tuple[Any, ...]]) -> bool:
        """True when CrateDB stores every value of ``rows`` (a slice of a batch) exactly."""
        return self._plan.plain(rows)

    def look(self, rows: Sequence[tuple[Any, ...]], check: bool) -> tuple[bool, int]:
        """``plain`` (only when ``check``; else False) and the size estimate of the intake's rows.

        ``rows``: tuples as wide as the columns (``ColumnPlan.look``).
        """
        return self._plan.look(rows, check)

    async def send(self, batch: EncodedBatch, attempt: int) -> SendResult:
        """Post one bulk body (see ``CrateDBSink.send``); a ``RecordsBatch`` is dumped first.

        Its rows passed ``plain``, so they are dumped as they are (``crate_native.dump_plain``),
        a slice at a time with the event loop let run in between; should the dump still refuse
        a value, the answer is a retry of the batch encoded by ``encode``, which refuses the bad
        rows with reasons.
        """
        if not isinstance(batch, RecordsBatch):
            return await super().send(batch, attempt)
        records = batch.records
        try:
            body = await self._body(records)
        except TypeError:
            return encoded_again(batch, self.encode(records), self.wire)
        keys = range(batch.ids.start, batch.ids.stop)  # not a tuple of 5,000 ints a batch
        return await super().send(EncodedBatch(batch.ids, body, self.wire, keys=keys), attempt)

    async def _body(self, rows: Sequence[tuple[Any, ...]]) -> bytes:
        width = max(1, len(self._names))
        if len(rows) * width <= pg_native.PACE_ABOVE:
            return crate_native.bulk_body(self._stmt, rows, crate_native.dump_plain)
        every = pg_native.SLICE_VALUES // width
        parts = []
        for part in crate_native.body_parts(self._stmt, rows, every, crate_native.dump_plain):
            parts.append(part)
            await anyio.lowlevel.checkpoint()
        return b"".join(parts)

    def encode(
        self, rows: Sequence[tuple[Any, ...]], pause: Callable[[], None] | None = None
    ) -> Encoded:
        """The bulk body of ``rows``; rows CrateDB would not store exactly refused, with why."""
        return encode_crate_rows(self._stmt, rows, self._names, self._types)


__all__ = ["CrateRowsSink"]


def _bounded_array(names: Sequence[str], types: Mapping[str, str]) -> str | None:
    """Why the writer refuses to fill an ``ARRAY(VARCHAR(n))`` / ``ARRAY(CHARACTER(n))`` column.

    CrateDB would cut an element's blank excess past n (or pad a shorter ``CHARACTER(n)``
    element: docs, Data types, VARCHAR(n) and CHARACTER(n)); the writer checks no element, so
    such a column is refused before anything is sent (its n is read with ``SHOW CREATE TABLE``:
    information_schema gives none for an array, ``cratedb.listed_types``).
    """
    for name in names:
        pg_type = types[name]
        bound = text_bound(pg_type[:-2]) if pg_type.endswith("[]") else None
        if bound is not None:
            kind = "CHARACTER" if bound.padded else "VARCHAR"
            return (
                f"column {name} is ARRAY({kind}({bound.limit})) (read by SHOW CREATE TABLE): "
                f"CrateDB would cut an element's blank excess past {bound.limit}"
                + (" or pad a shorter one" if bound.padded else "")
                + " (docs, Data types), and the writer checks no element; make it ARRAY(TEXT), "
                "or leave it out (columns=[...])"
            )
    return None
