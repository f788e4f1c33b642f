"""A full refresh keeps what the target is: its SCD type and its history.

``--full-refresh`` of an SCD2 job rebuilds a type-2 table (every key one current version at
the as-of time), refuses to drop expired versions or to turn a type-2 table into a type-1
one.
"""

from __future__ import annotations

from pathlib import Path

from async_etl.core.modes import new_table
from tests.integration.jobs_helpers import (
    at,
    fetchval,
    history,
    job_toml,
    load_source,
    run_cli,
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
