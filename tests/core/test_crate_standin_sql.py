"""The stand-in's pure parts: SQL parser, column casts and the refresh-aware store."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from async_etl.testing.crate.coltypes import CastError, ColumnType, parse_timestamp
from async_etl.testing.crate.sql import SQLParseError, parse
from async_etl.testing.crate.sqlast import CreateTable, Insert, Literal, Param, Select
from async_etl.testing.crate.store import Catalog

names = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True).filter(
    lambda n: n not in {"excluded", "true", "false", "null"}
)


def test_create_table_full_form() -> None:
    """CREATE TABLE parses types, inline and table PKs, shards and WITH settings."""
    stmt = parse(
        "CREATE TABLE IF NOT EXISTS s.t (id BIGINT, k TEXT NOT NULL, d DOUBLE PRECISION, "
        "ts TIMESTAMP WITH TIME ZONE, o OBJECT(IGNORED) AS (x INT), a ARRAY(LONG), "
        "n NUMERIC(10, 2), PRIMARY KEY (id, k)) CLUSTERED INTO 6 SHARDS "
        "WITH (number_of_replicas = 0, refresh_interval = 1000)"
    )
    assert isinstance(stmt, CreateTable) and stmt.if_not_exists
    assert stmt.primary_key == ("id", "k") and stmt.shards == 6
    kinds = [c.type.sql_name for c in stmt.columns]
    assert kinds[2:] == [
        "double precision",
        "timestamp with time zone",
        "object",
        "bigint_array",
        "numeric",
    ]
    assert dict(stmt.settings) == {"number_of_replicas": 0, "refresh_interval": 1000}


def test_dollar_placeholders_and_upsert() -> None:
    """$n placeholders count by their highest index; ON CONFLICT DO UPDATE keeps excluded refs."""
    stmt = parse(
        "INSERT INTO t (a, b) VALUES ($2, $1) ON CONFLICT (a) DO UPDATE SET b = excluded.b"
    )
    assert isinstance(stmt, Insert) and stmt.param_count == 2
    assert stmt.rows == ((Param(1), Param(0)),) and stmt.on_conflict is not None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "SELECT 1; SELECT 2",
        "SELEKT 1",
        "INSERT INTO t VALUES (?, $1)",
        "SELECT a FROM t WHERE a = 1 OR b = 2",
        "CREATE TABLE t (a WIBBLE)",
    ],
)
def test_invalid_statements(text: str) -> None:
    """Empty, multiple, unknown, mixed-placeholder, OR and unknown-type statements are refused."""
    with pytest.raises(SQLParseError):
        parse(text)


@given(st.lists(names, min_size=1, max_size=8, unique=True), st.integers(1, 4))
def test_insert_arity_roundtrip(cols: list[str], rows: int) -> None:
    """An INSERT with n columns and r VALUES rows has r rows of n placeholders, n*r params."""
    values = ", ".join("(" + ", ".join("?" for _ in cols) + ")" for _ in range(rows))
    quoted = ", ".join(f'"{c}"' for c in cols)  # some names are reserved words (e.g. "if")
    stmt = parse(f'INSERT INTO "doc"."t" ({quoted}) VALUES {values}')
    assert isinstance(stmt, Insert) and stmt.columns == tuple(cols)
    assert len(stmt.rows) == rows and stmt.param_count == len(cols) * rows


@given(st.text(max_size=40))
def test_string_literal_roundtrip(text: str) -> None:
    """Any string, quoted with doubled single quotes, parses back to itself."""
    quoted = "'" + text.replace("'", "''") + "'"
    stmt = parse(f"SELECT a FROM t WHERE a = {quoted}")
    assert isinstance(stmt, Select) and stmt.where[0].right == (Literal(text),)


@given(st.text(max_size=60))
def test_parser_fails_only_with_parse_error(text: str) -> None:
    """Arbitrary input either parses or raises SQLParseError, never anything else."""
    with contextlib.suppress(SQLParseError):
        parse(text)


@given(st.integers(-(2**63), 2**63 - 1))
def test_bigint_cast_accepts_its_range(value: int) -> None:
    """Every 64-bit integer, as int or string, casts to itself as BIGINT."""
    cast = ColumnType("bigint").caster()
    assert cast(value) == value and cast(str(value)) == value


def test_casts_refuse_bad_values() -> None:
    """Text into BIGINT, out-of-range INTEGER and lists into TEXT are cast errors."""
    for kind, value in (("bigint", "abc"), ("integer", 2**40), ("text", [1]), ("boolean", "maybe")):
        with pytest.raises(CastError):
            ColumnType(kind).caster()(value)


def test_timestamps_become_epoch_ms() -> None:
    """ISO strings (naive = UTC) and epoch-ms numbers become epoch milliseconds."""
    assert parse_timestamp("1970-01-01T00:00:01Z") == 1000
    assert parse_timestamp("1970-01-01T00:00:02") == 2000
    assert parse_timestamp(1234) == 1234 and parse_timestamp(None) is None


def test_store_refresh_and_counting() -> None:
    """PK reads see writes at once; counts see them after refresh or the interval elapses."""
    now = [0.0]
    catalog = Catalog(clock=lambda: now[0])
    ddl = parse("CREATE TABLE t (id INT PRIMARY KEY) WITH (refresh_interval = 100)")
    assert isinstance(ddl, CreateTable)
    catalog.create(ddl, "doc")
    table = catalog.get(ddl.table, "doc")
    table.put((1,), [1])
    table.count_rows(5)
    assert table.get((1,)) == [1] and table.visible_count() == 0
    now[0] = 0.2
    assert table.visible_count() == 6
    table.delete((1,))
    assert table.visible_count() == 6
    table.refresh()
    assert table.visible_count() == 5


def test_alter_table_add_column_extends_every_row() -> None:
    """``ADD COLUMN``: a new nullable column, NULL in existing rows; a second add is 4091."""
    from async_etl.testing.crate.protocol import CrateError
    from async_etl.testing.crate.sqlast import AlterTable

    catalog = Catalog(clock=lambda: 0.0)
    ddl = parse("CREATE TABLE t (id INT PRIMARY KEY)")
    assert isinstance(ddl, CreateTable)
    catalog.create(ddl, "doc")
    table = catalog.get(ddl.table, "doc")
    table.put((1,), [1])
    table.refresh()
    alter = parse('ALTER TABLE t ADD COLUMN "email" TEXT')
    assert isinstance(alter, AlterTable) and alter.add[0].name == "email"
    table.add_column(alter.add[0])
    assert table.get((1,)) == [1, None] and dict(table.visible_rows())[(1,)] == [1, None]
    assert [c.name for c in table.columns] == ["id", "email"]
    with pytest.raises(CrateError) as info:
        table.add_column(alter.add[0])
    assert info.value.code == 4091
