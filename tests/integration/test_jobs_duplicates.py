"""A business key twice in the source: reject mode rejects every such row and keeps the key."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest

from async_etl.core.duplicates import hold_duplicates
from async_etl.core.scd import apply_plan, diff
from async_etl.drivers.cratedb import CrateDBClient
from async_etl.errors import ErrorKind
from async_etl.jobs.api import JobOptions
from async_etl.jobs.runner import run_job
from async_etl.testing.crate import CrateStandIn, StandInConfig
from tests.databases import fresh_database
from tests.integration.jobs_helpers import (
    at,
    cols_of,
    history,
    job_toml,
    load_source,
    norm,
    reference,
    spec_of,
    table_rows,
)
from tests.integration.test_jobs_crate import crate_rows


def _job(dsn: str, kind: int, mode: str, target: str = "") -> str:
    deletes = "expire" if kind == 2 else "delete"
    state = f'[state]\nurl = "{dsn}"' if target else ""
    return f"""
name = "dups"
on_bad_row = "{mode}"
[source]
url = "{dsn}"
table = "s"
key = ["id"]
[target]
url = "{target or dsn}"
table = "dw.d"
[scd]
type = {kind}
business_key = ["id"]
deletes = "{deletes}"
[parallel]
chunk_size = 2
min_rows_for_parallel = 0
{state}
"""


async def _source(dsn: str, rows: list[tuple[int, str]], key: str = "") -> None:
    """Replace the source ``s`` (id int, val text, doc json) with ``rows`` in this order.

    ``key``: ``" PRIMARY KEY"`` makes ``id`` the source's primary key.
    """
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            f"DROP TABLE IF EXISTS s; CREATE TABLE s (id int{key}, val text, doc json)"
        )
        await conn.executemany(
            "INSERT INTO s VALUES ($1, $2, $3)", [(i, v, json.dumps({"v": v})) for i, v in rows]
        )
        await conn.execute("ANALYZE s")
    finally:
        await conn.close()


async def _rejects(dsn: str, run_id: str) -> list[tuple[Any, str]]:
    """(key id, reason) of the run's rejects, sorted."""
    conn = await asyncpg.connect(dsn)
    try:
        sql = "SELECT key, reason FROM async_etl_rejects WHERE run_id = $1"
        rows = await conn.fetch(sql, run_id)
    finally:
        await conn.close()
    return sorted((json.loads(r["key"])["id"], r["reason"]) for r in rows)


def _current(rows: list[dict[str, Any]], kind: int) -> dict[int, str]:
    """Key -> val of the current rows."""
    return {r["id"]: r["val"] for r in rows if kind == 1 or r["is_current"]}


SECOND = {"b2-first": [(1, "b2"), (1, "b3"), (2, "y"), (3, "z"), (3, "z")],
          "b3-first": [(3, "z"), (1, "b3"), (2, "y"), (3, "z"), (1, "b2")]}  # fmt: skip


async def _check_reject_case(dsn: str, kind: int, order: str, target: str, read: Any) -> None:
    """The issue's case (and a duplicate of a key the target never had) on one target."""
    spec = spec_of(_job(dsn, kind, "reject", target))
    await _source(dsn, [(1, "a"), (2, "x")])
    first = await run_job(spec, options=JobOptions(as_of=at(0)))
    assert (first.status, first.inserted, first.rejected) == ("SUCCEEDED", 2, 0), first.error
    before = await read()
    await _source(dsn, SECOND[order])
    second = await run_job(spec, options=JobOptions(as_of=at(1)))
    assert second.status == "SUCCEEDED", second.error
    assert second.rejected == 4
    reason = "duplicate business key: 2 source rows have it"
    got = await _rejects(dsn, second.run_id)
    assert [k for k, _ in got] == [1, 1, 3, 3]
    assert all(r.startswith(reason) for _, r in got)
    after = await read()
    assert _current(after, kind) == {1: "a", 2: "y"}
    old = [r for r in before if r["id"] == 1]
    assert [r for r in after if r["id"] == 1] == old  # key 1 untouched: not expired, not updated


