"""One statement per chunk for the common type-2 run: later than every version in the target.

Theory of operation.  ``scd_sql_pg.merge_statements`` merges a staged chunk in up to five
statements, each joining staging with the chunk's range of the target again: the in-place
UPDATE, expire changed, expire absent, DELETE same-as-of, INSERT new versions.  A run whose
as-of is later than every version in the target (``planning.Decision.after_all``) with no
``overwrite`` column needs only three of them, and all three read the same join.  Here that
join is computed once, as a full join of the chunk's current target rows with staging:

* ``d`` (materialized: read twice) holds every key that changes, with the current row's
  ``ctid`` (NULL: a new key) and the staged row (NULL, marked by ``_async_etl_in``: a key the
  source no longer holds, only with ``deletes = "expire"``; with ``"ignore"`` staging is
  right-joined and absent keys never appear);
* ``e`` expires the current row of every changed or absent key (a TID scan of the row ids
  ``d`` just read, on the same snapshot, still limited to the chunk's current rows), returning
  their keys;
* ``i`` inserts the new current version of every new key and of every changed key whose old
  row ``e`` returned.  A changed key's new row is inserted only once ``e`` has expired its old
  one (the INSERT reads its key from ``e``'s output), so the one-current-row-per-key unique index
  never sees two current rows; a new key has no current row to conflict with.

The result equals ``merge_statements(..., after_all=True)`` on the same chunk (tested against
the reference model), counts included: ``expired`` = changed + absent, ``inserted`` = changed +
new.  Both unique indexes of the target stay in place and keep refusing a second current row
or a repeated version; nothing here relaxes them.
"""

from __future__ import annotations

from collections.abc import Sequence

from async_etl.core.chunks import Chunk
from async_etl.core.compare import is_exact, pg_compared
from async_etl.core.scd_sql_common import Binder, Sql, bounds_predicate, quote
from async_etl.core.specs import ScdColumns

__all__ = ["latest_merge_statements"]

_TID, _IN = "_async_etl_tid", "_async_etl_in"


def _q(name: str) -> str:
    return quote(name, "pg")


def _cols(alias: str, names: Sequence[str]) -> str:
    return ", ".join(f"{alias}.{_q(c)}" for c in names)


def _compared(alias: str, names: Sequence[str], cols: ScdColumns) -> str:
    return ", ".join(
        pg_compared(f"{alias}.{_q(c)}", cols.type_of(c), cols.target_type_of(c)) for c in names
    )


def latest_merge_statements(
    table: str, staging: str, cols: ScdColumns, key: Sequence[str], chunk: Chunk
) -> list[Sql] | None:
    """The one-statement merge of a staged chunk for a run later than every version.

    None when the job's shape needs ``merge_statements`` instead: type 1, an ``overwrite``
    column (changed in place), no tracked column, or ``deletes`` other than expire / ignore.
    Bind values come from ``chunk_values(chunk, as_of)``; the statement returns one row
    ``(inserted, updated, expired, deleted)``.  The caller guarantees the as-of is later than
    every ``valid_from`` in the chunk's range (``Decision.after_all``); were it not, the
    target's unique indexes would refuse the new versions and the chunk would roll back.
    """
    if cols.type != 2 or cols.overwrite or not cols.tracked:
        return None
    if cols.deletes not in ("expire", "ignore"):
        return None
    out: list[Sql] = []
    if not all(is_exact(cols.type_of(c)) for c in cols.compared):
        out.append(Sql("SET LOCAL extra_float_digits = 3"))
    t, s = _q(table), _q(staging)
    bk, tracked = cols.business_key, cols.tracked
    cur, vf, vt = _q(cols.is_current), _q(cols.valid_from), _q(cols.valid_to)
    b = Binder("pg")
    as_of = b("as_of")

    def current_in_chunk(alias: str) -> str:
        """The chunk's current rows (the UPDATE repeats it: its join then reads only them)."""
        where = bounds_predicate([f"{alias}.{_q(k)}" for k in key], chunk, b)
        return f"{alias}.{cur} AND {alias}.{vf} < {as_of} AND {where}"

    current = (
        f"SELECT c.ctid AS {_TID}, {_cols('c', bk)}, {_cols('c', tracked)} FROM {t} AS c "
        f"WHERE {current_in_chunk('c')}"
    )
    join = "FULL JOIN" if cols.deletes == "expire" else "RIGHT JOIN"
    on = " AND ".join(f"o.{_q(k)} = s.{_q(k)}" for k in bk)
    changed = (
        f"ROW({_compared('o', tracked, cols)}) IS DISTINCT FROM "
        f"ROW({_compared('s', tracked, cols)})"
    )
    data = ", ".join(_q(c) for c in cols.data)
    text = (
        f"WITH d AS MATERIALIZED (SELECT o.{_TID}, s.{_IN}, {_cols('s', cols.data)} "
        f"FROM ({current}) AS o {join} (SELECT true AS {_IN}, * FROM {s}) AS s ON {on} "
        f"WHERE o.{_TID} IS NULL OR s.{_IN} IS NULL OR {changed}), "
        f"e AS (UPDATE {t} AS x SET {vt} = {as_of}, {cur} = false "
        f"WHERE x.ctid = ANY (ARRAY(SELECT d.{_TID} FROM d WHERE d.{_TID} IS NOT NULL)) "
        f"AND {current_in_chunk('x')} RETURNING {_cols('x', bk)}), "
        f"i AS (INSERT INTO {t} ({data}, {vf}, {vt}, {cur}) OVERRIDING SYSTEM VALUE "
        f"SELECT {_cols('d', cols.data)}, {as_of}::timestamptz, NULL, true FROM d "
        f"WHERE d.{_IN} AND (d.{_TID} IS NULL OR ({_cols('d', bk)}) IN "
        f"(SELECT {_cols('e', bk)} FROM e)) "
        "RETURNING 1) "
        "SELECT (SELECT count(*) FROM i) AS inserted, 0::bigint AS updated, "
        "(SELECT count(*) FROM e) AS expired, 0::bigint AS deleted"
    )
    out.append(b.sql(text, "rows"))
    return out
