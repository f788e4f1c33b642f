"""A full refresh keeps what the target is: its SCD type, its history, its definition.

``--full-refresh`` of an SCD2 job rebuilds a type-2 table (every key one current version at
the as-of time), refuses to drop expired versions or to turn a type-2 table into a type-1
one, and on PostgreSQL makes the new table from the existing target's own definition.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import pytest

from async_etl.core.modes import new_table
from async_etl.errors import ConfigError
from async_etl.jobs.api import JobOptions
from async_etl.jobs.runner import run_job
from async_etl.jobs.spec import parse_job
from async_etl.testing.crate import CrateStandIn
from tests.integration.jobs_helpers import (
    at,
    fetchval,
    history,
    job_toml,
    load_source,
    run_cli,
    spec_of,
    table_rows,
    write,
)

META = {"valid_from", "valid_to", "is_current"}


def scd2_toml(name: str, dsn: str, table: str) -> str:
    """An SCD2 job given as ``mode = "scd2"`` with no ``[scd] type``."""
    text = job_toml(name, dsn, table, kind=2, extra='mode = "scd2"')
    return text.replace("type = 2\n", "")


async def column_names(dsn: str, table: str) -> set[str]:
    """The column names of ``schema.table``."""
    schema, _, name = table.partition(".")
    sql = ("SELECT array_agg(column_name::text) FROM information_schema.columns "
           "WHERE table_schema = $1 AND table_name = $2")  # fmt: skip
    found = await fetchval(dsn, sql, schema, name)
    return set(found or ())


async def test_full_refresh_flag_keeps_an_scd2_jobs_type_2_shape(
    pg_dsn: str, tmp_path: Path
) -> None:
    """`run --full-refresh` of a mode = "scd2" job rebuilds type 2; the next run works."""
    first, second, third = history(seed=31, n_keys=300, runs=3)
    path = write(tmp_path, "k2.toml", scd2_toml("k2", pg_dsn, "dw.k2"))
    await load_source(pg_dsn, first)
    code, _, err = await run_cli("run", str(path), "--as-of", at(0).isoformat())
    assert code == 0, err
    await load_source(pg_dsn, second)
    code, _, err = await run_cli("run", str(path), "--full-refresh", "--as-of", at(1).isoformat())
    assert code == 0, err
    assert await column_names(pg_dsn, "dw.k2") >= META
    rows = await table_rows(pg_dsn, "dw.k2")
    assert len(rows) == len(second)
    assert all(r["is_current"] and r["valid_from"] == at(1) for r in rows)
    await load_source(pg_dsn, third)
    code, _, err = await run_cli("run", str(path), "--as-of", at(2).isoformat())
    assert code == 0, err
    assert await fetchval(pg_dsn, "SELECT count(*) FROM dw.k2 WHERE is_current") == len(third)


async def test_copy_scd2_full_refresh_keeps_the_type_2_shape(pg_dsn: str) -> None:
    """`copy --mode scd2 --full-refresh` rebuilds a type-2 table, not a type-1 one."""
    (rows,) = history(seed=32, n_keys=150, runs=1)
    await load_source(pg_dsn, rows)
    base = ["copy", "--source", pg_dsn, "--source-table", "src.t", "--target", pg_dsn,
            "--target-table", "dw.c2", "--key", "a,b", "--mode", "scd2"]  # fmt: skip
    code, _, err = await run_cli(*base)
    assert code == 0, err
    code, _, err = await run_cli(*base, "--full-refresh")
    assert code == 0, err
    assert await column_names(pg_dsn, "dw.c2") >= META
    code, _, err = await run_cli(*base)
    assert code == 0, err


async def test_full_refresh_refuses_to_drop_history(pg_dsn: str, tmp_path: Path) -> None:
    """A full refresh of a type-2 table holding expired versions refuses, table untouched."""
    first, second = history(seed=33, n_keys=300, runs=2)
    path = write(tmp_path, "kh.toml", scd2_toml("kh", pg_dsn, "dw.kh"))
    for day, rows in enumerate((first, second)):
        await load_source(pg_dsn, rows)
        code, _, err = await run_cli("run", str(path), "--as-of", at(day).isoformat())
        assert code == 0, err
    before = await fetchval(pg_dsn, "SELECT count(*) FROM dw.kh WHERE NOT is_current")
    assert before > 0
    code, _, err = await run_cli("run", str(path), "--full-refresh")
    assert code == 2
    assert "expired versions" in err and "Traceback" not in err
    assert await fetchval(pg_dsn, "SELECT count(*) FROM dw.kh WHERE NOT is_current") == before
    assert await fetchval(pg_dsn, "SELECT to_regclass($1)", new_table("dw.kh")) is None


async def test_type_1_full_refresh_refuses_a_type_2_table(pg_dsn: str, tmp_path: Path) -> None:
    """A type-1 full refresh job over an existing type-2 table refuses to rebuild it."""
    (rows,) = history(seed=34, n_keys=150, runs=1)
    await load_source(pg_dsn, rows)
    path = write(tmp_path, "kt.toml", scd2_toml("kt", pg_dsn, "dw.kt"))
    code, _, err = await run_cli("run", str(path))
    assert code == 0, err
    text = job_toml("kt1", pg_dsn, "dw.kt", kind=1, extra='mode = "full_refresh"')
    path = write(tmp_path, "kt1.toml", text.replace('deletes = "delete"', ""))
    code, _, err = await run_cli("run", str(path))
    assert code == 2
    assert "is a type-2 table" in err
    assert await column_names(pg_dsn, "dw.kt") >= META


async def test_initial_build_of_an_scd2_mode_job_has_the_type_2_shape(
    pg_dsn: str, tmp_path: Path
) -> None:
    """The initial load of a mode = "scd2" job into an absent target builds type 2."""
    first, second = history(seed=35, n_keys=300, runs=2)
    path = write(tmp_path, "ki.toml", scd2_toml("ki", pg_dsn, "dw.ki"))
    await load_source(pg_dsn, first)
    code, out, err = await run_cli("run", str(path), "--as-of", at(0).isoformat(),
                                   "--log-format", "json")  # fmt: skip
    assert code == 0, err
    assert "initial_load_into_new_table" in out + err
    assert await column_names(pg_dsn, "dw.ki") >= META
    assert await fetchval(pg_dsn, "SELECT count(*) FROM dw.ki WHERE is_current") == len(first)
    await load_source(pg_dsn, second)
    code, _, err = await run_cli("run", str(path), "--as-of", at(1).isoformat())
    assert code == 0, err
    assert await fetchval(pg_dsn, "SELECT count(*) FROM dw.ki WHERE is_current") == len(second)


DR_DDL = [
    "CREATE SCHEMA IF NOT EXISTS dw",
    "CREATE TABLE dw.dr (id int PRIMARY KEY, a numeric(12,4), b varchar(1), "
    "c smallint CONSTRAINT dr_c_positive CHECK (c >= 0))",
    "CREATE INDEX my_b_idx ON dw.dr (b)",
    "GRANT SELECT ON dw.dr TO PUBLIC",
    "COMMENT ON TABLE dw.dr IS 'the dr table'",
    "COMMENT ON COLUMN dw.dr.a IS 'amount'",
    "INSERT INTO dw.dr VALUES (1, 1.5, 'x', 1), (2, 2.5, 'y', 2)",
]
DEFINITION = """
SELECT (SELECT array_agg(format_type(atttypid, atttypmod) ORDER BY attnum) FROM pg_attribute
        WHERE attrelid = 'dw.dr'::regclass AND attnum > 0 AND NOT attisdropped)::text,
       (SELECT array_agg(indexdef ORDER BY indexname) FROM pg_indexes
        WHERE schemaname = 'dw' AND tablename = 'dr')::text,
       (SELECT array_agg(conname || ' ' || pg_get_constraintdef(oid) ORDER BY conname)
        FROM pg_constraint WHERE conrelid = 'dw.dr'::regclass)::text,
       (SELECT relacl FROM pg_class WHERE oid = 'dw.dr'::regclass)::text,
       obj_description('dw.dr'::regclass, 'pg_class'), col_description('dw.dr'::regclass, 1),
       col_description('dw.dr'::regclass, 2)
