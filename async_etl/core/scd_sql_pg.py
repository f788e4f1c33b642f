"""PostgreSQL SQL for mapper jobs: DDL, estimates, boundary sampling, extraction, the merge.

Per chunk the driver runs, in ONE transaction: ``TRUNCATE`` (unlogged staging only), binary
COPY of the chunk's source rows into the staging table, then every ``merge_statements`` entry
in order, then the checkpoint upsert from ``state_sql``; then COMMIT (a TEMP staging table is
emptied by ``ON COMMIT DELETE ROWS``).  Statements with ``counts == "rows"`` return one row
``(inserted, updated, expired, deleted)`` to add to the run's counters (``fetchrow``); others
return nothing useful (``execute``).  All comparisons are NULL-safe (``IS DISTINCT FROM``), all
anti-joins are ``NOT EXISTS`` on indexed keys.  A column whose type has no usable ``=`` (json,
xml, geometric types, arrays and composites of them: ``core.compare``) is compared by its text
form, under ``SET LOCAL extra_float_digits = 3`` so that floats inside it print exactly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from async_etl.core import incremental as inc
from async_etl.core import scd_sql_common as common
from async_etl.core import state_sql
from async_etl.core.chunks import Chunk
from async_etl.core.collation import collated
from async_etl.core.compare import is_exact, pg_compared
from async_etl.core.incremental import CursorWindow
from async_etl.core.scd_sql_common import (
    SOURCE,
    Binder,
    Sql,
    bounds_predicate,
    check_type,
    embed_source,
    quote,
)
from async_etl.core.scd_sql_common import short_name as _short
from async_etl.core.specs import ScdColumns

STAGING = "_async_etl_stage"
"""The per-connection TEMP table a chunk is staged in."""

OVERRIDE = "OVERRIDING SYSTEM VALUE"
"""Every INSERT of source rows says this: a target whose key is ``GENERATED ALWAYS AS IDENTITY``
takes the source's values (as ``COPY`` does) instead of refusing each row; a no-op elsewhere."""


def _q(name: str) -> str:
    return quote(name, "pg")


def _cols(alias: str, names: Sequence[str]) -> str:
    return ", ".join(f"{alias}.{_q(c)}" for c in names)


def _keys_equal(a: str, b: str, names: Sequence[str]) -> str:
    return " AND ".join(f"{a}.{_q(c)} = {b}.{_q(c)}" for c in names)


def _compared(alias: str, names: Sequence[str], cols: ScdColumns) -> str:
    """Column references as compared (``core.compare.pg_compared``)."""
    return ", ".join(
        pg_compared(f"{alias}.{_q(c)}", cols.type_of(c), cols.target_type_of(c)) for c in names
    )


def _distinct(a: str, b: str, names: Sequence[str], cols: ScdColumns) -> str:
    return f"ROW({_compared(a, names, cols)}) IS DISTINCT FROM ROW({_compared(b, names, cols)})"


def _counted(dml: str, label: str) -> str:
    """Wrap a data-modifying statement so it returns (inserted, updated, expired, deleted)."""
    out = [
        f"count(*) AS {k}" if k == label else f"0::bigint AS {k}"
        for k in ("inserted", "updated", "expired", "deleted")
    ]
    return f"WITH x AS ({dml} RETURNING 1) SELECT {', '.join(out)} FROM x"


def _column(name: str, sql_type: str, collate: Mapping[str, str | None] | None) -> str:
    """``"name" type`` plus ``COLLATE "x"`` when ``collate`` names one for the column."""
    coll = (collate or {}).get(name)
    defined = f"{_q(name)} {check_type(sql_type)}"
    return defined if coll is None or coll == "default" else collated(defined, coll)


