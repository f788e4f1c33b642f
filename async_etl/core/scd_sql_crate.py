"""CrateDB rendering of an SCD plan: idempotent ``bulk_args`` statements, no transactions.

CrateDB has no transactions and shows writes to non-primary-key filters only after a refresh,
so per chunk the driver: (1) ``REFRESH TABLE``; (2) reads the chunk's current rows with
``current_rows_sql``; (3) extracts the chunk's source rows; (4) computes ``scd.diff``; (5) sends
each ``Bulk`` of ``render(plan)`` in order; (6) ``REFRESH TABLE`` again before checkpointing the
chunk in the PostgreSQL state store.  Every statement addresses one deterministic primary key
(business key + valid_from for type 2): inserts are ``ON CONFLICT DO NOTHING``, expiry and
updates are by exact primary key, never ``WHERE is_current``.  A crash after any prefix is
repaired by re-running the chunk from step (1): the plan converges (see ``scd`` module doc).
A bulk item reporting ``rowcount`` 0 for an insert means "already there", not an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from async_etl.core.chunks import Chunk
from async_etl.core.scd import (
    Action,
    Delete,
    DeleteVersion,
    ExpireVersion,
    InsertVersion,
    ScdPlan,
    UpdateVersion,
    Upsert,
)
from async_etl.core.scd_sql_common import Binder, Sql, bounds_predicate, check_type, quote
from async_etl.core.specs import ScdColumns


def _q(name: str) -> str:
    return quote(name, "crate")


@dataclass(frozen=True, slots=True)
class Bulk:
    """One ``/_sql`` request: ``{"stmt": stmt, "bulk_args": bulk_args}``; ``counts`` labels it."""

    stmt: str
    bulk_args: tuple[tuple[Any, ...], ...]
    counts: str


def target_ddl(table: str, columns: Sequence[tuple[str, str]], cols: ScdColumns) -> str:
    """``CREATE TABLE IF NOT EXISTS`` with the deterministic primary key (CrateDB types)."""
    defs = [f"{_q(n)} {check_type(t)}" for n, t in columns]
    if cols.type == 2:
        defs += [
            f"{_q(cols.valid_from)} TIMESTAMP WITH TIME ZONE",
            f"{_q(cols.valid_to)} TIMESTAMP WITH TIME ZONE",
            f"{_q(cols.is_current)} BOOLEAN",
        ]
    pk = ", ".join(_q(c) for c in cols.pk)
    return f"CREATE TABLE IF NOT EXISTS {_q(table)} ({', '.join(defs)}, PRIMARY KEY ({pk}))"


def refresh_sql(table: str) -> str:
    """Make earlier writes visible to non-primary-key reads."""
    return f"REFRESH TABLE {_q(table)}"


def current_rows_sql(table: str, cols: ScdColumns, key: Sequence[str], chunk: Chunk) -> Sql:
    """The chunk's current target rows (run after ``REFRESH TABLE``); ``?`` binds."""
    b = Binder("crate")
    where = bounds_predicate([_q(c) for c in key], chunk, b, expand=True)
    if cols.type == 2:
        where = f"{_q(cols.is_current)} = true AND {where}"
    columns = ", ".join(_q(c) for c in cols.target)
    return b.sql(f"SELECT {columns} FROM {_q(table)} WHERE {where}")


def drop_table_sql(table: str) -> str:
    """``DROP TABLE IF EXISTS`` (a full refresh's new table, at the start of a new run)."""
    return f"DROP TABLE IF EXISTS {_q(table)}"


def exists_sql(table: str) -> str:
    """A cheap read of ``table``: it exists unless the answer is 4041 / 4045."""
    return f"SELECT count(*) FROM {_q(table)}"


def max_valid_from_sql(table: str, cols: ScdColumns) -> str:
    """The latest version start of a type-2 target (``SELECT max(valid_from)``)."""
    return f"SELECT max({_q(cols.valid_from)}) FROM {_q(table)}"


def history_sql(table: str, cols: ScdColumns) -> str:
    """How many expired versions a type-2 target holds (a full refresh would lose them)."""
    return f"SELECT count(*) FROM {_q(table)} WHERE {_q(cols.is_current)} = false"


