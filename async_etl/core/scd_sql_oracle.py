"""Oracle SQL for mapper jobs (python-oracledb, ``:1`` .. ``:n`` binds in text order).

Names are quoted upper-case (Oracle's folding of unquoted names).  Per chunk the driver, in one
transaction: inserts the chunk's source rows into the global temporary staging table
(``executemany``), runs ``merge_statements`` in order (``cursor.rowcount`` is the count named by
``Sql.counts``), checkpoints the chunk, and commits (``ON COMMIT DELETE ROWS`` empties staging).
Type 1 is one MERGE; type 2 is UPDATE (in place), UPDATE (expire), UPDATE / DELETE (absent keys)
and INSERT ... NOT EXISTS.  Oracle has no row-value inequality, so chunk bounds are expanded:
``a > :1 OR (a = :2 AND b >= :3)``.  NULL-safe comparison is ``DECODE(x, y, 0, 1) = 1``;
``CLOB`` columns (json, xml, arrays: ``compare.oracle_lob``), which ``DECODE`` and ``=``
refuse, are compared with ``DBMS_LOB.COMPARE`` after a NULL check.
"""

from __future__ import annotations

from collections.abc import Sequence

from async_etl.core import incremental as inc
from async_etl.core import scd_sql_common as common
from async_etl.core.chunks import Chunk
from async_etl.core.compare import oracle_lob
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
from async_etl.core.specs import ScdColumns, is_identifier

SESSION_SQL = Sql("ALTER SESSION SET TIME_ZONE = 'UTC' NLS_SORT = 'BINARY' NLS_COMP = 'BINARY'")
"""Run on every job connection: UTC (binds are naive UTC) and code-point order for text, so
``NTILE``, ``ORDER BY`` and the chunk bounds all sort strings the way the other targets do."""


def _q(name: str) -> str:
    return quote(name, "oracle")


def _cols(alias: str, names: Sequence[str]) -> str:
    return ", ".join(f"{alias}.{_q(c)}" for c in names)


def _keys_equal(a: str, b: str, names: Sequence[str]) -> str:
    return " AND ".join(f"{a}.{_q(c)} = {b}.{_q(c)}" for c in names)


def _differs(x: str, y: str, lob: bool) -> str:
    """NULL-safe "differs": ``DECODE`` for scalars, ``DBMS_LOB.COMPARE`` for CLOB columns."""
    if not lob:
        return f"DECODE({x}, {y}, 0, 1) = 1"
    return (
        f"(CASE WHEN {x} IS NULL AND {y} IS NULL THEN 0 WHEN {x} IS NULL OR {y} IS NULL THEN 1 "
        f"WHEN DBMS_LOB.COMPARE({x}, {y}) = 0 THEN 0 ELSE 1 END) = 1"
    )


def _distinct(a: str, b: str, names: Sequence[str], cols: ScdColumns) -> str:
    parts = (_differs(f"{a}.{_q(c)}", f"{b}.{_q(c)}", oracle_lob(cols.type_of(c))) for c in names)
    return "(" + " OR ".join(parts) + ")"


def target_ddl(table: str, columns: Sequence[tuple[str, str]], cols: ScdColumns) -> list[Sql]:
    """CREATE TABLE + indexes (no IF NOT EXISTS before 23ai: ignore ORA-00955 / ORA-01408)."""
    key = set(cols.business_key)
    defs = [f"{_q(n)} {check_type(t)}{' NOT NULL' if n in key else ''}" for n, t in columns]
    bk = ", ".join(_q(c) for c in cols.business_key)
    out: list[Sql] = []
    if cols.type == 2:
        defs += [
            f"{_q(cols.valid_from)} TIMESTAMP WITH TIME ZONE NOT NULL",
            f"{_q(cols.valid_to)} TIMESTAMP WITH TIME ZONE",
            f"{_q(cols.is_current)} NUMBER(1) DEFAULT 1 NOT NULL",
        ]
        out.append(Sql(f"CREATE TABLE {_q(table)} ({', '.join(defs)})"))
        out.append(
            Sql(
                f"CREATE UNIQUE INDEX {_q(_short(table, 'version'))} ON {_q(table)} "
                f"({bk}, {_q(cols.valid_from)})"
            )
        )
        out.append(
            Sql(
                f"CREATE INDEX {_q(_short(table, 'current'))} ON {_q(table)} "
                f"({bk}, {_q(cols.is_current)})"
            )
        )
    else:
        out.append(Sql(f"CREATE TABLE {_q(table)} ({', '.join(defs)})"))
        out.append(Sql(f"CREATE UNIQUE INDEX {_q(_short(table, 'bk'))} ON {_q(table)} ({bk})"))
    return out


def staging_ddl(staging: str, columns: Sequence[tuple[str, str]]) -> Sql:
    """A global temporary staging table (created once; rows vanish at commit)."""
    defs = ", ".join(f"{_q(n)} {check_type(t)}" for n, t in columns)
    return Sql(f"CREATE GLOBAL TEMPORARY TABLE {_q(staging)} ({defs}) ON COMMIT DELETE ROWS")