"""


def dr_toml(dsn: str, on_bad_row: str) -> str:
    """A type-1 full refresh of src.dr into the hand-made dw.dr."""
    return f"""
name = "dr"
mode = "full_refresh"
on_bad_row = "{on_bad_row}"
[source]
url = "{dsn}"
query = "SELECT id, a, b, c FROM src.dr"
key = ["id"]
[target]
url = "{dsn}"
table = "dw.dr"
[parallel]
chunk_size = 20
min_rows_for_parallel = 10
"""


async def make_dr(dsn: str, source: list[tuple[int, str, str, int]]) -> tuple[Any, ...]:
    """Create dw.dr with its definition and src.dr with ``source``; dw.dr's definition."""
    conn = await asyncpg.connect(dsn)
    try:
        for st in DR_DDL:
            await conn.execute(st)
        await conn.execute("CREATE SCHEMA IF NOT EXISTS src")
        await conn.execute("CREATE TABLE src.dr (id int, a numeric(14,4), b text, c int)")
        await conn.executemany("INSERT INTO src.dr VALUES ($1, $2::numeric, $3, $4)", source)
        return tuple(await conn.fetchrow(DEFINITION))
    finally:
        await conn.close()


async def definition(dsn: str) -> tuple[Any, ...]:
    """dw.dr's column types, indexes, constraints, grants and comments."""
    conn = await asyncpg.connect(dsn)
    try:
        return tuple(await conn.fetchrow(DEFINITION))
    finally:
        await conn.close()


