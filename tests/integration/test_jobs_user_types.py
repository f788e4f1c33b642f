"""A source column of a user-defined type (enum, composite) and a target that must create it."""

from __future__ import annotations

from async_etl.testing.databases import fresh_database
from tests.integration.jobs_helpers import fetchval, run_cli

SOURCE = (
    "CREATE TYPE mood AS ENUM ('a', 'b')",
    "CREATE TYPE pair AS (x int, y text)",
    "CREATE TABLE t (id int PRIMARY KEY, m mood, p pair)",
    "INSERT INTO t VALUES (1, 'a', ROW(1, 'x')), (2, 'b', NULL)",
)
"""A source table with an enum and a composite column."""

RELATIONS = (
    "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND c.relkind = 'r'"
)
"""The tables of a database (the job's target and its state store's)."""


def _copy(src: str, dst: str, table: str) -> tuple[str, ...]:
    return ("copy", "--source", src, "--source-table", "t", "--target", dst,
            "--target-table", table, "--key", "id", "--mode", "merge")  # fmt: skip


async def test_enum_and_composite_columns_into_another_database(pg_server_dsn: str) -> None:
    """A missing enum / composite type: exit 2, one line, nothing made; with the types: loads."""
    async with fresh_database(pg_server_dsn) as src, fresh_database(pg_server_dsn) as dst:
        for sql in SOURCE:
            await fetchval(src, sql)
        code, out, err = await run_cli(*_copy(src, dst, "t"))
        # before: the run was recorded, then failed making the table ('type "mood" does not
        # exist', exit 1)
        assert code == 2, (out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert "column m has type mood, which the target database does not have" in lines[0]
        assert "CREATE TYPE" in lines[0] and "m::text AS m" in lines[0], lines[0]
        assert await fetchval(dst, RELATIONS) == 0
        await fetchval(dst, "CREATE TYPE mood AS ENUM ('a', 'b')")
        code, out, err = await run_cli(*_copy(src, dst, "t"))
        assert code == 2, (out, err)
        assert "column p has type pair, which the target database does not have" in err, err
        assert await fetchval(dst, RELATIONS) == 0
        await fetchval(dst, "CREATE TYPE pair AS (x int, y text)")
        code, out, err = await run_cli(*_copy(src, dst, "t"))
        assert code == 0, (out, err)
        got = await fetchval(dst, "SELECT string_agg(id || ':' || m || ':' || coalesce(p::text, "
                             "'-'), ',' ORDER BY id) FROM t")  # fmt: skip
        assert got == "1:a:(1,x),2:b:-"


async def test_enum_column_within_one_database_loads(pg_server_dsn: str) -> None:
    """Source and target in the same database: the types are there, the new table is made."""
    async with fresh_database(pg_server_dsn) as db:
        for sql in SOURCE:
            await fetchval(db, sql)
        code, out, err = await run_cli(*_copy(db, db, "t_copy"))
        assert code == 0, (out, err)
        got = await fetchval(db, "SELECT string_agg(id || ':' || m, ',' ORDER BY id) FROM t_copy")
        assert got == "1:a,2:b"
        types = await fetchval(
            db,
            "SELECT string_agg(format_type(atttypid, atttypmod), ',' ORDER BY attnum) "
            "FROM pg_attribute WHERE attrelid = 't_copy'::regclass AND attname IN ('m', 'p')",
        )
        assert types == "mood,pair"


async def test_added_enum_column_is_checked_too(pg_server_dsn: str) -> None:
    """An existing target gaining an enum column (add_columns) the target lacks: exit 2."""
    async with fresh_database(pg_server_dsn) as src, fresh_database(pg_server_dsn) as dst:
        for sql in SOURCE:
            await fetchval(src, sql)
        await fetchval(dst, "CREATE TYPE pair AS (x int, y text)")
        await fetchval(dst, "CREATE TABLE t (id int PRIMARY KEY, p pair)")
        code, out, err = await run_cli(
            *_copy(src, dst, "t"), "--set", "target.schema_evolution=add_columns"
        )
        assert code == 2, (out, err)
        assert "column m has type mood, which the target database does not have" in err, err
        assert await fetchval(dst, RELATIONS) == 1