@pytest.mark.parametrize("order", list(SECOND))
@pytest.mark.parametrize("kind", [2, 1])
async def test_pg_duplicates_rejected_and_key_kept(pg_dsn: str, kind: int, order: str) -> None:
    """PostgreSQL: both rows of key 1 rejected, key 1 keeps 'a' whatever the physical order."""

    async def read() -> list[dict[str, Any]]:
        return await table_rows(pg_dsn, "dw.d")

    await _check_reject_case(pg_dsn, kind, order, "", read)


@pytest.mark.parametrize("order", list(SECOND))
@pytest.mark.parametrize("kind", [2, 1])
async def test_crate_duplicates_rejected_and_key_kept(pg_dsn: str, kind: int, order: str) -> None:
    """CrateDB stand-in: both rows of key 1 rejected, key 1 keeps 'a' whatever the order."""
    async with CrateStandIn(StandInConfig()) as crate:

        async def read() -> list[dict[str, Any]]:
            rows = await _crate_all(crate.url, kind)
            return sorted(rows, key=lambda r: (r["id"], str(r.get("valid_from"))))

        await _check_reject_case(pg_dsn, kind, order, crate.url, read)


async def _crate1(url: str) -> list[dict[str, Any]]:
    """Every row of the stand-in's type-1 table ``dw.d``."""
    async with CrateDBClient(url) as client:
        await client.execute("REFRESH TABLE dw.d")
        resp = await client.execute("SELECT * FROM dw.d")
    return [dict(zip(resp.cols, r, strict=True)) for r in resp.rows]


@pytest.mark.parametrize("target", ["pg", "crate"])
@pytest.mark.parametrize("loaded", [False, True])
@pytest.mark.parametrize("kind", [2, 1])
async def test_fail_mode_names_the_duplicated_key(
    pg_dsn: str, kind: int, loaded: bool, target: str
) -> None:
    """on_bad_row = fail: FAILED naming key 1, on a first load and on a later merge."""
    async with CrateStandIn(StandInConfig()) as crate:
        spec = spec_of(_job(pg_dsn, kind, "fail", crate.url if target == "crate" else ""))
        if loaded:
            await _source(pg_dsn, [(1, "a"), (2, "x")])
            assert (await run_job(spec, options=JobOptions(as_of=at(0)))).status == "SUCCEEDED"
        await _source(pg_dsn, [(1, "b2"), (2, "y"), (1, "b3")])
        result = await run_job(spec, options=JobOptions(as_of=at(1)))
    assert result.status == "FAILED"
    assert result.error_kind is ErrorKind.DATA
    assert result.error is not None
    assert "business key (id=1) appears 2 times in the source" in result.error


@pytest.mark.parametrize("kind", [2, 1])
async def test_pg_duplicates_staged_by_copy_from_another_database(
    pg_dsn: str, pg_server_dsn: str, kind: int
) -> None:
    """Target in another database (binary COPY into staging): same rejects, key 1 keeps 'a'."""
    async with fresh_database(pg_server_dsn) as target:

        async def read() -> list[dict[str, Any]]:
            return await table_rows(target, "dw.d")

        await _check_reject_case(pg_dsn, kind, "b3-first", target, read)


@pytest.mark.parametrize("target", ["pg", "crate"])
@pytest.mark.parametrize("kind", [2, 1])
async def test_duplicates_on_a_first_load_leave_the_key_absent(
    pg_dsn: str, kind: int, target: str
) -> None:
    """Reject mode, duplicates in the very first run: both rows rejected, no row for the key."""
    async with CrateStandIn(StandInConfig()) as crate:
        url = crate.url if target == "crate" else ""
        spec = spec_of(_job(pg_dsn, kind, "reject", url))
        await _source(pg_dsn, [(1, "b3"), (2, "x"), (1, "b2")])
        result = await run_job(spec, options=JobOptions(as_of=at(0)))
        assert (result.status, result.inserted, result.rejected) == ("SUCCEEDED", 1, 2)
        rows = await (_crate_all(crate.url, kind) if url else table_rows(pg_dsn, "dw.d"))
    assert [(r["id"], r["val"]) for r in rows] == [(2, "x")]
    assert [k for k, _ in await _rejects(pg_dsn, result.run_id)] == [1, 1]