def target_ddl(
    table: str,
    columns: Sequence[tuple[str, str]],
    cols: ScdColumns,
    collate: Mapping[str, str | None] | None = None,
    *,
    keyed: bool = True,
    indexes: bool = True,
) -> list[Sql]:
    """Create the target (schema, table, indexes) if missing; ``columns`` = (name, pg type).

    ``keyed=False`` (append mode) creates the table alone: no unique index, no NOT NULL key.
    ``indexes=False`` leaves the unique indexes (``index_ddl``) to be built after the load.

    Type 2 adds the SCD columns.  ``collate`` maps key columns to the collation their chunk
    ranges compare in (``core.collation``), so the key's index serves the merge's range filters.
    """
    key = set(cols.business_key) if keyed else set()
    defs = [f"{_column(n, t, collate)}{' NOT NULL' if n in key else ''}" for n, t in columns]
    if cols.type == 2:
        defs += [
            f"{_q(cols.valid_from)} timestamptz NOT NULL",
            f"{_q(cols.valid_to)} timestamptz",
            f"{_q(cols.is_current)} boolean NOT NULL DEFAULT true",
        ]
    out: list[Sql] = []
    if "." in table:
        out.append(Sql(f"CREATE SCHEMA IF NOT EXISTS {_q(table.rsplit('.', 1)[0])}"))
    out.append(Sql(f"CREATE TABLE IF NOT EXISTS {_q(table)} ({', '.join(defs)})"))
    return out + index_ddl(table, cols) if keyed and indexes else out


def target_ready_sql(
    table: str, cols: ScdColumns, *, indexes: bool = True, beside: Sequence[str] = ()
) -> str:
    """One query, true when ``target_ddl`` (with ``indexes``) would change nothing.

    ``table`` and its indexes (``index_ddl``'s, in the table's schema; ``indexes=False``: none,
    as for an append, or a type-1 target whose own index is the key's arbiter) are looked for,
    and the tables ``beside`` it (quoted; the ledger), by ``state_sql.state_ready_sql``.  A role
    with only DML on an existing target can then load it: ``CREATE SCHEMA / TABLE / INDEX IF
    NOT EXISTS`` check the CREATE privilege (or ownership) before they find what is there.
    """
    schema, dot, _ = table.rpartition(".")
    suffixes = (("version", "current") if cols.type == 2 else ("bk",)) if indexes else ()
    names = [_q(f"{schema}{dot}{_short(table, s)}") for s in suffixes]
    return state_sql.state_ready_sql((_q(table), *beside), indexes=names, columns=())


def index_ddl(table: str, cols: ScdColumns) -> list[Sql]:
    """The target's unique indexes, created if missing (each fails on a key held twice).

    Type 2: a unique index on (business key, valid_from) and a unique partial index on the
    business key WHERE is_current (at most one current row per key); type 1: a unique index on
    the business key (the ``ON CONFLICT`` arbiter).
    """
    bk = ", ".join(_q(c) for c in cols.business_key)
    if cols.type == 2:
        return [
            Sql(
                f"CREATE UNIQUE INDEX IF NOT EXISTS {_q(_short(table, 'version'))} "
                f"ON {_q(table)} ({bk}, {_q(cols.valid_from)})"
            ),
            Sql(
                f"CREATE UNIQUE INDEX IF NOT EXISTS {_q(_short(table, 'current'))} "
                f"ON {_q(table)} ({bk}) WHERE {_q(cols.is_current)}"
            ),
        ]
    name = _q(_short(table, "bk"))
    return [Sql(f"CREATE UNIQUE INDEX IF NOT EXISTS {name} ON {_q(table)} ({bk})")]


def staging_ddl(
    staging: str,
    columns: Sequence[tuple[str, str]],
    *,
    temp: bool = True,
    collate: Mapping[str, str | None] | None = None,
) -> Sql:
    """The staging table: TEMP ... ON COMMIT DELETE ROWS (per connection), or UNLOGGED.

    ``collate``: the key columns' collations, as for ``target_ddl``.
    """
    defs = ", ".join(_column(n, t, collate) for n, t in columns)
    if temp:
        return Sql(f"CREATE TEMP TABLE IF NOT EXISTS {_q(staging)} ({defs}) ON COMMIT DELETE ROWS")
    return Sql(f"CREATE UNLOGGED TABLE IF NOT EXISTS {_q(staging)} ({defs})")


