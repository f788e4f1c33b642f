"""Finding the rows a PostgreSQL target refuses, by bisection in savepoints.

Theory of operation
-------------------
A chunk merge is set-based, so when the target refuses one row (too long, NOT NULL, CHECK,
bad cast, a duplicate key) the whole statement fails and says little about which row.  With
``on_bad_row = "reject"`` the driver rolls back to the savepoint before the merge and calls
``find_bad_rows``:

1. number the staged rows (``row_number()`` into a TEMP table);
2. create a probe table ``LIKE`` the target (defaults, constraints and unique indexes), so it
   refuses exactly what the target's columns refuse;
3. insert row ranges into the probe, each in its own savepoint: a range that goes in stays
   (so a later duplicate of one of its keys is caught), a range that fails is split in halves
   and each half tried again, down to single rows.  Cost: about ``2 * bad * log2(n)``
   statements, never one per row;
4. put the staging table back without the bad rows.  A refused row's key must not look
   deleted (``deletes = "expire"`` would expire it), so its current target row, if any, is
   staged in its place: the merge then leaves that key exactly as it was.

Everything happens inside the chunk's transaction; the probe and the numbered copy are
``ON COMMIT DROP``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from async_etl.core.pg_casts import too_long_line, unguard
from async_etl.core.scd_sql_common import quote
from async_etl.core.specs import ScdColumns
from async_etl.drivers.postgres import PostgresError, is_data_error
from async_etl.jobs.context import key_json

__all__ = ["find_bad_rows"]

_NUMBERED = "_async_etl_numbered"
_PROBE = "_async_etl_reject_probe"
_RN = "_async_etl_rn"


def _one_line(exc: BaseException) -> str:
    code = getattr(exc, "sqlstate", "")
    return " ".join(f"{exc} (SQLSTATE {code})".split())


async def find_bad_rows(
    conn: Any,
    *,
    table: str,
    staging: str,
    cols: ScdColumns,
    as_of: datetime,
    guarded: dict[str, int] | None = None,
) -> list[tuple[str, str]]:
    """Remove the rows ``table`` refuses from ``staging``; their (key JSON, reason).

    ``guarded`` (``core.pg_casts.guarded_columns``): staged columns read through a
    ``varchar(n)`` guard; a key is recorded as the source holds it (``unguard``), and a
    reason "value too long for type character varying(n)" names the column(s) holding the
    longer value, and whether the target refuses it or would cut its excess blanks
    (``core.pg_casts.too_long_line`` told the row: one more round trip per such row).

    Must run inside a transaction on ``conn``.  Raises the driver's error when the probe
    itself cannot be built (that is not a bad row).
    """
    t, s = quote(table), quote(staging)
    names = cols.data
    data = ", ".join(quote(c) for c in names)
    await conn.execute(
        f"CREATE TEMP TABLE {_NUMBERED} ON COMMIT DROP AS "
        f"SELECT row_number() OVER () AS {_RN}, {data} FROM {s}"
    )
    await conn.execute(
        f"CREATE TEMP TABLE {_PROBE} (LIKE {t} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
        "INCLUDING INDEXES) ON COMMIT DROP"
    )
    total = int(await conn.fetchval(f"SELECT count(*) FROM {_NUMBERED}"))
    if cols.type == 2:
        extra_cols = f", {quote(cols.valid_from)}, {quote(cols.valid_to)}, {quote(cols.is_current)}"
        extra_vals = ", $3::timestamptz, NULL, true"
    else:
        extra_cols = extra_vals = ""
    probe = (
        f"INSERT INTO {_PROBE} ({data}{extra_cols}) SELECT {data}{extra_vals} "
        f"FROM {_NUMBERED} WHERE {_RN} >= $1 AND {_RN} < $2"
    )
    args: tuple[Any, ...] = (as_of,) if cols.type == 2 else ()
    bad: list[tuple[int, str]] = []
    marks = {c: n for c, n in (guarded or {}).items() if c in names}

    async def bisect(lo: int, hi: int) -> None:
        try:
            async with conn.transaction():
                await conn.execute(probe, lo, hi, *args)
        except PostgresError as exc:
            if not is_data_error(exc):
                raise
            if hi - lo == 1:
                reason = _one_line(exc)
                named = await _too_long(conn, reason, marks, lo)
                bad.append((lo, reason if named is None else f"{named} ({reason})"))
                return
            mid = (lo + hi) // 2
            await bisect(lo, mid)
            await bisect(mid, hi)

    if total:
        await bisect(1, total + 1)
    if not bad:
        return []
    numbers = [n for n, _ in bad]
    await _restage(conn, t, s, cols, numbers)
    keys = await conn.fetch(
        f"SELECT {_RN}, {', '.join(quote(c) for c in cols.business_key)} FROM {_NUMBERED} "
        f"WHERE {_RN} = ANY($1::bigint[])",
        numbers,
    )
    by_number = {
        int(r[0]): {c: unguard(v, marks[c]) if c in marks else v
                    for c, v in zip(cols.business_key, tuple(r)[1:], strict=True)}
        for r in keys
    }  # fmt: skip
    return [(key_json(by_number[n]), reason) for n, reason in bad]


async def _too_long(conn: Any, reason: str, marks: dict[str, int], number: int) -> str | None:
    """``too_long_line`` for the refused row ``number``, told its guarded values (``unguard``).

    None (no extra round trip) when ``reason`` is not a guarded column's "too long".
    """
    if too_long_line(reason, marks) is None:
        return None
    names = list(marks)
    got = await conn.fetchrow(
        f"SELECT {', '.join(quote(c) for c in names)} FROM {_NUMBERED} WHERE {_RN} = $1", number
    )
    row = {c: unguard(v, marks[c]) for c, v in zip(names, tuple(got), strict=True)}
    return too_long_line(reason, marks, row)


async def _restage(conn: Any, t: str, s: str, cols: ScdColumns, numbers: Sequence[int]) -> None:
    """Staging := the good rows, plus the current target row of each refused key."""
    data = ", ".join(quote(c) for c in cols.data)
    bk = cols.business_key
    await conn.execute(f"DELETE FROM {s}")
    await conn.execute(
        f"INSERT INTO {s} ({data}) SELECT {data} FROM {_NUMBERED} "
        f"WHERE NOT ({_RN} = ANY($1::bigint[]))",
        numbers,
    )
    current = f"AND t.{quote(cols.is_current)}" if cols.type == 2 else ""
    match_n = " AND ".join(f"n.{quote(c)} = t.{quote(c)}" for c in bk)
    match_s = " AND ".join(f"x.{quote(c)} = t.{quote(c)}" for c in bk)
    tdata = ", ".join(f"t.{quote(c)}" for c in cols.data)
    # EXISTS, not JOIN + DISTINCT: json, xml or point columns have no equality for DISTINCT
    await conn.execute(
        f"INSERT INTO {s} ({data}) SELECT {tdata} FROM {t} AS t WHERE EXISTS (SELECT 1 "
        f"FROM {_NUMBERED} AS n WHERE {match_n} AND n.{_RN} = ANY($1::bigint[])) {current} "
        f"AND NOT EXISTS (SELECT 1 FROM {s} AS x WHERE {match_s})",
        numbers,
    )
