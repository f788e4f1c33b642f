"""Sinks for a host's own rows (the writer): the table's columns come from the server.

Each subclasses the bench sink of its database and keeps its ``send`` — the same exactly-once
machinery — and replaces ``prepare(schema)`` with ``open(columns, primary_key)``:

* ``PostgresRowsSink`` (``sinks.postgres_rows``): binary COPY plus the ledger row in one
  transaction, one round trip a batch; refused rows isolated in savepoints.
* ``CrateRowsSink`` (``sinks.cratedb_rows``): ``bulk_args`` with a plain INSERT, resent as
  ``ON CONFLICT (pk) DO NOTHING``.
* ``NullRowsSink`` (here): counts rows.

What they share (``Declared``, ``RecordsBatch``) is ``sinks.rows_common``.  ``RowsSink`` is
the union the writer takes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from async_etl.core.batching import Columns, column_total
from async_etl.core.row_codecs import Encoded
from async_etl.sinks.cratedb_rows import CrateRowsSink
from async_etl.sinks.null import NullSink
from async_etl.sinks.postgres_rows import PostgresRowsSink
from async_etl.sinks.rows_common import Declared, split_declared
from async_etl.typing import EncodedBatch, WireFormat


class NullRowsSink(NullSink):
    """Counts a writer's rows and keeps nothing."""

    wire: WireFormat = "none"
    native = False

    def __init__(self) -> None:
        super().__init__(wire="none")
        self._names: tuple[str, ...] = ()

    async def open(self, columns: Declared, primary_key: Sequence[str]) -> tuple[str, ...]:
        """The declared column names (none: rows are taken as tuples of any width)."""
        _, wanted = split_declared(columns)
        self._names = tuple(wanted or ())
        return self._names

    async def landed(self, batch: EncodedBatch) -> bool | None:
        """A null sink keeps nothing: every batch it was handed counts."""
        return True

    def plain(self, rows: Sequence[tuple[Any, ...]]) -> bool:
        """Never: ``encode`` is already free."""
        return False

    def look(self, rows: Sequence[tuple[Any, ...]], check: bool) -> tuple[bool, int]:
        """Never plain (see ``plain``); the size estimate of the rows (as wide as the columns)."""
        return False, column_total(Columns.of(rows, len(self._names)))

    def encode(
        self, rows: Sequence[tuple[Any, ...]], pause: Callable[[], None] | None = None
    ) -> Encoded:
        """Nothing to encode: every row is kept."""
        return Encoded(b"", tuple(range(len(rows))))


RowsSink = PostgresRowsSink | CrateRowsSink | NullRowsSink

__all__ = ["CrateRowsSink", "NullRowsSink", "PostgresRowsSink", "RowsSink"]