def truncate_staging(staging: str) -> Sql:
    """Empty an UNLOGGED staging table before the COPY (not needed for TEMP ones)."""
    return Sql(f"TRUNCATE {_q(staging)}")


def merge_statements(
    table: str,
    staging: str,
    cols: ScdColumns,
    key: Sequence[str],
    chunk: Chunk,
    *,
    after_all: bool = False,
    partitioned: bool = False,
) -> list[Sql]:
    """The statements that merge the staged chunk into the target, in the order to run them.

    ``key`` is the chunk key (a subset of the business key); bind values come from
    ``chunk_values(chunk, as_of)``.  ``after_all``: no version in the chunk's range starts at
    the as-of (a new run later than every version: ``planning.Decision.latest``).  Type 2 then
    leaves out the two statements that only touch versions starting at the as-of: the
    in-place UPDATE when no ``overwrite`` column exists (it changes only a version of this
    as-of whose tracked columns differ) and the DELETE of such versions of absent keys.
    ``partitioned``: the target is a partitioned table (``pg_class.relkind = 'p'``), which
    has no system column to tell a type-1 upsert's inserts from its updates (``_type1``).
    """
    t, s = _q(table), _q(staging)
    # statistics on the key are what the planner needs to pick index joins: keep ANALYZE cheap
    out = [Sql(f"ANALYZE {s} ({', '.join(_q(c) for c in cols.business_key)})")]
    if not all(is_exact(cols.type_of(c)) for c in cols.compared):
        out.append(Sql("SET LOCAL extra_float_digits = 3"))
    if cols.type == 1:
        return out + _type1(t, s, cols, key, chunk, partitioned)
    bk, cur, vf, vt = cols.business_key, _q(cols.is_current), _q(cols.valid_from), _q(cols.valid_to)
    in_place = not (after_all and set(cols.compared) <= set(cols.tracked))
    if cols.compared and in_place:
        b = Binder("pg")
        guard = ""
        if cols.tracked:
            guard = f"AND NOT (t.{vf} < {b('as_of')} AND {_distinct('t', 's', cols.tracked, cols)})"
        sets = ", ".join(f"{_q(c)} = s.{_q(c)}" for c in cols.compared)
        changed = _distinct("t", "s", cols.compared, cols)
        out.append(
            b.sql(
                _counted(
                    f"UPDATE {t} AS t SET {sets} FROM {s} AS s WHERE t.{cur} AND "
                    f"{_in_chunk('t', key, chunk, b)} AND "
                    f"{_keys_equal('t', 's', bk)} AND {changed} {guard}",
                    "updated",
                ),
                "rows",
            )
        )
    if cols.tracked:
        b = Binder("pg")
        out.append(
            b.sql(
                _counted(
                    f"UPDATE {t} AS t SET {vt} = {b('as_of')}, {cur} = false FROM {s} AS s "
                    f"WHERE t.{cur} AND {_in_chunk('t', key, chunk, b)} AND "
                    f"{_keys_equal('t', 's', bk)} AND t.{vf} < {b('as_of')} "
                    f"AND {_distinct('t', 's', cols.tracked, cols)}",
                    "expired",
                ),
                "rows",
            )
        )
    if cols.deletes == "expire":
        absent = f"NOT EXISTS (SELECT 1 FROM {s} AS s WHERE {_keys_equal('s', 't', bk)})"
        b = Binder("pg")
        where = f"t.{cur} AND t.{vf} < {b('as_of')} AND "
        where += bounds_predicate([f"t.{_q(c)}" for c in key], chunk, b)
        out.append(
            b.sql(
                _counted(
                    f"UPDATE {t} AS t SET {vt} = {b('as_of')}, {cur} = false "
                    f"WHERE {where} AND {absent}",
                    "expired",
                ),
                "rows",
            )
        )
        if not after_all:
            b = Binder("pg")
            where = f"t.{cur} AND t.{vf} = {b('as_of')} AND "
            where += bounds_predicate([f"t.{_q(c)}" for c in key], chunk, b)
            out.append(
                b.sql(
                    _counted(f"DELETE FROM {t} AS t WHERE {where} AND {absent}", "deleted"), "rows"
                )
            )
    b = Binder("pg")
    data = ", ".join(_q(c) for c in cols.data)
    out.append(
        b.sql(
            _counted(
                f"INSERT INTO {t} ({data}, {vf}, {vt}, {cur}) {OVERRIDE} "
                f"SELECT {_cols('s', cols.data)}, {b('as_of')}::timestamptz, NULL, true "
                f"FROM {s} AS s "
                f"WHERE NOT EXISTS (SELECT 1 FROM {t} AS c WHERE c.{cur} AND "
                f"{_in_chunk('c', key, chunk, b)} AND {_keys_equal('c', 's', bk)})",
                "inserted",
            ),
            "rows",
        )
    )
    return out