async def _crate_all(url: str, kind: int) -> list[dict[str, Any]]:
    """Every row of the stand-in's ``dw.d`` (type 2: timestamps as datetimes)."""
    return await crate_rows(url, "dw.d") if kind == 2 else await _crate1(url)


@pytest.mark.parametrize("target", ["pg", "crate"])
async def test_composite_key_duplicates_match_the_model(pg_dsn: str, target: str) -> None:
    """Composite keys in parallel chunks: the target equals the model with duplicates held."""
    cols = cols_of(2)
    states = history(seed=7, n_keys=120, runs=2)
    second = states[1] + [{**r, "name": "dup"} for r in states[1][::7]]
    async with CrateStandIn(StandInConfig()) as crate:
        text = job_toml("cdup", pg_dsn, "dw.dim", chunk_size=20, extra='on_bad_row = "reject"')
        if target == "crate":
            text = text.replace(f'url = "{pg_dsn}"\ntable', f'url = "{crate.url}"\ntable')
            text += f'\n[state]\nurl = "{pg_dsn}"\n'
        spec = spec_of(text)
        await load_source(pg_dsn, states[0])
        assert (await run_job(spec, options=JobOptions(as_of=at(0)))).status == "SUCCEEDED"
        await load_source(pg_dsn, second)
        result = await run_job(spec, options=JobOptions(as_of=at(1)))
        got = await (crate_rows(crate.url, "dw.dim") if target == "crate"
                     else table_rows(pg_dsn, "dw.dim"))  # fmt: skip
    model = reference(states[:1], cols)
    rows, held = hold_duplicates(cols, second, model)
    model = apply_plan(model, diff(cols, model, rows, at(1)))
    assert result.status == "SUCCEEDED", result.error
    assert result.chunks_total > 1 and len(held) > 3
    assert result.rejected == sum(held.values())
    assert norm(got, cols) == norm(model, cols)


async def test_duplicates_with_key_columns_named_like_the_count(pg_dsn: str) -> None:
    """Key columns called n and count: the duplicate check still finds and rejects them."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute('CREATE TABLE s ("n" int, "count" int, val text)')
        await conn.execute("INSERT INTO s VALUES (1, 1, 'a'), (1, 1, 'b'), (1, 2, 'c')")
    finally:
        await conn.close()
    text = _job(pg_dsn, 2, "reject").replace('key = ["id"]', 'key = ["n", "count"]')
    spec = spec_of(text.replace('business_key = ["id"]', 'business_key = ["n", "count"]'))
    result = await run_job(spec, options=JobOptions(as_of=at(0)))
    assert (result.status, result.inserted, result.rejected) == ("SUCCEEDED", 1, 2), result.error
    assert [(r["n"], r["count"], r["val"]) for r in await table_rows(pg_dsn, "dw.d")] == [
        (1, 2, "c")
    ]


@pytest.mark.parametrize("kind", [2, 1])
async def test_source_primary_key_skips_the_check_and_merges_as_the_model(
    pg_dsn: str, pg_server_dsn: str, kind: int
) -> None:
    """A source with a primary key, read from another database: no duplicate check, same merge."""
    async with fresh_database(pg_server_dsn) as target:
        spec = spec_of(_job(pg_dsn, kind, "fail", target))
        for i, rows in enumerate([[(1, "a"), (2, "x"), (4, "w")], [(1, "b"), (3, "z"), (4, "w")]]):
            await _source(pg_dsn, rows, key=" PRIMARY KEY")
            result = await run_job(spec, options=JobOptions(as_of=at(i)))
            assert result.status == "SUCCEEDED", result.error
        got = await table_rows(target, "dw.d")
    assert _current(got, kind) == {1: "b", 3: "z", 4: "w"}
    counts = (result.inserted, result.updated, result.expired, result.deleted)
    assert counts == ((2, 0, 2, 0) if kind == 2 else (1, 1, 0, 1))
    assert len(got) == (5 if kind == 2 else 3)
