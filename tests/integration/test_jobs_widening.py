"""A PostgreSQL source column into an existing target column of a wider type, in another database.

The schema-drift check accepts such a pair (``core.drift.sql_fits``); every mode must then load
it exactly: the values the target holds equal the source's (NULL elements, empty and
multi-dimensional arrays, lower bounds kept), and an unchanged type-2 run sees no change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import pytest

from async_etl.jobs.api import JobOptions
from async_etl.jobs.runner import run_job
from async_etl.testing.databases import fresh_database
from tests.integration.jobs_helpers import at, fetchval, run_cli, spec_of, write

DOMAINS = (
    "CREATE DOMAIN posint AS int CHECK (VALUE > 0)",
    "CREATE DOMAIN pos8 AS bigint CHECK (VALUE > 0)",
)
"""Made in both databases (a domain is read as its base type: 551144e)."""

ARRAYS = ("'{1,NULL,3}'", "'{}'", "NULL", "'{{1,2},{3,NULL}}'", "'[0:1]={7,8}'")
"""Integer arrays: NULL elements, empty, NULL, two dimensions, a lower bound of 0."""

PAIRS = {  # source type, target type, the source's values (one row each)
    "int2-int4": ("smallint", "integer", ("1", "NULL", "-32768")),
    "int4-int8": ("integer", "bigint", ("1", "NULL", "2147483647")),
    "int2-int8": ("smallint", "bigint", ("1", "NULL", "32767")),
    "float4-float8": ("real", "double precision", ("0.1", "NULL", "'NaN'", "'-Infinity'")),
    "int4-numeric": ("integer", "numeric", ("1", "NULL", "-2147483648")),
    "int8-numeric(19)": ("bigint", "numeric(19,0)", ("1", "NULL", "9223372036854775807")),
    "int4[]-int8[]": ("integer[]", "bigint[]", ARRAYS),
    "int2[]-int4[]": ("smallint[]", "integer[]", ARRAYS),
    "float4[]-float8[]": ("real[]", "double precision[]", ("'{0.1,NULL,NaN}'", "'{}'", "NULL")),
    "varchar(5)[]-text[]": ("varchar(5)[]", "text[]", ("'{ab,NULL,\"c d\"}'", "'{}'", "NULL")),
    "int4[]-numeric[]": ("integer[]", "numeric[]", ARRAYS),
    "posint[]-int8[]": ("posint[]", "bigint[]", ("'{1,NULL,3}'", "'{}'", "NULL")),
    "int4[]-pos8[]": ("integer[]", "pos8[]", ("'{1,NULL,3}'", "'{}'", "NULL")),
    "posint-pos8": ("posint", "pos8", ("1", "NULL")),
}
"""Pairs the drift check accepts whose binary formats differ: each failed before."""

SAME_FORMAT = {
    "varchar(5)-text": ("varchar(5)", "text", ("'ab'", "NULL", "'c d '")),
    "numeric(5,2)-numeric(10,2)": ("numeric(5,2)", "numeric(10,2)", ("1.5", "NULL", "-999.99")),
    "numeric(5,2)[]-numeric[]": ("numeric(5,2)[]", "numeric[]", ("'{1.50,NULL}'", "'{}'")),
    "posint[]-posint[]": ("posint[]", "posint[]", ("'{1,NULL,3}'", "'{}'", "NULL")),
}
"""Accepted pairs of one binary format (they loaded before too): kept loading exactly."""

SCD = "valid_from timestamptz NOT NULL, valid_to timestamptz, is_current boolean NOT NULL"
MODES = {"merge": 1, "append": 0, "full_refresh": 1, "scd2": 2}
"""Each mode and its [scd] type (append: no [scd] section)."""


def _job(src: str, dst: str, mode: str) -> str:
    return f"""
name = "widen_{mode}"
mode = "{mode}"
[source]
url = "{src}"
table = "t"
key = ["id"]
[target]
url = "{dst}"
table = "t_{mode}"
{f'[scd]{chr(10)}business_key = ["id"]{chr(10)}type = {MODES[mode]}' if MODES[mode] else ""}
"""


async def _rows(dsn: str, table: str, array: bool, where: str = "") -> list[tuple[Any, ...]]:
    """(id, value, array_dims or None) of each row of ``table``, by id."""
    dims = "array_dims(a)" if array else "NULL"
    conn = await asyncpg.connect(dsn)
    try:
        found = await conn.fetch(f"SELECT id, a, {dims} FROM {table} {where} ORDER BY id")
    finally:
        await conn.close()
    return [tuple(r) for r in found]


def _same(a: Any, b: Any) -> bool:
    """Equal values, NaN equal to NaN, element by element."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b or (a != a and b != b)