def duplicate_keys_sql(staging: str, cols: ScdColumns) -> Sql:
    """Business keys staged more than once: rows of (key columns..., count), in key order.

    The count's name cannot clash with a key column's (a key column named ``n``).
    """
    bk = ", ".join(_q(c) for c in cols.business_key)
    return Sql(
        f"SELECT {bk}, count(*) AS _async_etl_rows FROM {_q(staging)} GROUP BY {bk} "
        f"HAVING count(*) > 1 ORDER BY {bk}"
    )


def drop_null_keys_sql(staging: str, cols: ScdColumns) -> Sql:
    """Delete the staged rows with a NULL business-key part, returning their key columns.

    Such a row has no key to merge by (``=`` never matches NULL): merged, it would be inserted
    again by every run.
    """
    bk = cols.business_key
    nulls = " OR ".join(f"{_q(c)} IS NULL" for c in bk)
    return Sql(f"DELETE FROM {_q(staging)} WHERE {nulls} RETURNING {', '.join(_q(c) for c in bk)}")


def hold_duplicates_sql(table: str, staging: str, cols: ScdColumns) -> Sql:
    """Replace every staged row of a duplicated key by the target's current row for it.

    The merge then leaves such a key as it is (``core.duplicates``); a key the target lacks
    is simply no longer staged.
    """
    bk = cols.business_key
    keys = ", ".join(_q(c) for c in bk)
    s, data = _q(staging), ", ".join(_q(c) for c in cols.data)
    current = f"t.{_q(cols.is_current)} AND " if cols.type == 2 else ""
    return Sql(
        f"WITH d AS (DELETE FROM {s} AS s WHERE ({_cols('s', bk)}) IN (SELECT {keys} FROM {s} "
        f"GROUP BY {keys} HAVING count(*) > 1) RETURNING {_cols('s', bk)}) "
        f"INSERT INTO {s} ({data}) SELECT {_cols('t', cols.data)} FROM {_q(table)} AS t "
        f"WHERE {current}({_cols('t', bk)}) IN (SELECT {keys} FROM d)"
    )


def range_is_empty_sql(table: str, key: Sequence[str], chunk: Chunk) -> Sql:
    """Whether the target holds no row, of any version, in the chunk's key range (a bool)."""
    b = Binder("pg")
    where = _in_chunk("t", key, chunk, b)
    return b.sql(f"SELECT NOT EXISTS (SELECT 1 FROM {_q(table)} AS t WHERE {where})")


def initial_insert_statements(table: str, staging: str, cols: ScdColumns) -> list[Sql]:
    """The whole merge of a chunk whose key range is empty in the target (``range_is_empty``).

    Every staged row is then a new key: type 2 inserts it as the current version from the
    as-of time, type 1 inserts it as is; nothing can be updated, expired or deleted.  The
    result equals ``merge_statements`` on such a chunk, without its statistics, no-op
    updates and anti-join.
    """
    data = ", ".join(_q(c) for c in cols.data)
    if cols.type == 1:
        return [Sql(_counted(f"INSERT INTO {_q(table)} ({data}) {OVERRIDE} "
                             f"SELECT {_cols('s', cols.data)} FROM {_q(staging)} AS s",
                             "inserted"), (), "rows")]  # fmt: skip
    b = Binder("pg")
    vf, vt, cur = _q(cols.valid_from), _q(cols.valid_to), _q(cols.is_current)
    dml = (
        f"INSERT INTO {_q(table)} ({data}, {vf}, {vt}, {cur}) {OVERRIDE} "
        f"SELECT {_cols('s', cols.data)}, {b('as_of')}::timestamptz, NULL, true "
        f"FROM {_q(staging)} AS s"
    )
    return [b.sql(_counted(dml, "inserted"), "rows")]