def staging_insert(staging: str, columns: Sequence[str]) -> Sql:
    """``executemany`` statement that fills the staging table (binds :1..:n = the columns)."""
    names = ", ".join(_q(c) for c in columns)
    marks = ", ".join(f":{i}" for i in range(1, len(columns) + 1))
    return Sql(f"INSERT INTO {_q(staging)} ({names}) VALUES ({marks})", tuple(columns))


def unstage_keys_sql(staging: str, cols: ScdColumns) -> Sql:
    """``executemany`` statement deleting every staged row of one business key (binds: key)."""
    match = " AND ".join(f"{_q(c)} = :{i + 1}" for i, c in enumerate(cols.business_key))
    return Sql(f"DELETE FROM {_q(staging)} WHERE {match}", cols.business_key)


def stage_current_sql(staging: str, table: str, cols: ScdColumns) -> Sql:
    """``executemany`` statement staging a key's current target row as it is (binds: key).

    A refused or held key then looks unchanged to the merge: not changed, not deleted.  A key
    without a current row, or already staged, stages nothing.
    """
    s, t, bk = _q(staging), _q(table), cols.business_key
    match = " AND ".join(f"t.{_q(c)} = :{i + 1}" for i, c in enumerate(bk))
    current = f" AND t.{_q(cols.is_current)} = 1" if cols.type == 2 else ""
    data = ", ".join(_q(c) for c in cols.data)
    tdata = ", ".join(f"t.{_q(c)}" for c in cols.data)
    return Sql(
        f"INSERT INTO {s} ({data}) SELECT {tdata} FROM {t} t WHERE {match}{current} "
        f"AND NOT EXISTS (SELECT 1 FROM {s} x WHERE {_keys_equal('x', 't', bk)})",
        bk,
    )


def merge_statements(
    table: str, staging: str, cols: ScdColumns, key: Sequence[str], chunk: Chunk
) -> list[Sql]:
    """The chunk merge, in order; bind values from ``chunk_values(chunk, as_of)``."""
    t, s, bk = _q(table), _q(staging), cols.business_key
    absent = f"NOT EXISTS (SELECT 1 FROM {s} s WHERE {_keys_equal('s', 't', bk)})"
    keyrefs = [f"t.{_q(c)}" for c in key]
    if cols.type == 1:
        return _type1(t, s, cols, keyrefs, chunk, absent)
    cur, vf, vt = _q(cols.is_current), _q(cols.valid_from), _q(cols.valid_to)
    out: list[Sql] = []
    if cols.compared:
        b = Binder("oracle")
        guard = ""
        if cols.tracked:
            moved = _distinct("t", "s", cols.tracked, cols)
            guard = f" AND NOT (t.{vf} < {b('as_of')} AND {moved})"
        names = ", ".join(_q(c) for c in cols.compared)
        match = _keys_equal("s", "t", bk)
        out.append(
            b.sql(
                f"UPDATE {t} t SET ({names}) = (SELECT {_cols('s', cols.compared)} FROM {s} s "
                f"WHERE {match}) WHERE t.{cur} = 1 AND EXISTS (SELECT 1 FROM {s} s "
                f"WHERE {match} AND {_distinct('t', 's', cols.compared, cols)}{guard})",
                "updated",
            )
        )
    if cols.tracked:
        b = Binder("oracle")
        out.append(
            b.sql(
                f"UPDATE {t} t SET t.{vt} = {b('as_of')}, t.{cur} = 0 WHERE t.{cur} = 1 AND "
                f"t.{vf} < {b('as_of')} AND EXISTS (SELECT 1 FROM {s} s WHERE "
                f"{_keys_equal('s', 't', bk)} AND {_distinct('t', 's', cols.tracked, cols)})",
                "expired",
            )
        )
    if cols.deletes == "expire":
        b = Binder("oracle")
        head = f"UPDATE {t} t SET t.{vt} = {b('as_of')}, t.{cur} = 0 WHERE t.{cur} = 1 AND "
        head += f"t.{vf} < {b('as_of')} AND "
        where = bounds_predicate(keyrefs, chunk, b, expand=True)
        out.append(b.sql(f"{head}{where} AND {absent}", "expired"))
        b = Binder("oracle")
        head = f"DELETE FROM {t} t WHERE t.{cur} = 1 AND t.{vf} = {b('as_of')} AND "
        where = bounds_predicate(keyrefs, chunk, b, expand=True)
        out.append(b.sql(f"{head}{where} AND {absent}", "deleted"))
    b = Binder("oracle")
    data = ", ".join(_q(c) for c in cols.data)
    out.append(
        b.sql(
            f"INSERT INTO {t} ({data}, {vf}, {vt}, {cur}) SELECT {_cols('s', cols.data)}, "
            f"{b('as_of')}, NULL, 1 FROM {s} s WHERE NOT EXISTS (SELECT 1 FROM {t} c "
            f"WHERE c.{cur} = 1 AND {_keys_equal('c', 's', bk)})",
            "inserted",
        )
    )
    return out


