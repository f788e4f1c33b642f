"""Incremental runs with `schema_evolution = "add_columns"`: the run that adds a column reads
every source row, so no row keeps NULL in it below the cursor."""

from __future__ import annotations

import pytest

from async_etl.testing.crate import CrateStandIn
from tests.integration.jobs_helpers import table_rows
from tests.integration.test_jobs_crate import crate_rows
from tests.integration.test_jobs_incremental import execute, inc_toml, make_source, run

EVOLVE = 'schema_evolution = "add_columns"\n'


def _job(name: str, dsn: str, kind: int, target: str | None = None) -> str:
    """An incremental job adding new source columns; type 2 tracks every column."""
    text = inc_toml(name, dsn, kind=kind, target=target).replace('\ntracked = ["val"]', "")
    return text.replace(f'table = "dw.{name}"', f'table = "dw.{name}"\n' + EVOLVE)


async def _emails(dsn: str, table: str, kind: int) -> dict[int, str | None]:
    """id -> email of the target's current rows."""
    rows = await table_rows(dsn, table)
    return {r["id"]: r["email"] for r in rows if kind == 1 or r["is_current"]}


@pytest.mark.parametrize("kind", [1, 2])
async def test_a_run_adding_a_column_loads_it_for_rows_below_the_cursor(
    pg_dsn: str, kind: int
) -> None:
    """PostgreSQL target: after ADD COLUMN, every current row holds the source's value."""
    await make_source(pg_dsn, 90)
    text = _job("evo", pg_dsn, kind)
    first = await run(text, 0)
    assert first.rows_read == 90
    await execute(
        pg_dsn,
        "ALTER TABLE src.ev ADD COLUMN email text",
        "UPDATE src.ev SET email = 'e' || id",
        "INSERT INTO src.ev VALUES (91, 'new', 91, 'e91')",
    )
    second = await run(text, 1)
    assert second.rows_read == 91
    assert await _emails(pg_dsn, "dw.evo", kind) == {i: f"e{i}" for i in range(1, 92)}
    third = await run(text, 2)
    assert third.rows_read == 1 and (third.inserted, third.updated, third.expired) == (0, 0, 0)


async def test_crate_target_run_adding_a_column_loads_it_for_every_row(pg_dsn: str) -> None:
    """CrateDB target (stand-in), type 2: the added column is filled on every current version."""
    await make_source(pg_dsn, 60)
    async with CrateStandIn() as crate:
        text = _job("evc", pg_dsn, 2, target=crate.url)
        await run(text, 0)
        await execute(
            pg_dsn,
            "ALTER TABLE src.ev ADD COLUMN email text",
            "UPDATE src.ev SET email = 'e' || id",
        )
        second = await run(text, 1)
        assert second.rows_read == 60
        rows = await crate_rows(crate.url, "dw.evc")
    got = {r["id"]: r["email"] for r in rows if r["is_current"]}
    assert got == {i: f"e{i}" for i in range(1, 61)}
