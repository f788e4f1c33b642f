"""Pure in-memory tables for the CrateDB stand-in, with CrateDB's refresh visibility.

Theory: every table keeps two dicts keyed by primary key (a tuple of the PK values, or a
generated ``_id`` int when the table has no PK).  ``live`` takes every write at once and serves
exact primary-key lookups.  ``visible`` is the snapshot that non-PK reads and ``count(*)`` see;
it is replaced by a copy of ``live`` on ``REFRESH TABLE`` or, lazily on the next read, once the
table's ``refresh_interval`` (ms, default 1000; 0 = only explicit refreshes) has elapsed since
the first unrefreshed write.  Rows are lists in column order and are never mutated in place (an
update stores a new list), so a snapshot is a cheap shallow dict copy.

Counting mode (``count_rows``) stores nothing: it only counts rows per table, and the counts
follow the same refresh rule.  Primary-key uniqueness is not checked for counted rows.

The clock is injected (``Catalog(clock=...)``) so tests can make intervals elapse.
"""

from __future__ import annotations

import time
import zlib
from array import array
from collections.abc import Callable, Iterator
from contextlib import suppress
from typing import Any

from async_etl.testing.crate import protocol
from async_etl.testing.crate.coltypes import Caster
from async_etl.testing.crate.sqlast import Check, ColumnDef, CreateTable, TableName

Key = Any
"""A row's identity: a tuple of primary-key values, or an int ``_id`` without a PK."""

DEFAULT_REFRESH_INTERVAL_MS = 1000
DEFAULT_SHARDS = 4
BUILTIN_SCHEMAS = frozenset({"doc", "sys", "information_schema", "pg_catalog"})


class Table:
    """One table: its columns, primary key, rows and refresh state."""

    def __init__(self, schema: str, stmt: CreateTable, clock: Callable[[], float]) -> None:
        self.schema = schema
        self.name = stmt.table.name
        self.columns: tuple[ColumnDef, ...] = stmt.columns
        self.index = {c.name: i for i, c in enumerate(stmt.columns)}
        self.pk: tuple[int, ...] = tuple(self.index[k] for k in stmt.primary_key)
        self.pk_names: tuple[str, ...] = stmt.primary_key
        self.required = tuple(
            dict.fromkeys(self.pk + tuple(i for i, c in enumerate(self.columns) if c.not_null))
        )
        """Positions that must not be NULL: the primary key and NOT NULL columns."""
        self.casters: tuple[Caster, ...] = tuple(c.type.caster() for c in stmt.columns)
        self.checks: tuple[Check, ...] = stmt.checks
        self.check_tests: list[tuple[str, Callable[[list[Any]], bool], tuple[int, ...]]] | None
        self.check_tests = None
        """``(name, row test, positions it reads)`` per CHECK, compiled on first use."""
        self.shards = stmt.shards or DEFAULT_SHARDS
        self.settings: dict[str, Any] = dict(stmt.settings)
        self._clock = clock
        self._live: dict[Key, list[Any]] = {}
        self._visible: dict[Key, list[Any]] = {}
        self._dirty_since: float | None = None
        self._next_id = 0
        self.counted_live = 0
        self.counted_visible = 0
        self.counted_keys = array("q")
        """Counting mode keeps the integer primary key of each counted row (8 bytes a row),
        so filtered counts such as ``count(*) WHERE id >= ? AND id < ?`` stay truthful."""
        self._counted_keys_visible = 0

    def add_column(self, column: ColumnDef) -> None:
        """``ALTER TABLE ADD COLUMN``: a nullable column, NULL in every existing row.

        Raises ``CrateError`` 4091 (as CrateDB) when the column exists, 4008 for a name CrateDB
        refuses (``protocol.column_name_refused``), and 4000 for NOT NULL.
        """
        if (refused := protocol.column_name_refused(column.name)) is not None:
            raise refused
        if column.name in self.index:
            raise protocol.CrateError(
                409, 4091, f"ColumnAlreadyExistsException[Column '{column.name}' already exists]"
            )
        if column.not_null:
            raise protocol.CrateError(
                400,
                4000,
                "UnsupportedFeatureException[NOT NULL is not supported by the "
                "stand-in's ADD COLUMN]",
            )
        self.columns = (*self.columns, column)
        self.index[column.name] = len(self.columns) - 1
        self.casters = (*self.casters, column.type.caster())
        self._live = {k: [*row, None] for k, row in self._live.items()}
        self._visible = {k: [*row, None] for k, row in self._visible.items()}

    @property
    def fqn(self) -> str:
        """``schema.name``."""
        return f"{self.schema}.{self.name}"

    @property
    def refresh_interval_ms(self) -> int:
        """The periodic refresh interval; 0 disables it."""
        value = self.settings.get("refresh_interval", DEFAULT_REFRESH_INTERVAL_MS)
        try:
            return int(value)
        except (TypeError, ValueError):
            return DEFAULT_REFRESH_INTERVAL_MS

    def key_of(self, row: list[Any]) -> Key:
        """The primary key of ``row`` (a fresh ``_id`` when the table has no PK)."""
        if not self.pk:
            self._next_id += 1
            return self._next_id
        return tuple([row[i] for i in self.pk])

    def shard_of(self, key: Key) -> int:
        """A stable shard number for ``key`` (used to cap error reports per shard)."""
        if isinstance(key, tuple) and len(key) == 1 and isinstance(key[0], int):
            return key[0] % self.shards
        return zlib.crc32(repr(key).encode()) % self.shards

    # -- writes: visible to PK lookups at once ---------------------------------------------
    def _touch(self) -> None:
        if self._dirty_since is None:
            self._dirty_since = self._clock()

    def get(self, key: Key) -> list[Any] | None:
        """The live row under ``key`` (exact PK lookups see unrefreshed writes)."""
        return self._live.get(key)

    def put(self, key: Key, row: list[Any]) -> None:
        """Insert or replace the row under ``key``."""
        self._live[key] = row
        self._touch()

    def delete(self, key: Key) -> bool:
        """Remove the row under ``key``; False when there was none."""
        if self._live.pop(key, None) is None:
            return False
        self._touch()
        return True

    def count_rows(self, n: int, keys: list[Any] | None = None) -> None:
        """Counting mode: record ``n`` inserted rows without storing them (but their int PKs)."""
        self.counted_live += n
        if keys is not None:
            with suppress(TypeError, OverflowError):  # not a plain bigint key: count only
                self.counted_keys.extend(keys)
        self._touch()

    @property
    def counted_pk(self) -> int | None:
        """The column position whose values counting mode keeps (single integer PK), or None."""
        if len(self.pk) != 1:
            return None
        return self.pk[0]

    def counted_rows(self) -> Iterator[list[Any]]:
        """Counted rows a non-PK read sees: sparse rows holding only the primary key."""
        self._maybe_refresh()
        pos = self.counted_pk
        if pos is None:
            return
        width = len(self.columns)
        for key in self.counted_keys[: self._counted_keys_visible]:
            row: list[Any] = [None] * width
            row[pos] = key
            yield row

    def visible_counted_keys(self) -> array[int]:
        """Counted rows' primary keys a non-PK read sees now (a copy)."""
        self._maybe_refresh()
        return self.counted_keys[: self._counted_keys_visible]

    # -- reads: visible only after a refresh -----------------------------------------------
    def refresh(self) -> None:
        """Make every write so far visible to non-PK reads (``REFRESH TABLE``)."""
        if self._dirty_since is not None:
            self._visible = dict(self._live)
            self.counted_visible = self.counted_live
            self._counted_keys_visible = len(self.counted_keys)
            self._dirty_since = None

    def _maybe_refresh(self) -> None:
        interval = self.refresh_interval_ms
        if self._dirty_since is None or interval <= 0:
            return
        if (self._clock() - self._dirty_since) * 1000.0 >= interval:
            self.refresh()

    def visible_rows(self) -> Iterator[tuple[Key, list[Any]]]:
        """``(key, row)`` pairs a non-PK read sees now."""
        self._maybe_refresh()
        return iter(list(self._visible.items()))

    def visible_count(self) -> int:
        """What ``SELECT count(*)`` answers now (stored plus counted rows)."""
        self._maybe_refresh()
        return len(self._visible) + self.counted_visible