async def _check_pair(
    server: str, source_type: str, target_type: str, values: tuple[str, ...]
) -> None:
    """Every mode loads the pair exactly; a change is taken, an unchanged run sees none."""
    async with fresh_database(server) as src, fresh_database(server) as dst:
        for dsn in (src, dst):
            for sql in DOMAINS:
                await fetchval(dsn, sql)
        rows = ", ".join(f"({i}, {v})" for i, v in enumerate(values, 1))
        await fetchval(src, f"CREATE TABLE t (id int PRIMARY KEY, a {source_type})")
        await fetchval(src, f"INSERT INTO t VALUES {rows}")
        for mode in MODES:
            extra = f", {SCD}" if mode == "scd2" else ""
            key = "" if mode == "scd2" else " PRIMARY KEY"
            await fetchval(dst, f"CREATE TABLE t_{mode} (id int{key}, a {target_type}{extra})")
            spec = spec_of(_job(src, dst, mode))
            first = await run_job(spec, options=JobOptions(as_of=at(0)))
            assert (first.status, first.inserted) == ("SUCCEEDED", len(values)), first.error
            current = "WHERE is_current" if mode == "scd2" else ""
            array = target_type.endswith("]")
            want = await _rows(src, "t", array)
            got = await _rows(dst, f"t_{mode}", array, current)
            assert [(i, d) for i, _, d in got] == [(i, d) for i, _, d in want], mode
            assert all(_same(g[1], w[1]) for g, w in zip(got, want, strict=True)), (mode, got)
            if mode in ("merge", "scd2"):  # through staging: one change, then none
                await fetchval(src, "UPDATE t SET a = NULL WHERE id = 1")
                again = await run_job(spec, options=JobOptions(as_of=at(1)))
                rest = await run_job(spec, options=JobOptions(as_of=at(2)))
                await fetchval(src, f"UPDATE t SET a = {values[0]} WHERE id = 1")
                moved = (again.updated + again.inserted, rest.updated + rest.inserted)
                assert (again.status, rest.status, moved) == ("SUCCEEDED", "SUCCEEDED", (1, 0)), (
                    mode,
                    again.error or rest.error,
                )


@pytest.mark.parametrize("pair", list(PAIRS))
async def test_a_widened_target_column_loads_exactly_in_every_mode(
    pg_server_dsn: str, pair: str
) -> None:
    """Merge, append, full refresh and SCD2 into a wider column of another database load it."""
    await _check_pair(pg_server_dsn, *PAIRS[pair])


@pytest.mark.parametrize("pair", list(SAME_FORMAT))
async def test_a_target_column_of_the_same_binary_format_still_loads(
    pg_server_dsn: str, pair: str
) -> None:
    """Pairs whose binary formats match (modifiers or domains only) keep loading exactly."""
    await _check_pair(pg_server_dsn, *SAME_FORMAT[pair])


BOUNDED = (
    "CREATE SCHEMA dw",
    "CREATE TABLE dw.v (id int, c character(3)[], b bit(3)[], " + SCD + ")",
    "CREATE TABLE dw.m (id int PRIMARY KEY, c character(3)[], b bit(3)[])",
)
"""A user's type-2 and type-1 targets with arrays of fixed-length types."""


@pytest.mark.parametrize("target", ["dw.v", "dw.m"])
async def test_a_change_past_the_first_character_of_a_bounded_array_is_taken(
    pg_dsn: str, target: str
) -> None:
    """character(3)[] and bit(3)[] elements compare whole: 'abc' -> 'abd' is a change."""
    for sql in (*BOUNDED, "CREATE TABLE s (id int PRIMARY KEY, c character(3)[], b bit(3)[])",
                "INSERT INTO s VALUES (1, '{abc,NULL}', '{101}'), (2, '{x}', NULL)"):  # fmt: skip
        await fetchval(pg_dsn, sql)
    kind = 2 if target == "dw.v" else 1
    spec = spec_of(
        f'name = "bounded"\nmode = "{"scd2" if kind == 2 else "merge"}"\n[source]\n'
        f'url = "{pg_dsn}"\ntable = "s"\nkey = ["id"]\n[target]\nurl = "{pg_dsn}"\n'
        f'table = "{target}"\n[scd]\nbusiness_key = ["id"]\ntype = {kind}\n'
    )
    first = await run_job(spec, options=JobOptions(as_of=at(0)))
    assert (first.status, first.inserted) == ("SUCCEEDED", 2), first.error
    for change in ("c = '{abd,NULL}'", "b = '{100}'"):
        await fetchval(pg_dsn, f"UPDATE s SET {change} WHERE id = 1")
        again = await run_job(spec, options=JobOptions(as_of=at(1 if "c" in change else 2)))
        # before: 'inserted 0' / 'updated 0', both sides cut to their first character or bit
        assert (again.status, again.updated + again.inserted) == ("SUCCEEDED", 1), (change, again)
    current = " WHERE is_current" if kind == 2 else ""
    held = await fetchval(
        pg_dsn,
        f"SELECT string_agg(format('%s %s %s', id, c, b), '; ' ORDER BY id) FROM {target}{current}",
    )
    assert held == '1 {abd,NULL} {100}; 2 {"x  "} '


