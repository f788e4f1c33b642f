"""Every SQL statement the project sends to CrateDB, for every option combination.

Built from the same pure generators the sinks, the writer and the job driver call (no server):
bench DDL, inserts and their idempotent re-send form, refresh / max(id) / count; the writer's
DDL, column and key reads; the SCD driver's DDL, added columns, reads, bulk inserts, upserts,
expiries, updates, deletes and the latest-version read.  Used by the grammar test
(``cratedb-sqlparse``) and the stand-in's parser test.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson

from async_etl.core import drift
from async_etl.core import scd_sql_crate as crate
from async_etl.core.chunks import Chunk
from async_etl.core.crate_endpoint import CrateTable
from async_etl.core.crate_protocol import idempotent_body
from async_etl.core.modes import crate_swap_sql
from async_etl.core.scd import (
    Delete,
    DeleteVersion,
    ExpireVersion,
    InsertVersion,
    ScdPlan,
    UpdateVersion,
    Upsert,
)
from async_etl.core.scd_sql_common import chunk_values
from async_etl.core.schema import COLUMN_TYPES, Schema, column, default_schema
from async_etl.core.specs import ScdSpec
from async_etl.core.writer_sql import CRATE_COLUMNS, CRATE_PRIMARY_KEY, crate_insert, create_table
from async_etl.jobs.coltypes import crate_type

TABLES = ("t", "doc.t", "select", "s.order")
"""Plain, schema-qualified, and reserved words (quoted by every generator)."""

PG_TYPES = (
    "bigint", "integer", "smallint", "text", "character varying(20)", "character(3)", "boolean",
    "double precision", "real", "numeric(12,2)", "timestamp with time zone",
    "timestamp without time zone", "date", "uuid", "json", "jsonb", "xml", "point", "bigint[]",
    "text[]", "timestamp with time zone[]", "interval", "bytea",
)  # fmt: skip
"""Source column types a job maps to CrateDB types (unknown ones become TEXT)."""

_GEN = {"bigint": "sequence", "int": "int", "double": "uniform", "text": "name",
        "bool": "bool", "timestamptz": "timestamp", "uuid": "uuid", "json": "json",
        "char": "constant"}  # fmt: skip
_PARAMS: dict[str, dict[str, object]] = {"char": {"value": "", "width": 84}}
"""Parameters a type's generator needs (``char`` is filled by ``constant``)."""


def bench_statements() -> Iterator[str]:
    """The bench sinks' statements: DDL, inserts (first and re-sent), refresh, max, count."""
    every_type = Schema(
        tuple(
            column(
                "id" if i == 0 else f"c_{t}",
                t,
                "sequence" if i == 0 else _GEN.get(t, "name"),
                **({} if i == 0 else _PARAMS.get(t, {})),
            )
            for i, t in enumerate(["bigint", *sorted(COLUMN_TYPES - {"bigint"})])
        )
    )
    for schema, table in itertools.product((default_schema(), every_type, default_schema(64)),
                                           TABLES):  # fmt: skip
        insert = schema.crate_insert(table)
        yield schema.crate_create_table(table)
        yield insert
        body = idempotent_body(orjson.dumps({"stmt": insert, "bulk_args": []}), insert, ["id"])
        yield str(orjson.loads(body)["stmt"])
        ct = CrateTable(table, schema.names[0])
        yield from (ct.refresh, ct.max_id, ct.count_range)


def writer_statements() -> Iterator[str]:
    """The embedding writer's statements on a CrateDB table."""
    columns = {"id": "BIGINT", "name": "TEXT", "at": "TIMESTAMP WITH TIME ZONE", "tags": "TEXT"}
    for table, pk in itertools.product(TABLES, ((), ("id",), ("id", "name"))):
        yield create_table(table, columns, pk)
        insert = crate_insert(table, list(columns))
        yield insert
        body = idempotent_body(orjson.dumps({"stmt": insert, "bulk_args": []}), insert, ["id"])
        yield str(orjson.loads(body)["stmt"])
    yield from (CRATE_COLUMNS, CRATE_PRIMARY_KEY)


def _chunks(width: int) -> Iterator[Chunk]:
    lo, hi = tuple(range(1, width + 1)), tuple(range(5, width + 5))
    for lower, upper in itertools.product((None, lo), (None, hi)):
        yield Chunk(0, lower, upper)
        yield Chunk(0, lower, upper, collate=("C",) * width)


def scd_statements() -> Iterator[str]:
    """The SCD job driver's statements for type 1 and 2, simple and composite keys."""
    names = [f"c{i}" for i in range(len(PG_TYPES))]
    now = datetime(2026, 1, 1, tzinfo=UTC)
    for kind, key, table in itertools.product((1, 2), (("c0",), ("c0", "c3")), TABLES):
        spec = ScdSpec(type=kind, business_key=key, overwrite=("c5",),
                       deletes="expire" if kind == 2 else "delete")  # fmt: skip
        cols = spec.resolve(names, PG_TYPES)
        mapped = [(n, crate_type(t)) for n, t in zip(names, PG_TYPES, strict=True)]
        yield crate.target_ddl(table, mapped, cols)
        yield crate.refresh_sql(table)
        yield crate.max_valid_from_sql(table, cols)
        yield from (crate.drop_table_sql(table), crate.exists_sql(table), crate_swap_sql(table))
        for _, t in mapped:
            yield drift.add_column_sql("cratedb", table, "added", t).text
        for chunk in _chunks(len(key)):  # as the driver reads: by key, or by its first column
            if len(key) == 1:
                yield crate.current_rows_sql(table, cols, key, chunk).text
            else:
                bounds = dict(chunk_values(chunk))
                yield crate.first_column_range_sql(table, cols, key[0], chunk, bounds)[0]
        row: dict[str, Any] = dict.fromkeys(cols.target, 1)
        k = tuple(1 for _ in key)
        actions = (
            InsertVersion(row), ExpireVersion(k, now, now), UpdateVersion(k, now, {"c5": 2}),
            UpdateVersion(k, now, {"c5": 2, "c6": 3}), DeleteVersion(k, now),
            Upsert(k, row, True), Delete(k),
        )  # fmt: skip
        for action in actions:
            for bulk in crate.render(table, ScdPlan(cols, now, (action,))):
                yield bulk.stmt
        no_compared = ScdSpec(type=1, business_key=key, tracked=(), deletes="delete")
        plain = no_compared.resolve(names, PG_TYPES)
        for bulk in crate.render(table, ScdPlan(plain, now, (Upsert(k, row, True),))):
            yield bulk.stmt  # ON CONFLICT ... DO NOTHING
    yield drift.target_columns_sql("cratedb").text


def all_statements() -> list[str]:
    """Every distinct statement, in a stable order."""
    return list(dict.fromkeys([*bench_statements(), *writer_statements(), *scd_statements()]))