GOOD = [(i, f"{i}.25", "abc"[i % 3], i) for i in range(10, 110)]
BAD = [(200, "123456789.5", "z", 1), (201, "1", "zz", 1), (202, "1", "z", 40000),
       (203, "1", "z", -1)]  # fmt: skip
"""Rows dw.dr refuses: numeric(12,4) overflow, varchar(1) too long, smallint out of range,
the CHECK constraint."""


@pytest.mark.parametrize("on_bad_row", ["fail", "reject"])
async def test_full_refresh_keeps_the_targets_definition(
    pg_dsn: str, tmp_path: Path, on_bad_row: str
) -> None:
    """Types, indexes, constraints, grants and comments of dw.dr survive a full refresh."""
    # The indexes are the target's, no more: its primary key on the business key makes the
    # engine's own unique index (dr_bk) a repeat, which was built beside it.
    before = await make_dr(pg_dsn, GOOD)
    path = write(tmp_path, "dr.toml", dr_toml(pg_dsn, on_bad_row))
    code, _, err = await run_cli("run", str(path))
    assert code == 0, err
    assert await definition(pg_dsn) == before
    assert "my_b_idx" in before[1] and "dr_pkey" in before[2] and "dr_c_positive" in before[2]
    assert await fetchval(pg_dsn, "SELECT count(*) FROM dw.dr") == len(GOOD)
    assert await fetchval(pg_dsn, "SELECT has_table_privilege('public', 'dw.dr', 'SELECT')")


async def make_dr_with(dsn: str, ddl: str) -> tuple[Any, ...]:
    """Make dw.dr (source GOOD) and run ``ddl`` on it; dw.dr's definition then."""
    await make_dr(dsn, GOOD)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(ddl)
    finally:
        await conn.close()
    return await definition(dsn)


async def run_times(tmp_path: Path, toml: str, runs: int) -> None:
    """Run the job ``toml`` ``runs`` times; each must succeed."""
    path = write(tmp_path, "dr.toml", toml)
    for _ in range(runs):  # a second run loads into the table the first one built (or left)
        code, _, err = await run_cli("run", str(path))
        assert code == 0, err


async def dr_indexes_after(dsn: str, tmp_path: Path, ddl: str, toml: str, runs: int) -> Any:
    """Make dw.dr, run ``ddl`` on it, then the job ``toml`` ``runs`` times: dw.dr's indexes."""
    await make_dr_with(dsn, ddl)
    await run_times(tmp_path, toml, runs)
    sql = ("SELECT array_agg(indexname::text ORDER BY indexname) FROM pg_indexes "
           "WHERE schemaname = 'dw' AND tablename = 'dr'")  # fmt: skip
    return await fetchval(dsn, sql)