class Catalog:
    """All tables of one stand-in, by ``(schema, name)``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.tables: dict[tuple[str, str], Table] = {}

    @staticmethod
    def qualify(name: TableName, default_schema: str) -> tuple[str, str]:
        """``(schema, table)`` with the session's default schema filled in."""
        return (name.schema or default_schema, name.name)

    def get(self, name: TableName, default_schema: str) -> Table:
        """The table ``name`` refers to; raises ``CrateError`` 4041 or 4045 when unknown."""
        schema, table = self.qualify(name, default_schema)
        found = self.tables.get((schema, table))
        if found is not None:
            return found
        if schema not in BUILTIN_SCHEMAS and not any(s == schema for s, _ in self.tables):
            raise protocol.schema_unknown(schema)
        raise protocol.relation_unknown(f"{schema}.{table}")

    def create(self, stmt: CreateTable, default_schema: str) -> bool:
        """Create a table; False if it exists and ``IF NOT EXISTS`` was given.

        Raises ``CrateError`` 4093 when it exists otherwise, 4008 for a column name CrateDB
        refuses (``protocol.column_name_refused``).
        """
        for column in stmt.columns:
            if (refused := protocol.column_name_refused(column.name)) is not None:
                raise refused
        key = self.qualify(stmt.table, default_schema)
        if key in self.tables:
            if stmt.if_not_exists:
                return False
            raise protocol.relation_exists(".".join(key))
        if key[0] in ("sys", "information_schema", "pg_catalog"):
            raise protocol.CrateError(
                400, 4002, f"InvalidSchemaNameException[schema '{key[0]}' is read-only]"
            )
        self.tables[key] = Table(key[0], stmt, self.clock)
        return True

    def swap(
        self, source: TableName, target: TableName, default_schema: str, *, drop_source: bool
    ) -> None:
        """Swap two tables' names in one step (``drop_source``: then drop the old target).

        Raises ``CrateError`` 4041 when either table is unknown (nothing changes).
        """
        a, b = self.get(source, default_schema), self.get(target, default_schema)
        ka, kb = self.qualify(source, default_schema), self.qualify(target, default_schema)
        a.schema, a.name, b.schema, b.name = kb[0], kb[1], ka[0], ka[1]
        self.tables[ka], self.tables[kb] = b, a
        if drop_source:
            del self.tables[ka]

    def drop(self, name: TableName, default_schema: str, if_exists: bool) -> bool:
        """Drop a table; raises ``CrateError`` 4041 when unknown unless ``if_exists``."""
        key = self.qualify(name, default_schema)
        if self.tables.pop(key, None) is not None:
            return True
        if if_exists:
            return False
        raise protocol.relation_unknown(".".join(key))