def _in_chunk(alias: str, key: Sequence[str], chunk: Chunk, b: Binder) -> str:
    """The chunk's bounds on the target side of a join with staging.

    Staging holds only keys inside the chunk, so this changes no result; it lets PostgreSQL
    read the chunk's key range through the index instead of scanning the whole target for
    every chunk (which made a run's cost grow with chunks x table size).
    """
    return bounds_predicate([f"{alias}.{_q(c)}" for c in key], chunk, b)


def _type1(
    t: str, s: str, cols: ScdColumns, key: Sequence[str], chunk: Chunk, partitioned: bool
) -> list[Sql]:
    bk = cols.business_key
    out: list[Sql] = []
    if cols.deletes == "delete":
        b = Binder("pg")
        where = bounds_predicate([f"t.{_q(c)}" for c in key], chunk, b)
        out.append(
            b.sql(
                _counted(
                    f"DELETE FROM {t} AS t WHERE {where} AND NOT EXISTS "
                    f"(SELECT 1 FROM {s} AS s WHERE {_keys_equal('s', 't', bk)})",
                    "deleted",
                ),
                "rows",
            )
        )
    if cols.compared:
        sets = ", ".join(f"{_q(c)} = EXCLUDED.{_q(c)}" for c in cols.compared)
        action = f"UPDATE SET {sets} WHERE {_distinct('t', 'EXCLUDED', cols.compared, cols)}"
    else:
        action = "NOTHING"
    data = ", ".join(_q(c) for c in cols.data)
    upsert = (
        f"WITH x AS (INSERT INTO {t} AS t ({data}) {OVERRIDE} "
        f"SELECT {_cols('s', cols.data)} FROM {s} AS s "
        f"ON CONFLICT ({', '.join(_q(c) for c in bk)}) DO {action} RETURNING "
    )
    if partitioned:
        # A partitioned table has no system columns in RETURNING ('cannot retrieve a system
        # column in this context'): a returned row is an update when its key was in the target
        # before the statement (the outer SELECT reads the snapshot the INSERT started from,
        # one for all of a WITH statement's parts). The join reads the whole target: 0.5 s a
        # second run of a 1M-row merge, so plain tables keep xmax (benchmarks/RESULTS.md).
        found = f"o.{_q(bk[0])}"
        counted = (
            f"{_cols('t', bk)}) SELECT count(*) - count({found}) AS inserted, "
            f"count({found}) AS updated, 0::bigint AS expired, 0::bigint AS deleted "
            f"FROM x LEFT JOIN {t} AS o ON {_keys_equal('o', 'x', bk)}"
        )
    else:  # xmax is 0 on a row version the upsert inserted, the updater's xid on an update
        counted = (
            "(t.xmax = 0) AS ins) SELECT count(*) FILTER (WHERE ins) AS inserted, "
            "count(*) FILTER (WHERE NOT ins) AS updated, 0::bigint AS expired, "
            "0::bigint AS deleted FROM x"
        )
    out.append(Sql(" ".join((upsert + counted).split()), (), "rows"))
    return out


def source_relation(query: str | None, table: str | None) -> str:
    """The query or quoted table ``AS q`` (``scd_sql_common.source_relation``)."""
    return common.source_relation(query, table, "pg")