def _type1(
    t: str, s: str, cols: ScdColumns, keyrefs: list[str], chunk: Chunk, absent: str
) -> list[Sql]:
    out: list[Sql] = []
    if cols.deletes == "delete":
        b = Binder("oracle")
        where = bounds_predicate(keyrefs, chunk, b, expand=True)
        out.append(b.sql(f"DELETE FROM {t} t WHERE {where} AND {absent}", "deleted"))
    bk = cols.business_key
    matched = ""
    if cols.compared:
        sets = ", ".join(f"t.{_q(c)} = s.{_q(c)}" for c in cols.compared)
        changed = _distinct("t", "s", cols.compared, cols)
        matched = f" WHEN MATCHED THEN UPDATE SET {sets} WHERE {changed}"
    data = ", ".join(_q(c) for c in cols.data)
    out.append(
        Sql(
            " ".join(
                f"MERGE INTO {t} t USING {s} s ON ({_keys_equal('t', 's', bk)}){matched} "
                f"WHEN NOT MATCHED THEN INSERT ({data}) VALUES ({_cols('s', cols.data)})".split()
            ),
            (),
            "upserted",
        )
    )
    return out


def source_relation(query: str | None, table: str | None) -> str:
    """The query or quoted table as relation ``q``, no AS (``scd_sql_common.source_relation``)."""
    return common.source_relation(query, table, "oracle")


def extract_sql(
    query: str | None,
    table: str | None,
    key: Sequence[str],
    chunk: Chunk,
    window: CursorWindow | None = None,
) -> Sql:
    """Read one chunk in key order; NULL keys are never read (see ``null_keys_sql``).

    With a cursor ``window`` only its rows are read (binds from ``window.values()`` too).
    """
    b = Binder("oracle")
    where = bounds_predicate([f"q.{_q(c)}" for c in key], chunk, b, expand=True)
    where += inc.window_clause(window, b)
    order = ", ".join(f"q.{_q(c)}" for c in key)
    st = b.sql(f"SELECT * FROM {SOURCE} WHERE {where} ORDER BY {order}")
    return embed_source(st, source_relation(query, table))


def null_keys_sql(
    query: str | None, table: str | None, key: Sequence[str], window: CursorWindow | None = None
) -> Sql:
    """Count source rows (of the cursor ``window``) with a NULL key part (reject or fail)."""
    return inc.null_keys_sql("oracle", source_relation(query, table), key, window)


def boundaries_sql(
    query: str | None, table: str | None, key: Sequence[str], window: CursorWindow | None = None
) -> Sql:
    """First key of each of ``n`` NTILE buckets but the first (bind ``n``).

    With a cursor ``window`` the buckets split the window's rows only.  Binds are numbered in
    text order (``n`` first), as Oracle matches positional binds.
    """
    keys = ", ".join(f"q.{_q(c)}" for c in key)
    bare = ", ".join(_q(c) for c in key)
    notnull = " AND ".join(f"q.{_q(c)} IS NOT NULL" for c in key)
    b = Binder("oracle")
    n = b("n")
    notnull += inc.window_clause(window, b)
    st = b.sql(
        f"SELECT {bare} FROM (SELECT {bare}, bucket, ROW_NUMBER() OVER (PARTITION BY bucket "
        f"ORDER BY {bare}) rn FROM (SELECT {keys}, NTILE({n}) OVER (ORDER BY {keys}) bucket "
        f"FROM {SOURCE} WHERE {notnull}) x) y "
        f"WHERE rn = 1 AND bucket > 1 ORDER BY bucket"
    )
    return embed_source(st, source_relation(query, table))


def estimate_table_sql() -> Sql:
    """Optimizer statistics row count (binds ``owner``, ``table``, upper-case; NULL = none)."""
    return Sql(
        "SELECT num_rows FROM all_tables WHERE owner = :1 AND table_name = :2", ("owner", "table")
    )


def explain_sql(statement_id: str, query: str) -> tuple[Sql, Sql]:
    """``EXPLAIN PLAN`` for ``query``, then the read of its top-line cardinality."""
    if not is_identifier(statement_id):
        raise ValueError(f"bad statement id {statement_id!r}")
    return (
        Sql(f"EXPLAIN PLAN SET STATEMENT_ID = '{statement_id}' FOR {query}"),
        Sql(
            "SELECT cardinality FROM plan_table WHERE statement_id = :1 AND id = 0",
            ("statement_id",),
        ),
    )


def max_valid_from_sql(table: str, cols: ScdColumns) -> Sql:
    """The latest version start; the driver refuses an as-of earlier than it."""
    return Sql(f"SELECT MAX({_q(cols.valid_from)}) FROM {_q(table)}")


def history_sql(table: str, cols: ScdColumns) -> Sql:
    """1 when a type-2 target holds an expired version (a full refresh would lose it), else 0."""
    return Sql(f"SELECT COUNT(*) FROM {_q(table)} WHERE {_q(cols.is_current)} = 0 AND ROWNUM = 1")