@pytest.mark.parametrize(
    ("ddl", "runs", "indexes"),
    [
        ("ALTER TABLE dw.dr DROP CONSTRAINT dr_pkey", 2, ["dr_bk", "my_b_idx"]),
        (
            "ALTER TABLE dw.dr DROP CONSTRAINT dr_pkey, ADD PRIMARY KEY (id) DEFERRABLE",
            1,
            ["dr_bk", "dr_pkey", "my_b_idx"],
        ),
        (
            "ALTER TABLE dw.dr DROP CONSTRAINT dr_pkey, ADD PRIMARY KEY (id, b)",
            2,
            ["dr_bk", "dr_pkey", "my_b_idx"],
        ),
        ("CREATE UNIQUE INDEX dr_bk ON dw.dr (id)", 1, ["dr_pkey", "my_b_idx"]),
    ],
    ids=["no-primary-key", "deferrable-key", "wider-key", "repeat-dropped"],
)
async def test_full_refresh_builds_its_key_index_unless_the_target_has_one(
    pg_dsn: str, tmp_path: Path, ddl: str, runs: int, indexes: list[str]
) -> None:
    """dr_bk is built when no index of the target's own can be the key's ON CONFLICT arbiter."""
    toml = dr_toml(pg_dsn, "fail")
    assert await dr_indexes_after(pg_dsn, tmp_path, ddl, toml, runs) == indexes
    assert await fetchval(pg_dsn, "SELECT count(*) FROM dw.dr") == len(GOOD)


DEFERRABLE_DDL = (
    "ALTER TABLE dw.dr DROP CONSTRAINT dr_pkey, ADD PRIMARY KEY (id) DEFERRABLE, "
    "ADD CONSTRAINT dr_b_id UNIQUE (b, id) DEFERRABLE INITIALLY DEFERRED"
)


async def test_full_refresh_keeps_deferrable_constraints(pg_dsn: str, tmp_path: Path) -> None:
    """A deferrable primary key and an initially deferred unique constraint stay so."""
    before = await make_dr_with(pg_dsn, DEFERRABLE_DDL)
    assert "dr_b_id UNIQUE (b, id) DEFERRABLE INITIALLY DEFERRED" in before[2]
    assert "dr_pkey PRIMARY KEY (id) DEFERRABLE" in before[2]
    await run_times(tmp_path, dr_toml(pg_dsn, "fail"), 2)
    assert (await definition(pg_dsn))[2] == before[2]  # each pg_get_constraintdef
    assert await fetchval(pg_dsn, "SELECT count(*) FROM dw.dr") == len(GOOD)


async def test_full_refresh_rejecting_rows_refuses_a_deferrable_key(
    pg_dsn: str, tmp_path: Path
) -> None:
    """on_bad_row = "reject" over a deferrable key: one line, nothing loaded or dropped."""
    before = await make_dr_with(pg_dsn, DEFERRABLE_DDL)
    path = write(tmp_path, "dr.toml", dr_toml(pg_dsn, "reject"))
    code, out, err = await run_cli("run", str(path))
    assert code != 0
    assert "dr_pkey on the business key is DEFERRABLE" in out + err
    assert "Traceback" not in out + err
    assert await definition(pg_dsn) == before
    assert await fetchval(pg_dsn, "SELECT count(*) FROM dw.dr") == 2
    assert await fetchval(pg_dsn, f"SELECT to_regclass('{new_table('dw.dr')}') IS NULL")


async def test_full_refresh_rejects_rows_the_target_refuses(pg_dsn: str, tmp_path: Path) -> None:
    """With on_bad_row = "reject", rows dw.dr's types / CHECK refuse are rejected, not loaded."""
    before = await make_dr(pg_dsn, GOOD + BAD)
    path = write(tmp_path, "dr.toml", dr_toml(pg_dsn, "reject"))
    code, _, err = await run_cli("run", str(path))
    assert code in (0, 3), err
    assert await definition(pg_dsn) == before
    assert await fetchval(pg_dsn, "SELECT count(*) FROM dw.dr") == len(GOOD)
    assert await fetchval(pg_dsn, "SELECT count(*) FROM dw.dr WHERE id >= 200") == 0
    assert await fetchval(pg_dsn, "SELECT count(*) FROM async_etl_rejects") == len(BAD)


async def test_full_refresh_fails_on_a_row_the_target_refuses(pg_dsn: str, tmp_path: Path) -> None:
    """With on_bad_row = "fail", a row dw.dr refuses fails the run; the old table stays."""
    before = await make_dr(pg_dsn, GOOD + BAD[:1])
    path = write(tmp_path, "dr.toml", dr_toml(pg_dsn, "fail"))
    code, _, err = await run_cli("run", str(path))
    assert code != 0
    assert "Traceback" not in err and "numeric" in err
    assert await definition(pg_dsn) == before
    assert await fetchval(pg_dsn, "SELECT array_agg(id ORDER BY id) FROM dw.dr") == [1, 2]