def first_column_range_sql(
    table: str, cols: ScdColumns, first: str, chunk: Chunk, bounds: dict[str, Any]
) -> tuple[str, list[Any]]:
    """Current rows whose first key column lies in the chunk's first-column range (``?`` binds).

    For composite keys: the driver filters the rows to the chunk itself afterwards.
    """
    col = quote(first, "crate")
    where = [f"{quote(cols.is_current, 'crate')} = true"] if cols.type == 2 else []
    where.append(f"{col} IS NOT NULL")
    args: list[Any] = []
    if chunk.lower is not None:
        where.append(f"{col} >= ?")
        args.append(bounds["lo0"])
    if chunk.upper is not None:
        where.append(f"{col} <= ?")
        args.append(bounds["hi0"])
    names = ", ".join(quote(c, "crate") for c in cols.target)
    return f"SELECT {names} FROM {quote(table, 'crate')} WHERE {' AND '.join(where)}", args


def _pk_where(cols: ScdColumns) -> str:
    return " AND ".join(f"{_q(c)} = ?" for c in cols.pk)


def _bk_where(cols: ScdColumns) -> str:
    return " AND ".join(f"{_q(c)} = ?" for c in cols.business_key)


def _render_one(table: str, cols: ScdColumns, a: Action) -> tuple[str, tuple[Any, ...], str]:
    t = _q(table)
    if isinstance(a, InsertVersion):
        names = ", ".join(_q(c) for c in cols.target)
        marks = ", ".join("?" for _ in cols.target)
        stmt = f"INSERT INTO {t} ({names}) VALUES ({marks}) ON CONFLICT DO NOTHING"
        return stmt, tuple(a.row[c] for c in cols.target), "inserted"
    if isinstance(a, ExpireVersion):
        stmt = (
            f"UPDATE {t} SET {_q(cols.valid_to)} = ?, {_q(cols.is_current)} = false "
            f"WHERE {_pk_where(cols)}"
        )
        return stmt, (a.at, *a.key, a.valid_from), "expired"
    if isinstance(a, UpdateVersion):
        changed = sorted(a.values)
        sets = ", ".join(f"{_q(c)} = ?" for c in changed)
        stmt = f"UPDATE {t} SET {sets} WHERE {_pk_where(cols)}"
        return stmt, (*(a.values[c] for c in changed), *a.key, a.valid_from), "updated"
    if isinstance(a, DeleteVersion):
        return f"DELETE FROM {t} WHERE {_pk_where(cols)}", (*a.key, a.valid_from), "deleted"
    if isinstance(a, Upsert):
        names = ", ".join(_q(c) for c in cols.data)
        marks = ", ".join("?" for _ in cols.data)
        bk = ", ".join(_q(c) for c in cols.business_key)
        sets = ", ".join(f"{_q(c)} = excluded.{_q(c)}" for c in cols.compared)
        action = f"DO UPDATE SET {sets}" if sets else "DO NOTHING"
        stmt = f"INSERT INTO {t} ({names}) VALUES ({marks}) ON CONFLICT ({bk}) {action}"
        return stmt, tuple(a.row[c] for c in cols.data), "inserted" if a.new else "updated"
    assert isinstance(a, Delete)
    return f"DELETE FROM {t} WHERE {_bk_where(cols)}", a.key, "deleted"


def render(table: str, plan: ScdPlan) -> list[Bulk]:
    """The plan as bulk statements, in plan order (consecutive same statements are batched).

    An upsert batch mixes new and changed rows (``counts`` is then "upserted"); use
    ``plan.counts()`` for exact counters.
    """
    out: list[Bulk] = []
    stmt, counts = "", ""
    rows: list[tuple[Any, ...]] = []
    for action in plan.actions:
        s, args, c = _render_one(table, plan.cols, action)
        if s != stmt and rows:
            out.append(Bulk(stmt, tuple(rows), counts))
            rows = []
        if s == stmt and c != counts:
            counts = "upserted"
        elif s != stmt:
            counts = c
        stmt = s
        rows.append(args)
    if rows:
        out.append(Bulk(stmt, tuple(rows), counts))
    return out
