"""Change detection for column types without a usable ``=`` (json, xml, geometry, arrays, ...)."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from async_etl.jobs.api import JobOptions
from async_etl.jobs.runner import run_job
from async_etl.testing.crate import CrateStandIn, StandInConfig
from async_etl.testing.databases import fresh_database
from tests.integration.jobs_helpers import at, fetchval, run_cli, spec_of, write

COLUMNS = {
    "j": "json",
    "jb": "jsonb",
    "x": "xml",
    "p": "point",
    "bx": "box",
    "poly": "polygon",
    "c": "circle",
    "ln": "line",
    "ls": "lseg",
    "pa": "path",
    "ja": "json[]",
    "pts": "point[]",
    "comp": "src.pair",
    "comps": "src.pair[]",
    "f": "double precision",
    "fa": "double precision[]",
    "iv": "interval",
}

ROW = (
    "'{\"t\": 1}', '{\"t\": 1}', '<a>1</a>', '(1,2)', '((0,0),(2,2))', '((0,0),(1,0),(1,1))', "
    "'<(0,0),1>', '{1,-1,0}', '[(0,0),(1,1)]', '[(0,0),(1,1)]', ARRAY['{\"a\": 1}']::json[], "
    "ARRAY['(1,2)']::point[], ROW('{\"k\": 1}', '(1,2)')::src.pair, "
    "ARRAY[ROW('{\"k\": 1}', '(1,2)')::src.pair], 'NaN', ARRAY['NaN', 1.5]::float8[], '1 day'"
)

CHANGES = {
    "j": "'{\"t\":1}'",  # whitespace only: json keeps its text, so this is a change
    "jb": "'{\"t\": 2}'",
    "x": "'<a>2</a>'",
    "p": "'(1,3)'",
    "bx": "'((0,0),(1,4))'",  # same area: box = box would call it equal
    "poly": "'((0,0),(2,0),(1,1))'",
    "c": "'<(1,1),1>'",  # same area
    "ln": "'{1,-1,1}'",
    "ls": "'[(0,0),(2,2)]'",
    "pa": "'[(0,0),(2,2)]'",  # same number of points: path = path would call it equal
    "ja": "ARRAY['{\"a\": 2}']::json[]",
    "pts": "ARRAY['(1,2)', '(0,0)']::point[]",
    "comp": "ROW('{\"k\": 2}', '(1,2)')::src.pair",
    "comps": "ARRAY[ROW('{\"k\": 1}', '(1,3)')::src.pair]",
    "f": "1.0000000000000002",  # differs from 1.0 only in the last bit
    "fa": "ARRAY['NaN', 2.5]::float8[]",
    "iv": "'24 hours'",  # interval = interval calls '1 day' and '24 hours' equal
}

KEYS = 40


def _job(dsn: str, kind: int, target: str = "", columns: tuple[str, ...] = tuple(COLUMNS)) -> str:
    """A job over ``columns`` of ``src.w`` into ``dw.w<kind>`` of ``target`` (default: source's)."""
    state = f'[state]\nurl = "{dsn}"' if target else ""
    scd = "type = 2" if kind == 2 else 'type = 1\ndeletes = "delete"'
    return f"""
name = "types{kind}"
[source]
url = "{dsn}"
query = "SELECT id, {", ".join(columns)} FROM src.w"
key = ["id"]
[target]
url = "{target or dsn}"
table = "dw.w{kind}"
[scd]
business_key = ["id"]
{scd}
[parallel]
chunk_size = 15
min_rows_for_parallel = 0
{state}
"""


async def _load(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE SCHEMA src; CREATE TYPE src.pair AS (j json, p point)")
        defs = ", ".join(f"{n} {t}" for n, t in COLUMNS.items())
        await conn.execute(f"CREATE TABLE src.w (id int PRIMARY KEY, {defs})")
        await conn.execute(
            f"INSERT INTO src.w SELECT i, {ROW} FROM generate_series(1, {KEYS}) AS i"
        )
        await conn.execute("UPDATE src.w SET f = 1.0 WHERE id % 2 = 0")
    finally:
        await conn.close()


async def _change(dsn: str, columns: tuple[str, ...] = tuple(COLUMNS)) -> dict[str, int]:
    """Change one column of one key per type; which key got which column."""
    changed = {name: 1 + 2 * i for i, name in enumerate(columns)}  # odd keys: f is NaN there
    if "f" in changed:
        changed["f"] = 2  # an even key, f = 1.0
    conn = await asyncpg.connect(dsn)
    try:
        for name, key in changed.items():
            await conn.execute(f"UPDATE src.w SET {name} = {CHANGES[name]} WHERE id = $1", key)
    finally:
        await conn.close()
    return changed


async def _mismatches(dsn: str, table: str, kind: int) -> list[int]:
    """Keys whose current target row's text differs from the source row's text."""
    names = ", ".join(COLUMNS)
    current = "WHERE t.is_current" if kind == 2 else ""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            f"SELECT coalesce(s.id, t.id) FROM (SELECT id, ROW({names})::text AS v FROM src.w) s "
            f"FULL JOIN (SELECT id, ROW({names})::text AS v FROM {table} AS t {current}) t "
            "ON s.id = t.id WHERE s.v IS DISTINCT FROM t.v"
        )
    finally:
        await conn.close()
    return sorted(r[0] for r in rows)


@pytest.mark.parametrize("kind", [2, 1])
async def test_every_column_type_detects_changes_and_rests(pg_dsn: str, kind: int) -> None:
    """json/xml/geometry/arrays/composites/NaN: an unchanged re-run writes nothing; changes land."""
    await _load(pg_dsn)
    spec = spec_of(_job(pg_dsn, kind))
    first = await run_job(spec, options=JobOptions(as_of=at(0)))
    assert first.status == "SUCCEEDED", first.error
    assert (first.inserted, first.chunks_total > 1) == (KEYS, True)
    again = await run_job(spec, options=JobOptions(as_of=at(1)))
    assert again.status == "SUCCEEDED", again.error
    assert (again.inserted, again.updated, again.expired, again.deleted) == (0, 0, 0, 0)
    changed = await _change(pg_dsn)
    third = await run_job(spec, options=JobOptions(as_of=at(2)))
    assert third.status == "SUCCEEDED", third.error
    n = len(set(changed.values()))
    if kind == 2:
        assert (third.inserted, third.updated, third.expired, third.deleted) == (n, 0, n, 0)
    else:
        assert (third.inserted, third.updated, third.expired, third.deleted) == (0, n, 0, 0)
    assert await _mismatches(pg_dsn, f"dw.w{kind}", kind) == []
    rest = await run_job(spec, options=JobOptions(as_of=at(3)))
    assert (rest.inserted, rest.updated, rest.expired, rest.deleted) == (0, 0, 0, 0)


CRATE_COLUMNS = tuple(c for c in COLUMNS if c not in ("f", "fa"))
"""NaN does not reach CrateDB (JSON has no NaN: such rows are rejected).  Intervals travel as
PostgreSQL's text, so '24 hours' and '1 day' are told apart there too."""


@pytest.mark.parametrize("kind", [2, 1])
async def test_crate_target_detects_changes_and_rests(pg_dsn: str, kind: int) -> None:
    """CrateDB target: json, xml, geometry, arrays, composites: re-run rests, changes land."""
    await _load(pg_dsn)
    async with CrateStandIn(StandInConfig()) as crate:
        spec = spec_of(_job(pg_dsn, kind, crate.url, CRATE_COLUMNS))
        first = await run_job(spec, options=JobOptions(as_of=at(0)))
        assert (first.status, first.error, first.inserted) == ("SUCCEEDED", None, KEYS)
        again = await run_job(spec, options=JobOptions(as_of=at(1)))
        assert again.status == "SUCCEEDED", again.error
        assert (again.inserted, again.updated, again.expired, again.deleted) == (0, 0, 0, 0)
        n = len(set((await _change(pg_dsn, CRATE_COLUMNS)).values()))
        third = await run_job(spec, options=JobOptions(as_of=at(2)))
        assert third.status == "SUCCEEDED", third.error
        counts = (third.inserted, third.updated, third.expired, third.deleted)
        assert counts == ((n, 0, n, 0) if kind == 2 else (0, n, 0, 0))
        rest = await run_job(spec, options=JobOptions(as_of=at(3)))
        assert (rest.inserted, rest.updated, rest.expired, rest.deleted) == (0, 0, 0, 0)


@pytest.mark.parametrize("key", ["j", "p", "pts", "x"])
async def test_key_without_equality_is_refused_before_anything(
    pg_dsn: str, tmp_path: Path, key: str
) -> None:
    """A json / point / point[] / xml key: exit 2, one line naming it, no table, no run."""
    await _load(pg_dsn)
    text = _job(pg_dsn, 2).replace('key = ["id"]', f'key = ["{key}"]')
    text = text.replace('business_key = ["id"]', f'business_key = ["{key}"]')
    code, out, err = await run_cli("run", str(write(tmp_path, "job.toml", text)))
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert f"[source] key: column {key} has type {COLUMNS[key]}" in lines[0]
    tables = await fetchval(
        pg_dsn,
        "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', "
        "'information_schema', 'src')",
    )
    assert tables == 0


DOMAIN_SETUP = (
    "CREATE DOMAIN posint AS int CHECK (VALUE > 0)",
    "CREATE DOMAIN small AS posint CHECK (VALUE < 100)",
    "CREATE SCHEMA dw",
    "CREATE TABLE dom (id int PRIMARY KEY, p posint, q small)",
    "INSERT INTO dom VALUES (1, 5, 6), (2, NULL, NULL)",
    "CREATE TABLE dw.mine (id int, p posint, q small, valid_from timestamptz NOT NULL, "
    "valid_to timestamptz, is_current boolean NOT NULL)",
)
"""A source with a domain column and a domain over it; a type-2 target of the user's with them."""


def _domain_job(dsn: str, target: str, table: str) -> str:
    return f"""
name = "dom_{table.replace(".", "_")}"
[source]
url = "{dsn}"
query = "SELECT id, p, q FROM dom"
key = ["id"]
[target]
url = "{target}"
table = "{table}"
[scd]
type = 2
[state]
url = "{dsn}"
"""


async def test_domain_columns_load_as_their_base_type_and_rest(pg_dsn: str) -> None:
    """A domain (and a domain over it) is its base type: no change seen on an unchanged run."""
    for sql in DOMAIN_SETUP:
        await fetchval(pg_dsn, sql)
    async with CrateStandIn(StandInConfig()) as crate:
        for target, table in ((crate.url, "dw.dom"), (pg_dsn, "dw.dom"), (pg_dsn, "dw.mine")):
            spec = spec_of(_domain_job(pg_dsn, target, table))
            first = await run_job(spec, options=JobOptions(as_of=at(0)))
            again = await run_job(spec, options=JobOptions(as_of=at(1)))
            assert (first.status, first.inserted) == ("SUCCEEDED", 2), (table, first.error)
            # before: CrateDB stored p as TEXT '5' and every run saw 5 <> '5' (inserted 1,
            # expired 1); a new PostgreSQL table was made with the domain's name as its type
            assert (again.status, again.inserted, again.expired) == ("SUCCEEDED", 0, 0), (
                target,
                table,
                again.error,
            )
    types = await fetchval(
        pg_dsn,
        "SELECT string_agg(format_type(atttypid, atttypmod), ',' ORDER BY attnum) "
        "FROM pg_attribute WHERE attrelid = 'dw.dom'::regclass AND attname IN ('p', 'q')",
    )
    assert types == "integer,integer"


DOMAIN_ARRAYS = (
    "CREATE DOMAIN posint AS int CHECK (VALUE > 0)",
    "CREATE DOMAIN code AS varchar(20)",
    "CREATE TABLE doma (id int PRIMARY KEY, pa posint[], ca code[])",
    "INSERT INTO doma VALUES (1, '{5,6}', '{a,b}'), (2, NULL, '{}')",
)
"""A source whose columns are arrays of domains."""


async def test_arrays_of_domains_load_as_arrays_of_their_base_type(
    pg_dsn: str, pg_server_dsn: str
) -> None:
    """``posint[]`` is ``integer[]``: another database's new table, no change seen on CrateDB."""
    for sql in DOMAIN_ARRAYS:
        await fetchval(pg_dsn, sql)
    async with CrateStandIn(StandInConfig()) as crate, fresh_database(pg_server_dsn) as other:
        for i, target in enumerate((crate.url, other)):
            text = _domain_job(pg_dsn, target, "dw.doma").replace(
                "p, q FROM dom", "pa, ca FROM doma"
            )
            text = text.replace('name = "dom_dw_doma"', f'name = "doma_{i}"')
            spec = spec_of(text)
            first = await run_job(spec, options=JobOptions(as_of=at(0)))
            again = await run_job(spec, options=JobOptions(as_of=at(1)))
            # before: 'type "posint[]" does not exist' making the new PostgreSQL table; CrateDB
            # stored them as text arrays and every run saw each row changed (inserted 2, expired 2)
            assert (first.status, first.inserted) == ("SUCCEEDED", 2), (target, first.error)
            assert (again.status, again.inserted, again.expired) == ("SUCCEEDED", 0, 0), (
                target,
                again.error,
            )
        types = await fetchval(
            other,
            "SELECT string_agg(format_type(atttypid, atttypmod), ',' ORDER BY attnum) "
            "FROM pg_attribute WHERE attrelid = 'dw.doma'::regclass AND attname IN ('pa', 'ca')",
        )
    assert types == "integer[],character varying(20)[]"


DOMAIN_TARGETS = (
    "CREATE DOMAIN posint AS int CHECK (VALUE > 0)",
    "CREATE SCHEMA dw",
    "CREATE TABLE dw.v (id int, p posint, r posint[], "
    "valid_from timestamptz NOT NULL, valid_to timestamptz, is_current boolean NOT NULL)",
    "CREATE TABLE dw.m (id int PRIMARY KEY, p posint, r posint[])",
)
"""A user's type-2 and type-1 targets with posint and posint[] columns."""


async def test_existing_targets_with_domain_arrays_take_changes(pg_server_dsn: str) -> None:
    """SCD2 and merge into a user's posint and posint[] columns take one change."""
    async with fresh_database(pg_server_dsn) as src, fresh_database(pg_server_dsn) as other:
        for sql in (*DOMAIN_TARGETS[:1], "CREATE TABLE s (id int PRIMARY KEY, p posint, "
                    "r posint[])", "INSERT INTO s VALUES (1, 5, '{1,2}'), "
                    "(2, NULL, NULL)"):  # fmt: skip
            await fetchval(src, sql)
        for i, dsn in enumerate((src, other)):  # the same database, another one
            for sql in DOMAIN_TARGETS[1:] if dsn == src else DOMAIN_TARGETS:
                await fetchval(dsn, sql)
            for table, scd in (("dw.v", "type = 2"), ("dw.m", "type = 1")):
                text = _domain_job(src, dsn, table).replace("p, q FROM dom", "p, r FROM s")
                text = text.replace("type = 2", scd).replace('name = "dom_', f'name = "d{i}_')
                spec = spec_of(text)
                first = await run_job(spec, options=JobOptions(as_of=at(0)))
                assert (first.status, first.inserted) == ("SUCCEEDED", 2), (dsn, table, first.error)
                await fetchval(src, "UPDATE s SET r = '{1,2,3}' WHERE id = 1")
                again = await run_job(spec, options=JobOptions(as_of=at(1)))
                await fetchval(src, "UPDATE s SET r = '{1,2}' WHERE id = 1")
                # before: 'operator does not exist: posint[] = integer[]' (type 2), the run FAILED
                changed = (again.inserted, again.expired) if scd == "type = 2" else (again.updated,)
                assert (again.status, *changed) == (
                    ("SUCCEEDED", 1, 1) if scd == "type = 2" else ("SUCCEEDED", 1)
                ), (dsn, table, again.error)
            versions = await fetchval(
                dsn,
                "SELECT string_agg(format('%s %s %s', id, r, is_current), '; ' "
                "ORDER BY id, valid_from) FROM dw.v",
            )
            assert versions == "1 {1,2} f; 1 {1,2,3} t; 2  t"
            merged = await fetchval(
                dsn, "SELECT string_agg(format('%s %s %s', id, p, r), '; ' ORDER BY id) FROM dw.m"
            )
            assert merged == "1 5 {1,2,3}; 2  "


async def test_integers_in_crate_text_columns_rest(pg_dsn: str) -> None:
    """An oid column (TEXT in CrateDB): an unchanged run sees no change."""
    for sql in (
        "CREATE TABLE dom (id int PRIMARY KEY, o oid, r oid[])",
        "INSERT INTO dom VALUES (1, 123, '{7,8}'), (2, NULL, NULL)",
    ):
        await fetchval(pg_dsn, sql)
    async with CrateStandIn(StandInConfig()) as crate:
        spec = spec_of(_domain_job(pg_dsn, crate.url, "dw.ints").replace("p, q", "o, r"))
        first = await run_job(spec, options=JobOptions(as_of=at(0)))
        again = await run_job(spec, options=JobOptions(as_of=at(1)))
    assert (first.status, first.inserted) == ("SUCCEEDED", 2), first.error
    # before: 123 and [7, 8] were compared with the '123' and ['7', '8'] CrateDB read back
    assert (again.status, again.inserted, again.expired) == ("SUCCEEDED", 0, 0), again.error
