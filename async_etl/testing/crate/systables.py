"""Virtual system tables of the stand-in: ``sys.nodes``, ``sys.cluster``, ``information_schema``.

Each is materialised on demand as a ``Relation`` (column names, types, rows) from the catalog,
so the ordinary ``SELECT`` machinery filters, orders and projects them.  The columns are the
ones clients actually ask for (cr8 reads ``min(version['number'])`` from ``sys.nodes`` and
``column_name, data_type, character_maximum_length`` from ``information_schema.columns``;
a writer reads a table's primary key from ``information_schema.key_column_usage``).
``show_create`` answers ``SHOW CREATE TABLE`` from the same catalog.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from async_etl.testing.crate import protocol
from async_etl.testing.crate.coltypes import INTEGER, TEXT, ColumnType
from async_etl.testing.crate.store import Catalog, Table

_OBJECT = ColumnType("object")
_BOOLEAN = ColumnType("boolean")


@dataclass(frozen=True, slots=True)
class Relation:
    """Something ``SELECT`` can read: column names, their types and rows in column order."""

    columns: tuple[str, ...]
    types: tuple[ColumnType, ...]
    rows: list[list[Any]]


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """Identity the system tables report."""

    version: str
    node_name: str
    cluster_name: str
    url: str


def _nodes(catalog: Catalog, node: NodeInfo) -> Relation:
    version = {
        "number": node.version,
        "build_hash": "0" * 40,
        "build_snapshot": False,
        "minimum_index_compatibility_version": "4.0.0",
        "minimum_wire_compatibility_version": "5.0.0",
    }
    return Relation(
        ("id", "name", "hostname", "rest_url", "version"),
        (TEXT, TEXT, TEXT, TEXT, _OBJECT),
        [["standin-node-1", node.node_name, "localhost", node.url, version]],
    )


def _cluster(catalog: Catalog, node: NodeInfo) -> Relation:
    return Relation(
        ("id", "name", "master_node", "settings"),
        (TEXT, TEXT, TEXT, _OBJECT),
        [["standin-cluster", node.cluster_name, "standin-node-1", {}]],
    )


def _column_rows(table: Table) -> list[list[Any]]:
    rows: list[list[Any]] = []
    pk = set(table.pk_names)

    def add(name: str, col_type: ColumnType, nullable: bool, default: Any) -> None:
        position = len(rows) + 1
        rows.append(
            [
                table.schema,
                table.name,
                "crate",
                name,
                position,
                col_type.data_type,
                "NEVER",
                nullable,
                col_type.length,
                None if default is None else str(default),
            ]
        )
        for sub, sub_type in col_type.fields:
            add(f"{name}['{sub}']", sub_type, True, None)

    for col in table.columns:
        add(col.name, col.type, not (col.not_null or col.name in pk), col.default)
    return rows


def _columns(catalog: Catalog, node: NodeInfo) -> Relation:
    rows = [row for t in catalog.tables.values() for row in _column_rows(t)]
    names = (
        "table_schema",
        "table_name",
        "table_catalog",
        "column_name",
        "ordinal_position",
        "data_type",
        "is_generated",
        "is_nullable",
        "character_maximum_length",
        "column_default",
    )
    types = (TEXT, TEXT, TEXT, TEXT, INTEGER, TEXT, TEXT, _BOOLEAN, INTEGER, TEXT)
    return Relation(names, types, rows)


def _tables(catalog: Catalog, node: NodeInfo) -> Relation:
    rows = [
        [
            t.schema,
            t.name,
            "crate",
            "BASE TABLE",
            t.shards,
            str(t.settings.get("number_of_replicas", "0-1")),
            t.pk_names[0] if t.pk_names else "_id",
        ]
        for t in catalog.tables.values()
    ]
    names = (
        "table_schema",
        "table_name",
        "table_catalog",
        "table_type",
        "number_of_shards",
        "number_of_replicas",
        "clustered_by",
    )
    return Relation(names, (TEXT, TEXT, TEXT, TEXT, INTEGER, TEXT, TEXT), rows)


def _schemata(catalog: Catalog, node: NodeInfo) -> Relation:
    names = {"doc", "sys", "information_schema", "pg_catalog", "blob"}
    names.update(schema for schema, _ in catalog.tables)
    return Relation(("schema_name",), (TEXT,), [[n] for n in sorted(names)])


def _key_columns(catalog: Catalog, node: NodeInfo) -> Relation:
    rows = [
        [t.schema, t.name, "crate", f"{t.name}_pk", name, position]
        for t in catalog.tables.values()
        for position, name in enumerate(t.pk_names, start=1)
    ]
    names = (
        "table_schema",
        "table_name",
        "table_catalog",
        "constraint_name",
        "column_name",
        "ordinal_position",
    )
    return Relation(names, (TEXT, TEXT, TEXT, TEXT, TEXT, INTEGER), rows)


_BUILDERS: dict[tuple[str, str], Callable[[Catalog, NodeInfo], Relation]] = {
    ("sys", "nodes"): _nodes,
    ("sys", "cluster"): _cluster,
    ("information_schema", "columns"): _columns,
    ("information_schema", "tables"): _tables,
    ("information_schema", "schemata"): _schemata,
    ("information_schema", "key_column_usage"): _key_columns,
}


def system_relation(schema: str, name: str, catalog: Catalog, node: NodeInfo) -> Relation | None:
    """The virtual table ``schema.name``; None when it is not a system table.

    Raises ``CrateError`` 4041 for an unknown table in a system schema.
    """
    builder = _BUILDERS.get((schema, name))
    if builder is not None:
        return builder(catalog, node)
    if schema in ("sys", "information_schema", "pg_catalog"):
        raise protocol.relation_unknown(f"{schema}.{name}")
    return None


def table_relation(table: Table, rows: list[list[Any]]) -> Relation:
    """A user table's rows viewed as a ``Relation``."""
    return Relation(
        tuple(c.name for c in table.columns), tuple(c.type for c in table.columns), rows
    )


def show_create(table: Table) -> str:
    """A user table's ``CREATE TABLE`` statement, as ``SHOW CREATE TABLE`` gives it.

    Its columns as declared, one a line (``"tags" ARRAY(VARCHAR(3))``), the primary key and the
    shards; CrateDB's own answer also lists every table setting (``WITH (...)``), left out here.
    """
    lines = [
        f'   "{c.name}" {c.type.ddl}' + (" NOT NULL" if c.not_null else "") for c in table.columns
    ]
    if table.pk_names:
        lines.append("   PRIMARY KEY (" + ", ".join(f'"{k}"' for k in table.pk_names) + ")")
    body = ",\n".join(lines)
    return (
        f'CREATE TABLE IF NOT EXISTS "{table.schema}"."{table.name}" (\n{body}\n)\n'
        f"CLUSTERED INTO {table.shards} SHARDS"
    )
