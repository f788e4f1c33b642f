"""The SQL text both PostgreSQL sinks run: the ledger, the next free id, the landed check, count.

Pure strings, no driver: ``PostgresSink`` (asyncpg) and ``BlockingPostgresSink`` (psycopg 3
with a ``RawCursor``) both use PostgreSQL's native ``$n`` placeholders, so they execute the very
same statements and share one definition of the exactly-once ledger.

The ledger holds one row per delivered batch, keyed by ``(tbl, start_id)``, written in the
same transaction as the batch's COPY.  A retry whose first attempt may have committed asks
``landed`` first; a new run starts after ``max(start_id + rows)`` of the table's ledger rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from async_etl.core.schema import Schema

LEDGER = "async_etl_bench_ledger"

BENCH_DDL_LOCK = 0x6A57_0E74
"""The transaction-scoped advisory lock key taken while a bench's table is created (arbitrary,
constant; beside ``jobs.state.STATE_DDL_LOCK`` and ``jobs.pg_checkpoint.LEDGER_DDL_LOCK``)."""

VOID_ROWS = -1
"""The ``rows`` of a void ledger row: a writer's batch found not landed, fenced out for good."""


def split_table(table: str) -> tuple[str | None, str]:
    """``schema.name`` -> (schema, name); ``name`` -> (None, name)."""
    schema, _, name = table.rpartition(".")
    return (schema or None), name


@dataclass(frozen=True, slots=True)
class PgStatements:
    """Every statement a PostgreSQL sink runs for ``table`` (``$1``-style parameters)."""

    table: str
    schema_name: str | None
    name: str

    @classmethod
    def for_table(cls, table: str) -> PgStatements:
        """The statements for ``table`` (``name`` or ``schema.name``)."""
        schema_name, name = split_table(table)
        return cls(table=table, schema_name=schema_name, name=name)

    @property
    def quoted(self) -> str:
        """The quoted, possibly schema-qualified target table."""
        if self.schema_name:
            return f'"{self.schema_name}"."{self.name}"'
        return f'"{self.name}"'

    @property
    def ledger(self) -> str:
        """The ledger table, in the target's schema."""
        return f'"{self.schema_name}".{LEDGER}' if self.schema_name else LEDGER

    @property
    def create_schema(self) -> str | None:
        """``CREATE SCHEMA IF NOT EXISTS`` for a schema-qualified table, else None."""
        return f'CREATE SCHEMA IF NOT EXISTS "{self.schema_name}"' if self.schema_name else None

    def create_tables(self, schema: Schema, *, unlogged: bool) -> str:
        """Create what a bench sink needs if missing: schema, table with its index, ledger.

        One ``DO`` block, so one transaction: a table is never left without its index (a
        session cut between the two), and it is made only when missing, so an existing table
        is left as it is (README: Record schema).  A transaction-scoped advisory lock
        (``BENCH_DDL_LOCK``) comes first: benches starting on a new table (or a new database)
        take turns, and the later ones find everything made instead of colliding on the
        catalog.  Raises ``ConfigError`` when the table's name is not a valid ``[schema.]name``.
        """
        made = f"{self.create_schema}; " if self.create_schema else ""
        return (
            f"DO $$BEGIN PERFORM pg_advisory_xact_lock({BENCH_DDL_LOCK}); {made}"
            f"IF to_regclass('{self.quoted}') IS NULL THEN "
            f"{schema.pg_create_table(self.table, unlogged=unlogged)}; "
            f"{schema.pg_create_index(self.table)}; END IF; {self.create_ledger}; END$$"
        )

    @property
    def columns(self) -> str:
        """The table's columns ($1 = ``quoted``): name, type, NOT NULL, filled without a value."""
        return (
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
            "a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '' "
            "FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 "
            "AND NOT a.attisdropped ORDER BY a.attnum"
        )

    @property
    def create_ledger(self) -> str:
        """Create the ledger if missing."""
        return (
            f"CREATE TABLE IF NOT EXISTS {self.ledger} (tbl text NOT NULL, "
            "start_id bigint NOT NULL, rows int NOT NULL, PRIMARY KEY (tbl, start_id))"
        )

    @property
    def next_from_ledger(self) -> str:
        """The first id after every ledgered batch of the table ($1 = table); NULL if none."""
        return f"SELECT max(start_id + rows) FROM {self.ledger} WHERE tbl = $1"

    @property
    def next_from_table(self) -> str:
        """The first id after the table's highest id (when it has no ledger rows)."""
        return f"SELECT coalesce(max(id), 0) + 1 FROM {self.quoted}"

    def copy(self, columns: tuple[str, ...]) -> str:
        """``COPY ... FROM STDIN`` in binary format for ``columns``."""
        cols = ", ".join(f'"{c}"' for c in columns)
        return f"COPY {self.quoted} ({cols}) FROM STDIN (FORMAT binary)"

    @property
    def record(self) -> str:
        """Ledger one batch ($1 = table, $2 = start id, $3 = rows)."""
        return f"INSERT INTO {self.ledger} (tbl, start_id, rows) VALUES ($1, $2, $3)"

    def record_literal(self, key: str, start: int, rows: int) -> str:
        """``record`` with its values written as literals, for a simple query (no parameters).

        ``key`` as an ``E''`` string with its quotes and backslashes doubled, ``start`` and
        ``rows`` as integers.  The writer sends it and its COPY as one simple query (one round
        trip, one implicit transaction: ``drivers.postgres_copy``).
        """
        literal = "E'" + key.replace("\\", "\\\\").replace("'", "''") + "'"
        return (
            f"INSERT INTO {self.ledger} (tbl, start_id, rows) "
            f"VALUES ({literal}, {int(start)}, {int(rows)})"
        )

    @property
    def claim(self) -> str:
        """Ledger a batch unless present ($1..$3 as ``record``); returns 1 when it was absent.

        Waits for a transaction still writing the same key, so it tells whether a batch whose
        connection was cut mid-commit landed; committed with ``VOID_ROWS``, it also keeps a
        cut-off batch the server has not run yet from landing after it.
        """
        return (
            f"INSERT INTO {self.ledger} (tbl, start_id, rows) VALUES ($1, $2, $3) "
            "ON CONFLICT DO NOTHING RETURNING 1"
        )

    @property
    def landed(self) -> str:
        """1 when the batch starting at $2 of table $1 is ledgered (it committed)."""
        return f"SELECT 1 FROM {self.ledger} WHERE tbl = $1 AND start_id = $2"

    @property
    def ledgered_rows(self) -> str:
        """The rows ledgered for the batch starting at $2 of table $1 (NULL when none)."""
        return f"SELECT rows FROM {self.ledger} WHERE tbl = $1 AND start_id = $2"

    @property
    def count(self) -> str:
        """Rows of the target with ids in [$1, $2)."""
        return f"SELECT count(*) FROM {self.quoted} WHERE id >= $1 AND id < $2"