async def test_full_refresh_refuses_a_target_a_view_depends_on(pg_dsn: str, tmp_path: Path) -> None:
    """A view on dw.dr would be lost by the drop-and-rename: the run refuses in one line."""
    await make_dr(pg_dsn, GOOD)
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("CREATE VIEW dw.dr_v AS SELECT id, b FROM dw.dr")
    finally:
        await conn.close()
    path = write(tmp_path, "dr.toml", dr_toml(pg_dsn, "fail"))
    code, _, err = await run_cli("run", str(path))
    assert code == 2
    assert "view dw.dr_v depends on it" in err and "Traceback" not in err
    assert await fetchval(pg_dsn, "SELECT count(*) FROM dw.dr") == 2
    assert await fetchval(pg_dsn, "SELECT to_regclass($1)", new_table("dw.dr")) is None


async def refresh_dr_with_n(dsn: str, tmp_path: Path, *ddl: str) -> None:
    """Make dw.dr, run ``ddl`` on it, then full-refresh it from src.dr plus ``id AS n``."""
    await make_dr(dsn, GOOD)
    conn = await asyncpg.connect(dsn)
    try:
        for st in ddl:
            await conn.execute(st)
    finally:
        await conn.close()
    text = dr_toml(dsn, "fail").replace("SELECT id, a, b, c FROM src.dr",
                                        "SELECT id, a, b, c, id AS n FROM src.dr")  # fmt: skip
    code, _, err = await run_cli("run", str(write(tmp_path, "dr.toml", text)))
    assert code == 0, err


