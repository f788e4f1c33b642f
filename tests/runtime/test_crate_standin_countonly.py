"""Counting mode keeps integer primary keys, so filtered counts (reconciles) stay truthful."""

from __future__ import annotations

import aiohttp

from async_etl.testing.crate import CrateStandIn, StandInConfig
from async_etl.testing.crate.probe import post_sql

DDL = "CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT) WITH (refresh_interval = 0)"


async def _count(session: aiohttp.ClientSession, url: str, stmt: str, args: list[int]) -> int:
    status, body = await post_sql(session, url, stmt, args)
    assert status == 200, body
    return int(body["rows"][0][0])


async def test_count_only_answers_range_counts_after_refresh() -> None:
    """count(*) with an id range counts exactly the counted rows in range, after REFRESH."""
    async with CrateStandIn(StandInConfig(count_only=True)) as crate, aiohttp.ClientSession() as s:
        await post_sql(s, crate.url, DDL)
        bulk = [[i, "x"] for i in range(1, 1001)]
        status, body = await post_sql(
            s, crate.url, "INSERT INTO t (id, v) VALUES (?, ?)", bulk_args=bulk
        )
        assert status == 200 and len(body["results"]) == 1000
        ranged = "SELECT count(*) FROM t WHERE id >= ? AND id < ?"
        assert await _count(s, crate.url, ranged, [1, 1001]) == 0  # not refreshed yet
        await post_sql(s, crate.url, "REFRESH TABLE t")
        assert await _count(s, crate.url, ranged, [1, 1001]) == 1000
        assert await _count(s, crate.url, ranged, [100, 200]) == 100
        assert await _count(s, crate.url, "SELECT count(*) FROM t", []) == 1000


async def test_count_only_keeps_keys_from_column_order_not_position() -> None:
    """The key is read from the id placeholder wherever it stands in the column list."""
    async with CrateStandIn(StandInConfig(count_only=True)) as crate, aiohttp.ClientSession() as s:
        await post_sql(s, crate.url, DDL)
        bulk = [["x", i] for i in range(10, 20)]
        await post_sql(s, crate.url, "INSERT INTO t (v, id) VALUES (?, ?)", bulk_args=bulk)
        await post_sql(s, crate.url, "REFRESH TABLE t")
        ranged = "SELECT count(*) FROM t WHERE id >= ? AND id < ?"
        assert await _count(s, crate.url, ranged, [15, 100]) == 5


FILTERED_COUNTS: list[tuple[str, list[object]]] = [
    ("SELECT count(*) FROM t WHERE id >= ? AND id < ?", [1, 1001]),
    ("SELECT count(*) FROM t WHERE id >= ? AND id < ?", [250, 260]),
    ("SELECT count(*) FROM t WHERE id >= ? AND id < ?", [-5, 3]),
    ("SELECT count(*) AS n FROM t WHERE id > 990", []),
    ("SELECT count(*) FROM t WHERE id <= ? AND id != ?", [10, 5]),
    ("SELECT count(*) FROM t WHERE id = ?", [77]),
    ("SELECT count(*) FROM t WHERE id = ?", [5000]),
    ("SELECT count(*) FROM t WHERE id >= ? AND id < ?", ["100", 200.0]),
    ("SELECT count(*) FROM t WHERE id < ?", [2.5]),
    ("SELECT count(*) FROM t WHERE id >= ?", [2**63 - 1]),
    ("SELECT count(*) FROM t WHERE id IN (1, 2, 3000)", []),
    ("SELECT count(*) FROM t WHERE id >= ? AND v IS NULL", [900]),
    ("SELECT count(*) FROM t WHERE id >= ? LIMIT 0", [1]),
    ("SELECT count(id) FROM t WHERE id < ?", [50]),
    ("SELECT count(*) FROM t WHERE id < ?", ["x"]),
    ("SELECT count(*) FROM t WHERE nope < ?", [1]),
]


async def test_count_only_filtered_counts_answer_as_the_storing_mode_does() -> None:
    """Filtered counts in counting mode (vectorised over kept keys) equal storing mode answers."""
    bodies: dict[bool, list[tuple[int, object]]] = {}
    for count_only in (False, True):
        async with (
            CrateStandIn(StandInConfig(count_only=count_only)) as crate,
            aiohttp.ClientSession() as s,
        ):
            await post_sql(s, crate.url, DDL)
            bulk = [[i, None if i % 7 else "x"] for i in range(1, 1001)]
            insert = "INSERT INTO t (id, v) VALUES (?, ?)"
            await post_sql(s, crate.url, insert, bulk_args=bulk)
            await post_sql(s, crate.url, "REFRESH TABLE t")
            answers = []
            for stmt, args in FILTERED_COUNTS:
                status, body = await post_sql(s, crate.url, stmt, args)
                body.pop("duration", None)
                answers.append((status, body))
            bodies[count_only] = answers
    for (stmt, args), stored, counted in zip(
        FILTERED_COUNTS, bodies[False], bodies[True], strict=True
    ):
        if stored[0] == 200 and "v IS NULL" not in stmt and "count(id)" not in stmt:
            assert counted == stored, (stmt, args)
        assert counted[0] == stored[0], (stmt, args, counted, stored)
