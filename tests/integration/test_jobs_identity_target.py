"""A PostgreSQL target whose key is ``GENERATED ALWAYS AS IDENTITY`` takes the source's values.

``COPY`` writes identity columns as given; the ``INSERT ... SELECT`` of the merges, of a copy
within one database and of the initial load did not, and every run into such a target failed
with ``GeneratedAlwaysError``.  They now say ``OVERRIDING SYSTEM VALUE``, as ``COPY`` implies.
"""

from __future__ import annotations

import pytest

from tests.integration.jobs_helpers import fetchval, run_cli

ROWS = 300


async def make_tables(dsn: str) -> None:
    """``src.ident`` (id, v) with ROWS rows; ``dw.ident`` keyed on an identity, empty."""
    for sql in (
        "CREATE SCHEMA IF NOT EXISTS src",
        "CREATE SCHEMA IF NOT EXISTS dw",
        "DROP TABLE IF EXISTS src.ident",
        "CREATE TABLE src.ident (id int PRIMARY KEY, v text)",
        f"INSERT INTO src.ident SELECT g, 'v' || g FROM generate_series(1, {ROWS}) g",
        "DROP TABLE IF EXISTS dw.ident",
        "CREATE TABLE dw.ident (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text)",
    ):
        await fetchval(dsn, sql)


@pytest.mark.parametrize("flags", [
    ["--mode", "merge"],
    ["--mode", "append"],
    ["--mode", "scd2"],
    ["--full-refresh"],
])  # fmt: skip
async def test_a_generated_always_identity_target_takes_the_source_ids(
    pg_dsn: str, flags: list[str]
) -> None:
    """copy into dw.ident (id GENERATED ALWAYS AS IDENTITY) loads every row with its own id."""
    await make_tables(pg_dsn)
    if flags == ["--mode", "scd2"]:
        await fetchval(pg_dsn, "DROP TABLE dw.ident")
        await fetchval(pg_dsn, "CREATE TABLE dw.ident (id int GENERATED ALWAYS AS IDENTITY, "
                               "v text, valid_from timestamptz NOT NULL, valid_to timestamptz, "
                               "is_current boolean NOT NULL)")  # fmt: skip
    code, _, err = await run_cli("copy", "--source", pg_dsn, "--source-table", "src.ident",
                                 "--target", pg_dsn, "--target-table", "dw.ident", "--key", "id",
                                 *flags)  # fmt: skip
    assert code == 0, err
    got = await fetchval(pg_dsn, "SELECT count(*) FROM dw.ident WHERE v = 'v' || id")
    assert got == ROWS
