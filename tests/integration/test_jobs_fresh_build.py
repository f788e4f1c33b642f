"""Loads into a fresh PostgreSQL table whose unique indexes are built after the load.

A full refresh with ``on_bad_row = "fail"`` COPYs every chunk straight into its new table,
which has no unique index yet, and builds the indexes in the swap's transaction.  These tests
hold that path to the path with the indexes in place from the start (``on_bad_row =
"reject"``): the same rows, the same indexes, a duplicated key refused with the old table kept.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from async_etl.core.modes import new_table
from async_etl.errors import ErrorKind
from async_etl.jobs.api import JobOptions
from async_etl.jobs.runner import run_job
from tests.integration.jobs_helpers import (
    at,
    cols_of,
    fetchval,
    history,
    job_toml,
    load_source,
    norm,
    spec_of,
    table_rows,
)


def refresh_toml(name: str, dsn: str, table: str, kind: int, on_bad_row: str) -> str:
    """A full refresh job file of SCD ``kind`` shape with ``on_bad_row``."""
    extra = f'mode = "full_refresh"\non_bad_row = "{on_bad_row}"'
    text = job_toml(name, dsn, table, kind=kind, extra=extra, chunk_size=70, workers=2)
    return text.replace('deletes = "delete"', "") if kind == 1 else text


async def indexes(dsn: str, table: str) -> list[str]:
    """The index definitions of ``schema.table``, sorted."""
    schema, _, name = table.partition(".")
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = $2",
            schema,
            name,
        )
    finally:
        await conn.close()
    return sorted(str(r[0]).replace(f" {table} ", " T ").replace(name, "T") for r in rows)


@pytest.mark.parametrize("kind", [2, 1])
async def test_indexes_after_load_equal_indexes_during_load(pg_dsn: str, kind: int) -> None:
    """Row for row and index for index, the deferred-index path equals the indexed one."""
    old, new = history(seed=31, n_keys=1200, runs=2)
    cols = cols_of(kind)
    got: dict[str, list[tuple[Any, ...]]] = {}
    for mode in ("fail", "reject"):
        table = f"dw.fb_{mode}"
        spec = spec_of(refresh_toml(f"fb_{mode}_{kind}", pg_dsn, table, kind, mode))
        for day, rows in enumerate((old, new)):
            await load_source(pg_dsn, rows)
            result = await run_job(spec, options=JobOptions(as_of=at(day)))
            assert result.status == "SUCCEEDED", result.error
            assert result.inserted == len(rows)
        got[mode] = norm(await table_rows(pg_dsn, table), cols)
        assert await fetchval(pg_dsn, "SELECT to_regclass($1)", new_table(table)) is None
    assert got["fail"] == got["reject"]
    assert len(got["fail"]) == len(new)
    assert await indexes(pg_dsn, "dw.fb_fail") == await indexes(pg_dsn, "dw.fb_reject")
    assert len(await indexes(pg_dsn, "dw.fb_fail")) == (2 if kind == 2 else 1)


async def test_key_loaded_twice_fails_the_swap_and_keeps_the_old_table(pg_dsn: str) -> None:
    """A duplicated key fails the index build in one line naming it; the old table is kept."""
    old, new = history(seed=32, n_keys=600, runs=2)
    spec = spec_of(refresh_toml("fbd", pg_dsn, "dw.fbd", 2, "fail"))
    await load_source(pg_dsn, old)
    assert (await run_job(spec, options=JobOptions(as_of=at(0)))).status == "SUCCEEDED"
    before = await table_rows(pg_dsn, "dw.fbd")
    twice = dict(new[len(new) // 2])
    await load_source(pg_dsn, [*new, {**twice, "name": "other"}])
    result = await run_job(spec, options=JobOptions(as_of=at(1)))
    assert result.status == "FAILED"
    assert result.error_kind is ErrorKind.DATA
    assert result.error is not None and "\n" not in result.error
    assert f"business key (a={twice['a']!r}, b={twice['b']!r}) appears 2 times" in result.error
    assert "nothing was swapped in" in result.error
    assert norm(await table_rows(pg_dsn, "dw.fbd"), cols_of(2)) == norm(before, cols_of(2))
    assert len(await indexes(pg_dsn, "dw.fbd")) == 2
    await load_source(pg_dsn, new)  # the source fixed, a fresh run swaps the new rows in
    again = await run_job(spec, options=JobOptions(as_of=at(1), fresh=True))
    assert again.status == "SUCCEEDED", again.error
    assert len(await table_rows(pg_dsn, "dw.fbd")) == len(new)