def extract_sql(
    query: str | None,
    table: str | None,
    key: Sequence[str],
    chunk: Chunk,
    window: CursorWindow | None = None,
    tail: Sequence[str] = (),
    select: str = "*",
) -> Sql:
    """Read one chunk of the source in key order (rows with a NULL key are never read).

    With a cursor ``window`` only its rows are read (binds from ``window.values()`` too).
    ``tail``: constant SQL expressions appended to every row (``initial_version_tail``).
    ``select``: the source's columns (of alias ``q``) as read, ``core.pg_casts.cast_select``'s.
    """
    b = Binder("pg")
    where = bounds_predicate([f"q.{_q(c)}" for c in key], chunk, b)
    where += inc.window_clause(window, b)
    order = _order_by([f"q.{_q(c)}" for c in key], chunk.collate)
    extra = "".join(f", {t}" for t in tail)
    st = b.sql(f"SELECT {select}{extra} FROM {SOURCE} WHERE {where} ORDER BY {order}")
    return embed_source(st, source_relation(query, table))


def initial_version_tail(cols: ScdColumns, as_of: datetime) -> tuple[str, ...]:
    """What a row read straight into an empty type-2 target range ends with.

    ``valid_from`` = the as-of time, ``valid_to`` NULL, ``is_current`` true, as SQL literals
    (type 1: nothing).  ``as_of`` must be timezone-aware.
    """
    if cols.type == 1:
        return ()
    return (f"'{as_of.isoformat()}'::timestamptz", "NULL::timestamptz", "true")


def initial_defaults_sql(table: str, cols: ScdColumns, as_of: datetime) -> Sql:
    """Make the initial version's values ``table``'s column defaults (type 2 only).

    ``valid_from`` defaults to the as-of time, ``valid_to`` to NULL and ``is_current`` to
    true, so a chunk COPYed into a new table names only the source's columns: the three
    bookkeeping values are neither computed by the source, sent, nor parsed per row (1M
    rows: COPY out 0.32 -> 0.25 s, COPY in 0.58 -> 0.49 s, ``benchmarks/RESULTS.md``).
    ``as_of`` must be timezone-aware.  ``drop_initial_default_sql`` undoes the first.
    """
    t, vf = _q(table), _q(cols.valid_from)
    return Sql(f"ALTER TABLE {t} ALTER COLUMN {vf} SET DEFAULT '{as_of.isoformat()}'::timestamptz, "
               f"ALTER COLUMN {_q(cols.valid_to)} DROP DEFAULT, "
               f"ALTER COLUMN {_q(cols.is_current)} SET DEFAULT true")  # fmt: skip


def holds_initial_default_sql(cols: ScdColumns) -> Sql:
    """Whether a table's ``valid_from`` default is the as-of one ``initial_defaults_sql`` sets.

    One row, one boolean.  Binds ``relation`` (the quoted table name) and ``as_of``
    (timezone-aware).  The default is compared as the server deparses it, with the as-of
    written by the same session's output function, so ``DateStyle`` and ``TimeZone`` cannot
    tell the two apart.  A resumed full refresh asks it of its new table: that default is
    the run's own, to be taken off again by the swap.
    """
    return Sql(
        "SELECT EXISTS (SELECT FROM pg_attribute a JOIN pg_attrdef d "
        "ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
        "WHERE a.attrelid = to_regclass($1) AND a.attname = $2 "
        "AND pg_get_expr(d.adbin, d.adrelid) "
        "= quote_literal($3::timestamptz::text) || '::timestamp with time zone')",
        params=("relation", "column", "as_of"),
    )


def drop_initial_default_sql(table: str, cols: ScdColumns) -> Sql:
    """Take the as-of default off ``valid_from`` again (the target DDL has none; repeatable)."""
    return Sql(f"ALTER TABLE {_q(table)} ALTER COLUMN {_q(cols.valid_from)} DROP DEFAULT")


def null_keys_sql(
    query: str | None, table: str | None, key: Sequence[str], window: CursorWindow | None = None
) -> Sql:
    """Count source rows (of the cursor ``window``) with a NULL key part (reject or fail)."""
    return inc.null_keys_sql("pg", source_relation(query, table), key, window)


def _order_by(refs: Sequence[str], collate: Sequence[str | None]) -> str:
    """``ORDER BY`` terms of key column references, each in its chunk collation."""
    names = collate or [None] * len(refs)
    return ", ".join(collated(r, n) for r, n in zip(refs, names, strict=True))


