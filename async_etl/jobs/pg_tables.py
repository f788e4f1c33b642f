"""The PostgreSQL target's tables and indexes: existence checks and the index decisions.

Used by ``jobs.pg_driver.PgTarget`` (prepare, swap, after_load):

- ``table_exists`` / ``tables_exist`` read whether tables exist (names quoted as typed, so a
  mixed-case target is found), two at once in one round trip;
- ``target_indexes`` reads a table's indexes (``core.refresh_pg.INDEXES_SQL``) as
  ``TargetIndex`` values;
- ``key_indexed`` / ``no_repeat`` decide when the engine's own ``<t>_bk`` would repeat an index
  of the target's that already is the business key's arbiter, and ``engine_indexes`` names the
  unique indexes the engine creates itself;
- ``drop_repeat`` drops the engine's ``<t>_bk`` that an earlier run built before the target had
  an arbiter of its own (or before the engine knew to skip it): only when the catalog shows it
  is exactly the index the engine creates (``refresh_pg.ENGINE_KEY_INDEX_SQL``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from async_etl.core import refresh_pg as refresh
from async_etl.core import scd_sql_pg as pg
from async_etl.core.scd_sql_common import Sql, quote, short_name
from async_etl.core.specs import ScdColumns
from async_etl.log import get_logger

__all__ = [
    "drop_repeat",
    "engine_indexes",
    "key_indexed",
    "no_repeat",
    "table_exists",
    "tables_exist",
    "target_indexes",
]

log = get_logger(__name__)


async def table_exists(conn: Any, table: str) -> bool:
    """Whether ``table`` (``name`` or ``schema.name``, as typed) exists.

    The name is quoted for ``to_regclass``, which folds an unquoted name to lower case: a
    mixed-case target (``Sales.OrderItems``) would otherwise read as absent.
    """
    return await conn.fetchval("SELECT to_regclass($1)", quote(table)) is not None


async def tables_exist(conn: Any, first: str, second: str) -> tuple[bool, bool]:
    """Whether each of two tables exists (as ``table_exists``), in one round trip."""
    row = await conn.fetchrow(
        "SELECT to_regclass($1) IS NOT NULL, to_regclass($2) IS NOT NULL",
        quote(first),
        quote(second),
    )
    return bool(row[0]), bool(row[1])


def key_indexed(final: str, cols: ScdColumns, indexes: Sequence[refresh.TargetIndex]) -> bool:
    """Whether a type-1 target has an index of its own that is an arbiter of the business key.

    Copied to the new table, it makes the engine's ``<t>_bk`` (``index_ddl``) a repeat
    (``TargetIndex.arbiter``); the engine's own indexes are not copied, so they do not count.
    """
    engine = engine_indexes(final)
    return cols.type == 1 and any(ix.arbiter and ix.name not in engine for ix in indexes)


def no_repeat(
    ddl: list[Sql],
    table: str,
    cols: ScdColumns,
    final: str,
    indexes: Sequence[refresh.TargetIndex],
) -> list[Sql]:
    """``ddl`` less ``table``'s ``index_ddl`` when ``final``'s own indexes hold the key's arbiter.

    ``final`` is the target itself for a merge, the table a refresh copies its indexes from
    (``key_indexed``).
    """
    if not key_indexed(final, cols, indexes):
        return ddl
    repeat = pg.index_ddl(table, cols)
    return [st for st in ddl if st not in repeat]


async def drop_repeat(
    conn: Any, table: str, cols: ScdColumns, indexes: Sequence[refresh.TargetIndex]
) -> str | None:
    """Drop ``table``'s engine-made ``<t>_bk`` when an index of its own is the key's arbiter.

    A type-1 target whose own index (its primary key, say) serves ``ON CONFLICT`` gets no
    ``<t>_bk`` (``no_repeat``); one built by an earlier run is a second unique index on the
    same key, maintained on every write for nothing.  It is dropped only when it is provably
    the engine's (``refresh_pg.ENGINE_KEY_INDEX_SQL``: by name and exact definition, backing
    no constraint); anything else under that name is left alone.  Returns the index dropped
    (quoted), or None.  Raises the driver's errors (the caller translates them).
    """
    if not key_indexed(table, cols, indexes):
        return None
    name = short_name(table, "bk")
    if name not in {ix.name for ix in indexes}:
        return None
    st = refresh.ENGINE_KEY_INDEX_SQL
    args = {"table": quote(table), "name": name, "key": list(cols.business_key)}
    found = await conn.fetchval(st.text, *st.args(args))
    if found is None:
        return None
    await conn.execute(f"DROP INDEX IF EXISTS {found}")
    log.info("repeat_index_dropped", index=found, reason="an index of the target's own is "
             "the business key's ON CONFLICT arbiter")  # fmt: skip
    return str(found)


def engine_indexes(table: str) -> tuple[str, ...]:
    """The names of the unique indexes the engine itself creates on ``table``."""
    return tuple(short_name(table, s) for s in ("version", "current", "bk"))


async def target_indexes(conn: Any, final: str, cols: ScdColumns) -> list[refresh.TargetIndex]:
    """The target's indexes (``core.refresh_pg.INDEXES_SQL``)."""
    key = list(cols.business_key)
    rows = await conn.fetch(refresh.INDEXES_SQL.text, quote(final), key)
    out = []
    for r in rows:
        on_key, deferrable, deferred = (bool(v) for v in r[6:9])
        names = (str(r[0]), str(r[1]), bool(r[2]), str(r[3]), str(r[4]), str(r[5]))
        flags = (on_key and not deferrable, deferrable, deferred, on_key and deferrable)
        out.append(refresh.TargetIndex(*names, *flags))
    return out
