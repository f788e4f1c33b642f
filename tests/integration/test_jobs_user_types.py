"""A source column of a user-defined type (enum, composite) and a target that must create it."""

from __future__ import annotations

import pytest

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


TYPES = (
    "CREATE TYPE mood AS ENUM ('a', 'b', 'c')",
    "CREATE TYPE pair AS (x int, y text)",
    "CREATE TYPE wrap AS (m mood)",
)
"""The source's user types: an enum, a composite, a composite holding the enum."""

ROWS = {
    "m mood": ("'a'", "'c'"),
    "p pair": ("ROW(1, 'x')", "ROW(2, 'y')"),
    "ms mood[]": ("'{a,c}'", "'{c}'"),
    "q wrap": ("ROW('c')", "ROW('a')"),
}
"""Each source column and its two rows' values (id 1, id 2)."""

REFUSED = [
    ("m mood", "id", ("CREATE TYPE mood AS ENUM ('a', 'b')",),
     "column m has type mood: enum mood in the target lacks label 'c'"),
    ("p pair", "id", ("CREATE TYPE pair AS (y text, x int)",),
     "column p has type pair: composite pair is (y text, x integer) in the target, "
     "(x integer, y text) in the source"),
    ("p pair", "id", ("CREATE TYPE pair AS (x bigint, y text)",),
     "composite pair is (x bigint, y text) in the target"),
    ("p pair", "id", ("CREATE TYPE pair AS (x int)",),
     "composite pair is (x integer) in the target"),
    ("ms mood[]", "id", ("CREATE TYPE mood AS ENUM ('a', 'b')",),
     "column ms has type mood[]: enum mood in the target lacks label 'c'"),
    ("q wrap", "id", ("CREATE TYPE mood AS ENUM ('a', 'b')", "CREATE TYPE wrap AS (m mood)"),
     "column q has type wrap: enum mood in the target lacks label 'c'"),
    ("m mood", "m", ("CREATE TYPE mood AS ENUM ('c', 'b', 'a')",),
     "column m has type mood: enum mood orders its labels (a, b, c) otherwise in the target"),
]  # fmt: skip
"""(source column, chunk key, the target's types, the refusal): a type there but unlike."""

LOADED = [
    ("m mood", ("CREATE TYPE mood AS ENUM ('c', 'z', 'b', 'a')",), "1:a,2:c"),
    ("m mood", ("CREATE TYPE mood AS ENUM ('a', 'b', 'c', 'd')",), "1:a,2:c"),
    ("p pair", ("CREATE TYPE pair AS (x int, y text)",), "1:(1,x),2:(2,y)"),
    ("ms mood[]", ("CREATE TYPE mood AS ENUM ('b', 'a', 'c')",), "1:{a,c},2:{c}"),
    ("q wrap", ("CREATE TYPE mood AS ENUM ('c', 'b', 'a')", "CREATE TYPE wrap AS (m mood)"),
     "1:(c),2:(a)"),
]  # fmt: skip
"""(source column, the target's types, the rows loaded): types alike enough to load exactly."""


async def _source(src: str, column: str) -> None:
    for sql in TYPES:
        await fetchval(src, sql)
    await fetchval(src, f"CREATE TABLE t (id int PRIMARY KEY, {column})")
    first, second = ROWS[column]
    await fetchval(src, f"INSERT INTO t VALUES (1, {first}), (2, {second})")


@pytest.mark.parametrize("existing", [False, True], ids=["new table", "existing table"])
@pytest.mark.parametrize(("column", "key", "types", "needle"), REFUSED)
async def test_a_user_type_unlike_the_sources_is_refused(
    pg_server_dsn: str, column: str, key: str, types: tuple[str, ...], needle: str, existing: bool
) -> None:
    """The target has the type but defined otherwise (its table new or not): exit 2, one line."""
    async with fresh_database(pg_server_dsn) as src, fresh_database(pg_server_dsn) as dst:
        await _source(src, column)
        for sql in types:
            await fetchval(dst, sql)
        if existing:  # a user type is matched by name: the table's column takes the values
            await fetchval(dst, f"CREATE TABLE t (id int PRIMARY KEY, {column})")
        args = list(_copy(src, dst, "t"))
        args[args.index("--key") + 1] = key
        code, out, err = await run_cli(*args)
        # before: exit 1 after the run was recorded (DatatypeMismatchError, invalid input
        # value for enum), t_etl_new left in the target; into an existing table the same, or
        # for an enum key ordered otherwise, exit 0
        assert code == 2, (out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert needle in lines[0], lines[0]
        assert await fetchval(dst, RELATIONS) == int(existing)
        if existing:
            assert await fetchval(dst, "SELECT count(*) FROM t") == 0


@pytest.mark.parametrize("existing", [False, True], ids=["new table", "existing table"])
@pytest.mark.parametrize(("column", "types", "want"), LOADED)
async def test_a_user_type_alike_enough_loads_exactly(
    pg_server_dsn: str, column: str, types: tuple[str, ...], want: str, existing: bool
) -> None:
    """More enum labels, another label order, the same fields: every row loads as it was."""
    async with fresh_database(pg_server_dsn) as src, fresh_database(pg_server_dsn) as dst:
        await _source(src, column)
        for sql in types:
            await fetchval(dst, sql)
        if existing:
            await fetchval(dst, f"CREATE TABLE t (id int PRIMARY KEY, {column})")
        code, out, err = await run_cli(*_copy(src, dst, "t"))
        assert code == 0, (out, err)
        name = column.split()[0]
        got = await fetchval(dst, f"SELECT string_agg(id || ':' || {name}::text, ',' "
                             "ORDER BY id) FROM t")  # fmt: skip
        assert got == want