def boundaries_sql(
    query: str | None,
    table: str | None,
    key: Sequence[str],
    collate: Sequence[str | None] = (),
    window: CursorWindow | None = None,
    sample: float | None = None,
) -> Sql:
    """First key of each of ``n`` equal buckets but the first (bind ``n``): the chunk cuts.

    Rows are ordered in ``collate`` (one collation per key column, see ``core.collation``);
    the cuts come back in that order, which ``plan_chunks`` keeps.  With a cursor ``window``
    the buckets split the window's rows only.  ``sample``: the percent of a ``table``'s pages
    read (``TABLESAMPLE SYSTEM``, ``chunks.sample_percent``); ignored for a query.
    """
    keys = ", ".join(f"q.{_q(c)}" for c in key)
    bare = ", ".join(_q(c) for c in key)
    notnull = " AND ".join(f"q.{_q(c)} IS NOT NULL" for c in key)
    b = Binder("pg")
    n = b("n")
    notnull += inc.window_clause(window, b)
    st = b.sql(
        f"SELECT {bare} FROM (SELECT {bare}, bucket, row_number() OVER (PARTITION BY bucket "
        f"ORDER BY {_order_by([_q(c) for c in key], collate)}) AS rn FROM (SELECT {keys}, "
        f"ntile({n}::int) OVER (ORDER BY {_order_by([f'q.{_q(c)}' for c in key], collate)}) "
        f"AS bucket FROM {SOURCE} WHERE {notnull}) AS x) AS y "
        f"WHERE rn = 1 AND bucket > 1 ORDER BY bucket"
    )
    relation = source_relation(query, table)
    if sample is not None and query is None:
        relation += f" TABLESAMPLE SYSTEM ({float(sample)!r})"
    return embed_source(st, relation)


SAMPLEABLE_SQL = Sql(
    "SELECT coalesce((SELECT relkind IN ('r', 'm', 'p') FROM pg_class "
    "WHERE oid = to_regclass($1)), false)",
    ("table",),
)
"""Whether ``table`` takes ``TABLESAMPLE`` (a table, partitioned table or materialized view,
not a view or a foreign table)."""

UNIQUE_ON_SQL = Sql(
    "SELECT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = to_regclass($1) "
    "AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL "
    "AND NOT EXISTS (SELECT 1 FROM unnest(i.indkey::int2[]) AS k(n) JOIN pg_attribute a "
    "ON a.attrelid = i.indrelid AND a.attnum = k.n "
    "WHERE a.attcollation <> 0 OR NOT a.attname = ANY ($2::text[])))",
    ("table", "key"),
)
"""Whether a table (bind ``table``, quoted) has a unique index on columns that are all in
``key`` (bind, text[]) and have no collation: then no two of its rows share a value of ``key``
once rows with a NULL in it are set aside.  Expression and partial indexes do not count, nor
collatable columns (a target column compared in another collation could make two distinct
source values equal)."""

PARTITIONED_SQL = Sql(
    "SELECT coalesce((SELECT relkind = 'p' FROM pg_class WHERE oid = $1::regclass), false)",
    ("relation",),
)
"""Whether a relation is a partitioned table (bind ``relation``, quoted; ``merge_statements``)."""

NULLABLE_COLUMNS_SQL = Sql(
    "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 "
    "AND NOT attisdropped AND NOT attnotnull",
    ("relation",),
)
"""The names of a relation's columns that accept NULL (bind ``relation``, quoted)."""