async def test_full_refresh_keeps_serial_foreign_key_and_column_grant(
    pg_dsn: str, tmp_path: Path
) -> None:
    """A serial default's sequence, a foreign key out and a column grant survive the swap."""
    await refresh_dr_with_n(
        pg_dsn,
        tmp_path,
        "CREATE TABLE dw.kinds (b varchar(1) PRIMARY KEY)",
        "INSERT INTO dw.kinds VALUES ('a'), ('b'), ('c'), ('x'), ('y')",
        "ALTER TABLE dw.dr ADD CONSTRAINT dr_b_fk FOREIGN KEY (b) REFERENCES dw.kinds (b)",
        "ALTER TABLE dw.dr ADD COLUMN n serial",
        "GRANT UPDATE (a) ON dw.dr TO PUBLIC",
        "SELECT setval('dw.dr_n_seq', 500)",
    )
    fk = await fetchval(pg_dsn, "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                        "WHERE conname = 'dr_b_fk' AND conrelid = 'dw.dr'::regclass")  # fmt: skip
    assert fk == "FOREIGN KEY (b) REFERENCES dw.kinds(b)"
    owner = await fetchval(pg_dsn, "SELECT pg_get_serial_sequence('dw.dr', 'n')")
    assert owner == "dw.dr_n_seq"
    assert await fetchval(pg_dsn, "SELECT nextval('dw.dr_n_seq')") == 501
    assert await fetchval(pg_dsn, "SELECT has_column_privilege('public', 'dw.dr', 'a', 'UPDATE')")


async def test_full_refresh_keeps_an_identity_columns_position(pg_dsn: str, tmp_path: Path) -> None:
    """An identity column's next value continues after the target's, not from its start."""
    await refresh_dr_with_n(
        pg_dsn,
        tmp_path,
        "ALTER TABLE dw.dr ADD COLUMN n int GENERATED BY DEFAULT AS IDENTITY",
        "SELECT setval(pg_get_serial_sequence('dw.dr', 'n'), 500)",
    )
    got = await fetchval(pg_dsn, "SELECT attidentity::text FROM pg_attribute "
                         "WHERE attrelid = 'dw.dr'::regclass AND attname = 'n'")  # fmt: skip
    assert got == "d"
    seq = await fetchval(pg_dsn, "SELECT pg_get_serial_sequence('dw.dr', 'n')")
    assert await fetchval(pg_dsn, "SELECT nextval($1)", seq) == 501


async def test_crate_full_refresh_refuses_to_drop_history(pg_dsn: str) -> None:
    """CrateDB stand-in: a type-2 table with expired versions is not rebuilt; one without is."""
    first, second = history(seed=36, n_keys=150, runs=2)
    async with CrateStandIn() as crate:
        text = scd2_toml("kc", pg_dsn, "dw.kc").replace(
            f'url = "{pg_dsn}"\ntable', f'url = "{crate.url}"\ntable'
        )
        spec = spec_of(text + f'\n[state]\nurl = "{pg_dsn}"\n')
        refresh = parse_job(text + f'\n[state]\nurl = "{pg_dsn}"\n', env={},
                            overrides=["mode=full_refresh"])  # fmt: skip
        assert (refresh.mode, refresh.scd.type) == ("full_refresh", 2)
        await load_source(pg_dsn, first)
        assert (await run_job(spec, options=JobOptions(as_of=at(0)))).status == "SUCCEEDED"
        result = await run_job(refresh, options=JobOptions(as_of=at(1)))
        assert result.status == "SUCCEEDED", result.error
        await load_source(pg_dsn, second)
        assert (await run_job(spec, options=JobOptions(as_of=at(2)))).status == "SUCCEEDED"
        with pytest.raises(ConfigError, match="holds expired versions"):
            await run_job(refresh, options=JobOptions(as_of=at(3)))


@pytest.mark.parametrize(
    ("ddl", "indexes"),
    [
        ("SELECT 1", ["dr_pkey", "my_b_idx"]),
        ("ALTER TABLE dw.dr DROP CONSTRAINT dr_pkey", ["dr_bk", "my_b_idx"]),
        (
            "ALTER TABLE dw.dr DROP CONSTRAINT dr_pkey, ADD PRIMARY KEY (id, b)",
            ["dr_bk", "dr_pkey", "my_b_idx"],
        ),
        ("CREATE UNIQUE INDEX dr_bk ON dw.dr (id)", ["dr_pkey", "my_b_idx"]),
        ("CREATE UNIQUE INDEX dr_bk ON dw.dr (id) WHERE c > 0", ["dr_bk", "dr_pkey", "my_b_idx"]),
        ("CREATE UNIQUE INDEX dr_bk ON dw.dr (id) INCLUDE (b)", ["dr_bk", "dr_pkey", "my_b_idx"]),
        ("ALTER TABLE dw.dr ADD CONSTRAINT dr_bk UNIQUE (id)", ["dr_bk", "dr_pkey", "my_b_idx"]),
        ("CREATE UNIQUE INDEX my_id ON dw.dr (id)", ["dr_pkey", "my_b_idx", "my_id"]),
    ],
    ids=[
        "key-primary-key",
        "no-primary-key",
        "wider-key",
        "engine-repeat-dropped",
        "partial-kept",
        "include-kept",
        "constraint-kept",
        "users-repeat-kept",
    ],
)
async def test_merge_builds_its_key_index_unless_the_target_has_one(
    pg_dsn: str, tmp_path: Path, ddl: str, indexes: list[str]
) -> None:
    """A merge builds dr_bk only without an own arbiter; drops only an engine-made one beside it."""
    # An engine-made dr_bk beside the primary key (an earlier run's) is dropped; an index or
    # constraint by that name that is not exactly the engine's, or the user's own repeat, stays.
    toml = dr_toml(pg_dsn, "fail").replace("full_refresh", "merge")
    assert await dr_indexes_after(pg_dsn, tmp_path, ddl, toml, 2) == indexes
    assert await fetchval(pg_dsn, "SELECT count(*) FROM dw.dr") == len(GOOD) + 2


async def test_merge_refuses_a_deferrable_key_before_writing(pg_dsn: str, tmp_path: Path) -> None:
    """A type-1 merge into dw.dr with a DEFERRABLE key: one line, dw.dr untouched, exit 2."""
    before = await make_dr_with(pg_dsn, DEFERRABLE_DDL)
    toml = dr_toml(pg_dsn, "fail").replace("full_refresh", "merge")
    code, out, err = await run_cli("run", str(write(tmp_path, "dr.toml", toml)))
    assert code == 2, out + err
    assert "dr_pkey on the business key is DEFERRABLE, which a merge" in err
    assert "Traceback" not in out + err and "ON CONFLICT does not support" not in out + err
    assert await definition(pg_dsn) == before
    assert await fetchval(pg_dsn, "SELECT count(*) FROM dw.dr") == 2