@pytest.mark.parametrize(
    ("source_type", "target_type"), [("text", "character(3)"), ("varchar(3)[]", "character(3)[]")]
)
async def test_text_into_a_character_column_stops_in_preflight(
    pg_server_dsn: str, tmp_path: Path, source_type: str, target_type: str
) -> None:
    """Text into character(n) (which drops trailing blanks): exit 2, one line, no run recorded."""
    value = "'ab '" if source_type == "text" else "'{\"ab \"}'"
    async with fresh_database(pg_server_dsn) as src, fresh_database(pg_server_dsn) as dst:
        await fetchval(src, f"CREATE TABLE t (id int PRIMARY KEY, a {source_type})")
        await fetchval(src, f"INSERT INTO t VALUES (1, {value})")
        await fetchval(dst, f"CREATE TABLE t_scd2 (id int, a {target_type}, {SCD})")
        code, out, err = await run_cli(
            "run", str(write(tmp_path, "j.toml", _job(src, dst, "scd2")))
        )
        # before: 'inserted 1', then 'inserted 1, expired 1' at every run ('ab ' against 'ab')
        lines = err.strip().splitlines()
        assert code == 2, (out, err)
        assert len(lines) == 1 and f'column "a" of target t_scd2 is {target_type}' in err, err
        assert "trailing blanks" in err, err
        assert await fetchval(dst, "SELECT count(*) FROM t_scd2") == 0
        assert not await fetchval(dst, "SELECT to_regclass('async_etl_runs') IS NOT NULL")


BLANK_CUT = {  # source type, target type: 'abc  ' would be stored as 'abc'
    "text-varchar(3)": ("text", "varchar(3)"),
    "varchar(5)-varchar(3)": ("varchar(5)", "varchar(3)"),
}
"""Pairs the drift check accepts where varchar(3) would cut a value's excess blanks."""


def _bad_row_job(src: str, dst: str, mode: str, on_bad_row: str) -> str:
    return _job(src, dst, mode).replace('mode = "', f'on_bad_row = "{on_bad_row}"\nmode = "', 1)


@pytest.mark.parametrize("database", ["another", "the same"])
@pytest.mark.parametrize("on_bad_row", ["fail", "reject"])
@pytest.mark.parametrize("pair", list(BLANK_CUT))
async def test_a_value_varchar_would_cut_is_never_stored_changed(
    pg_server_dsn: str, pair: str, on_bad_row: str, database: str
) -> None:
    """'abc  ' into varchar(3), every mode: the chunk fails, or the row is rejected; never 'abc'."""
    await check_blank_cut(pg_server_dsn, pair, on_bad_row, database)


async def check_blank_cut(server: str, pair: str, on_bad_row: str, database: str) -> None:
    """'abc  ' into varchar(3) in every mode fails the run (one line) or is rejected alone."""
    source_type, target_type = BLANK_CUT[pair]
    async with fresh_database(server) as src, fresh_database(server) as other:
        dst = other if database == "another" else src
        await fetchval(src, f"CREATE TABLE t (id int PRIMARY KEY, a {source_type})")
        await fetchval(src, "INSERT INTO t VALUES (1, 'abc  '), (2, 'ab '), (3, NULL)")
        for mode in MODES:
            extra = f", {SCD}" if mode == "scd2" else ""
            key = "" if mode == "scd2" else " PRIMARY KEY"
            await fetchval(dst, f"CREATE TABLE t_{mode} (id int{key}, a {target_type}{extra})")
            spec = spec_of(_bad_row_job(src, dst, mode, on_bad_row))
            got = await run_job(spec, options=JobOptions(as_of=at(0)))
            # before: SUCCEEDED, 'inserted 3', row 1 stored as 'abc' (scd2: a new version per run)
            held = await fetchval(dst, f"SELECT string_agg(format('%s=%L', id, a), ',' "
                                       f"ORDER BY id) FROM t_{mode}")  # fmt: skip
            if on_bad_row == "fail":
                assert got.status == "FAILED" and held is None, (mode, got, held)
                assert "too long for type character varying(3)" in (got.error or ""), mode
                # before: PostgreSQL's line alone, naming neither the job nor the column
                named = f"job widen_{mode}: target "
                assert named in (got.error or ""), (mode, got.error)
                assert 'column "a" (character varying(3) in the target)' in (got.error or "")
            else:
                assert (got.status, got.inserted, got.rejected) == ("SUCCEEDED", 2, 1), mode
                assert held == "2='ab ',3=NULL", (mode, held)
                reason = await fetchval(dst, "SELECT string_agg(reason, '|') FROM async_etl_rejects"
                                             f" WHERE job = 'widen_{mode}'")  # fmt: skip
                assert 'column "a" (character varying(3) in the target)' in reason, reason