KEY_COLLATIONS_SQL = Sql(
    "SELECT a.attname, c.collname, CASE WHEN c.collname = 'default' THEN ("
    "SELECT dc.collname FROM pg_database d JOIN pg_collation dc "
    "ON dc.collencoding IN (-1, d.encoding) WHERE d.datname = current_database() "
    "AND dc.collname <> 'default' "
    "AND coalesce(to_jsonb(dc) ->> 'collisdeterministic', 'true') = 'true' "
    "AND dc.collprovider = coalesce(to_jsonb(d) ->> 'datlocprovider', 'c') "
    "AND CASE WHEN dc.collprovider = 'c' "
    "THEN lower(replace(dc.collcollate, '-', '')) = lower(replace(d.datcollate, '-', '')) "
    "AND lower(replace(dc.collctype, '-', '')) = lower(replace(d.datctype, '-', '')) "
    "ELSE coalesce(to_jsonb(dc) ->> 'colllocale', to_jsonb(dc) ->> 'colliculocale') "
    "= coalesce(to_jsonb(d) ->> 'datlocale', to_jsonb(d) ->> 'daticulocale') END "
    "ORDER BY dc.collencoding DESC, dc.collname LIMIT 1) ELSE c.collname END "
    "FROM pg_attribute a LEFT JOIN pg_collation c ON c.oid = a.attcollation "
    "WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped "
    "AND a.attname = ANY($2::text[]) ORDER BY a.attnum",
    ("relation", "keys"),
)
"""(name, collation, portable collation) of the ``keys`` columns of a relation (bind
``relation`` and ``keys``); NULL collations for types without one; ``default`` resolved to
the database's own collation (NULL when no catalog entry matches it).  Only the key columns:
resolving ``default`` scans ``pg_collation`` (5 ms), which a key without a collation (an
integer key) never needs."""


def collation_names_sql() -> Sql:
    """Every collation name the database knows (what a chunk range may be compared in)."""
    return Sql("SELECT collname FROM pg_collation")


def estimate_table_sql() -> Sql:
    """Row estimate of a table (bind ``table``, e.g. 'src.customers'); -1 = ask ``EXPLAIN``.

    The planner's own rule (PostgreSQL's ``estimate_rel_size``): the rows per page of the last
    ANALYZE / VACUUM (``reltuples / relpages``) times the pages the table has now, so rows
    added since count. -1 when those statistics hold no density: never analyzed
    (``reltuples`` -1 since PostgreSQL 14), analyzed while empty (``reltuples`` 0, which read
    as is planned a 200,000-row table as one chunk), or a relation with no pages of its own
    (a partitioned table); ``EXPLAIN`` then estimates from the table's size and row width.
    """
    return Sql(
        "SELECT CASE WHEN c.reltuples > 0 AND c.relpages > 0 THEN (c.reltuples / c.relpages"
        " * (pg_relation_size(c.oid) / current_setting('block_size')::float8))::bigint"
        " ELSE -1 END FROM pg_class c WHERE c.oid = to_regclass($1)",
        ("table",),
    )


def estimate_query_sql(query: str) -> Sql:
    """``EXPLAIN (FORMAT JSON)`` of a query; feed the result to ``parse_explain_rows``."""
    return Sql(f"EXPLAIN (FORMAT JSON) {query}")


def parse_explain_rows(doc: Any) -> int:
    """The top plan node's row estimate from ``EXPLAIN (FORMAT JSON)`` output (list or text)."""
    if isinstance(doc, str):
        doc = json.loads(doc)
    return int(doc[0]["Plan"]["Plan Rows"])


def max_valid_from_sql(table: str, cols: ScdColumns) -> Sql:
    """The latest version start; the driver refuses an as-of earlier than it."""
    return Sql(f"SELECT max({_q(cols.valid_from)}) FROM {_q(table)}")


def history_sql(table: str, cols: ScdColumns) -> Sql:
    """Whether a type-2 target holds an expired version (a full refresh would lose it)."""
    return Sql(f"SELECT EXISTS (SELECT 1 FROM {_q(table)} WHERE NOT {_q(cols.is_current)})")


def current_rows_sql(table: str, cols: ScdColumns, key: Sequence[str], chunk: Chunk) -> Sql:
    """The chunk's current target rows (for the reference model / verification)."""
    b = Binder("pg")
    where = bounds_predicate([f"t.{_q(c)}" for c in key], chunk, b)
    if cols.type == 2:
        where = f"t.{_q(cols.is_current)} AND {where}"
    return b.sql(f"SELECT * FROM {_q(table)} AS t WHERE {where}")