@pytest.mark.parametrize("database", ["another", "the same"])
async def test_a_rejected_too_long_value_says_whether_the_target_refuses_it(
    pg_server_dsn: str, database: str
) -> None:
    """'abcdef' into varchar(3), reject mode: its reason says the target refuses it."""
    async with fresh_database(pg_server_dsn) as src, fresh_database(pg_server_dsn) as other:
        dst = other if database == "another" else src
        await fetchval(src, "CREATE TABLE t (id int PRIMARY KEY, a text)")
        await fetchval(src, "INSERT INTO t VALUES (1, 'abcdef'), (2, 'abc  '), (3, 'ab')")
        await fetchval(dst, "CREATE TABLE t_merge (id int PRIMARY KEY, a varchar(3))")
        got = await run_job(spec_of(_bad_row_job(src, dst, "merge", "reject")),
                            options=JobOptions(as_of=at(0)))  # fmt: skip
        assert (got.status, got.inserted, got.rejected) == ("SUCCEEDED", 1, 2), got
        pairs = "SELECT array_agg(ARRAY[key->>'id', reason]) FROM async_etl_rejects"
        reasons = dict(await fetchval(dst, pairs))
        # before: both 'which the target would store with its trailing blanks cut'
        assert "got a value longer than 3 characters, which the target refuses;" in reasons["1"]
        assert "blanks" not in reasons["1"], reasons
        assert "which the target would store with its trailing blanks cut" in reasons["2"]


async def test_a_guarded_key_is_rejected_under_its_own_value(pg_server_dsn: str) -> None:
    """A text key too long for a varchar(3) key column is rejected as the source holds it."""
    async with fresh_database(pg_server_dsn) as src, fresh_database(pg_server_dsn) as dst:
        await fetchval(src, "CREATE TABLE t (id text PRIMARY KEY, a int)")
        await fetchval(src, "INSERT INTO t VALUES ('k1  ', 1), ('k2', 2)")
        await fetchval(dst, "CREATE TABLE t_merge (id varchar(3) PRIMARY KEY, a int)")
        got = await run_job(spec_of(_bad_row_job(src, dst, "merge", "reject")),
                            options=JobOptions(as_of=at(0)))  # fmt: skip
        assert (got.status, got.inserted, got.rejected) == ("SUCCEEDED", 1, 1), got
        key = await fetchval(dst, "SELECT key FROM async_etl_rejects")
        reason = await fetchval(dst, "SELECT reason FROM async_etl_rejects")
        # before: the key recorded as the guard marked it, '"k1 ~"' (3ee641d: 'k1 ~')
        assert '"k1  "' in key, key
        assert 'column "id" (character varying(3) in the target)' in reason, reason


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("source_type", ["text[]", "varchar(5)[]"])
async def test_an_array_varchar_would_cut_stops_in_preflight(
    pg_server_dsn: str, tmp_path: Path, source_type: str, mode: str
) -> None:
    """Text arrays into varchar(3)[] (cuts an element's excess blanks): exit 2, one line."""
    async with fresh_database(pg_server_dsn) as src, fresh_database(pg_server_dsn) as dst:
        await fetchval(src, f"CREATE TABLE t (id int PRIMARY KEY, a {source_type})")
        await fetchval(src, "INSERT INTO t VALUES (1, '{\"abc  \",ab}')")
        extra = f", {SCD}" if mode == "scd2" else ""
        await fetchval(dst, f"CREATE TABLE t_{mode} (id int, a varchar(3)[]{extra})")
        code, out, err = await run_cli("run", str(write(tmp_path, "j.toml", _job(src, dst, mode))))
        # before: SUCCEEDED, exit 0, the target holding {abc,ab}
        assert code == 2, (out, err)
        assert len(err.strip().splitlines()) == 1, err
        assert f'column "a" of target t_{mode} is character varying(3)[]' in err, err
        assert "trailing blanks" in err, err
        assert await fetchval(dst, f"SELECT count(*) FROM t_{mode}") == 0
        assert not await fetchval(dst, "SELECT to_regclass('async_etl_runs') IS NOT NULL")
