"""The CrateDB stand-in over real HTTP: request rules, response shapes and error codes."""

from __future__ import annotations

import asyncio
import base64
import gzip
import logging
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from async_etl.testing.crate import CrateStandIn, StandInConfig
from async_etl.testing.crate.probe import post_sql

DDL = "CREATE TABLE t (id BIGINT PRIMARY KEY, name TEXT NOT NULL, ts TIMESTAMP WITH TIME ZONE)"
INSERT = "INSERT INTO t (id, name, ts) VALUES (?, ?, ?)"


@pytest.fixture
async def crate() -> AsyncIterator[CrateStandIn]:
    async with CrateStandIn(StandInConfig(seed=7)) as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def sql(
    session: aiohttp.ClientSession, crate: CrateStandIn, stmt: str, args: Any = None, **kw: Any
) -> tuple[int, dict[str, Any]]:
    return await post_sql(session, crate.url, stmt, args, **kw)


async def raw_post(
    session: aiohttp.ClientSession, crate: CrateStandIn, data: bytes, **headers: str
) -> tuple[int, dict[str, Any]]:
    async with session.post(f"{crate.url}/_sql", data=data, headers=headers) as resp:
        return resp.status, orjson.loads(await resp.read())


async def test_get_root_reports_version(
    crate: CrateStandIn, session: aiohttp.ClientSession
) -> None:
    """GET / answers the node info document with the emulated version number."""
    async with session.get(crate.url + "/") as resp:
        info = await resp.json()
    assert resp.status == 200 and info["ok"] is True
    assert info["version"]["number"] == "5.10.11" and "build_hash" in info["version"]


async def test_select_shape_with_types(crate: CrateStandIn, session: aiohttp.ClientSession) -> None:
    """A SELECT answers cols/rows/rowcount/duration, plus col_types with ?types."""
    await sql(session, crate, DDL)
    await sql(session, crate, INSERT, [1, "a", "2024-01-01T00:00:00Z"])
    status, body = await sql(session, crate, "SELECT id, name, ts FROM t WHERE id = ?", [1])
    assert status == 200 and "col_types" not in body
    assert body["cols"] == ["id", "name", "ts"] and body["rows"] == [[1, "a", 1704067200000]]
    assert body["rowcount"] == 1 and isinstance(body["duration"], float)
    _, typed = await sql(session, crate, "SELECT id, name, ts FROM t WHERE id = 1", query="?types")
    assert typed["col_types"] == [10, 4, 11]


async def test_ddl_shape_and_relation_exists(
    crate: CrateStandIn, session: aiohttp.ClientSession
) -> None:
    """CREATE TABLE answers rows [[]]; creating it again is 409 / 4093 unless IF NOT EXISTS."""
    status, body = await sql(session, crate, DDL)
    assert status == 200 and body["rows"] == [[]] and body["rowcount"] == 1
    status, body = await sql(session, crate, DDL)
    assert status == 409 and body["error"]["code"] == 4093
    assert body["error"]["message"].startswith("RelationAlreadyExists[")
    status, _ = await sql(session, crate, DDL.replace("TABLE t", "TABLE IF NOT EXISTS t"))
    assert status == 200


async def test_bulk_shape_and_duplicate_item(
    crate: CrateStandIn, session: aiohttp.ClientSession
) -> None:
    """Bulk answers results in input order; a duplicate PK item is -2 with a 4091 error."""
    await sql(session, crate, DDL)
    status, body = await sql(
        session, crate, INSERT, bulk_args=[[1, "a", 0], [2, "b", 1], [1, "c", 2]]
    )
    assert status == 200 and body["cols"] == [] and "duration" in body
    assert body["results"][:2] == [{"rowcount": 1}, {"rowcount": 1}]
    failed = body["results"][2]
    assert failed["rowcount"] == -2 and failed["error"]["code"] == 4091
    assert failed["error"]["message"].startswith("DuplicateKeyException[")


async def test_empty_bulk_args(crate: CrateStandIn, session: aiohttp.ClientSession) -> None:
    """Empty bulk_args answers 200 with an empty results list."""
    await sql(session, crate, DDL)
    status, body = await sql(session, crate, INSERT, bulk_args=[])
    assert status == 200 and body["results"] == [] and body["cols"] == []


async def test_error_reports_capped_per_shard(
    crate: CrateStandIn, session: aiohttp.ClientSession
) -> None:
    """Only the first 10 failed items per shard carry an error object; later ones are bare."""
    await sql(session, crate, "CREATE TABLE one (id BIGINT PRIMARY KEY) CLUSTERED INTO 1 SHARDS")
    await sql(session, crate, "INSERT INTO one (id) VALUES (?)", [1])
    _, body = await sql(session, crate, "INSERT INTO one (id) VALUES (?)", bulk_args=[[1]] * 15)
    with_error = [r for r in body["results"] if "error" in r]
    assert len(with_error) == 10 and body["results"][10:] == [{"rowcount": -2}] * 5


async def test_analysis_error_writes_nothing(
    crate: CrateStandIn, session: aiohttp.ClientSession
) -> None:
    """An uncastable value in a bulk fails the whole request with 400 / 4000; nothing written."""
    await sql(session, crate, DDL)
    status, body = await sql(session, crate, INSERT, bulk_args=[[1, "a", 0], ["abc", "b", 0]])
    assert status == 400 and body["error"]["code"] == 4000
    assert body["error"]["message"].startswith("SQLParseException[")
    _, found = await sql(session, crate, "SELECT id FROM t WHERE id = 1")
    assert found["rows"] == []


async def test_not_null_violation_is_per_item(
    crate: CrateStandIn, session: aiohttp.ClientSession
) -> None:
    """A NOT NULL violation fails only its item; a single-row insert gets a top-level error."""
    await sql(session, crate, DDL)
    _, body = await sql(session, crate, INSERT, bulk_args=[[1, None, 0], [2, "b", 0]])
    assert body["results"][0]["rowcount"] == -2 and body["results"][1] == {"rowcount": 1}
    status, err = await sql(session, crate, INSERT, [3, None, 0])
    assert status == 400 and err["error"]["code"] == 4003


async def test_not_null_and_check_failures_capped_per_shard(
    crate: CrateStandIn, session: aiohttp.ClientSession
) -> None:
    """NOT NULL and CHECK failures detail only 10 items per shard (4 shards); UPDATE checks too."""
    await sql(
        session,
        crate,
        "CREATE TABLE n (id BIGINT PRIMARY KEY, note TEXT NOT NULL, "
        "v INTEGER CONSTRAINT v_pos CHECK (v > 0), CHECK (id < 1000)) CLUSTERED INTO 4 SHARDS",
    )
    stmt = "INSERT INTO n (id, note, v) VALUES (?, ?, ?)"
    items = [[i, None if i % 2 else "x", -1 if i % 2 == 0 else 1] for i in range(200)]
    _, body = await sql(session, crate, stmt, bulk_args=items)
    results = body["results"]
    assert all(r["rowcount"] == -2 for r in results)
    detailed = [(i, r["error"]) for i, r in enumerate(results) if "error" in r]
    assert len(detailed) == 4 * 10
    by_shard = {i % 4 for i, _ in detailed}
    assert by_shard == {0, 1, 2, 3}
    for i, error in detailed:
        if i % 2:
            assert error["code"] == 4003 and "Cannot insert null into 'note'" in error["message"]
        else:
            assert error["code"] == 4000 and "Failed CONSTRAINT v_pos " in error["message"]
    _, ok = await sql(session, crate, stmt, bulk_args=[[5000, "x", 1], [7, "x", None]])
    assert (
        ok["results"][0]["rowcount"] == -2 and "n_check_2" in ok["results"][0]["error"]["message"]
    )
    assert ok["results"][1] == {"rowcount": 1}  # a NULL operand passes the check
    status, err = await sql(session, crate, "UPDATE n SET v = ? WHERE id = ?", [-5, 7])
    assert status == 400 and "v_pos" in err["error"]["message"]


async def test_single_insert_duplicate_is_409(
    crate: CrateStandIn, session: aiohttp.ClientSession
) -> None:
    """A plain INSERT hitting an existing PK answers 409 / 4091."""
    await sql(session, crate, DDL)
    await sql(session, crate, INSERT, [1, "a", 0])
    status, body = await sql(session, crate, INSERT, [1, "b", 0])
    assert status == 409 and body["error"]["code"] == 4091


async def test_composite_primary_key(crate: CrateStandIn, session: aiohttp.ClientSession) -> None:
    """Uniqueness holds on the whole composite key, not on its parts."""
    await sql(session, crate, "CREATE TABLE c (k TEXT, v BIGINT, x TEXT, PRIMARY KEY (k, v))")
    stmt = "INSERT INTO c (k, v, x) VALUES (?, ?, ?)"
    _, body = await sql(
        session, crate, stmt, bulk_args=[["a", 1, "x"], ["a", 2, "y"], ["b", 1, "z"], ["a", 1, "w"]]
    )
    assert [r["rowcount"] for r in body["results"]] == [1, 1, 1, -2]
    _, row = await sql(session, crate, "SELECT x FROM c WHERE k = ? AND v = ?", ["a", 2])
    assert row["rows"] == [["y"]]


async def test_on_conflict_do_nothing(crate: CrateStandIn, session: aiohttp.ClientSession) -> None:
    """ON CONFLICT DO NOTHING reports rowcount 0 for a conflicting item and keeps the row."""
    await sql(session, crate, DDL)
    await sql(session, crate, INSERT, [1, "a", 0])
    stmt = INSERT + " ON CONFLICT (id) DO NOTHING"
    _, body = await sql(session, crate, stmt, bulk_args=[[1, "b", 0], [2, "c", 0]])
    assert body["results"] == [{"rowcount": 0}, {"rowcount": 1}]
    _, row = await sql(session, crate, "SELECT name FROM t WHERE id = 1")
    assert row["rows"] == [["a"]]


async def test_on_conflict_do_update(crate: CrateStandIn, session: aiohttp.ClientSession) -> None:
    """ON CONFLICT DO UPDATE SET c = excluded.c, d = ? updates the existing row."""
    await sql(session, crate, DDL)
    await sql(session, crate, INSERT, [1, "a", 0])
    stmt = INSERT + " ON CONFLICT (id) DO UPDATE SET name = excluded.name, ts = ?"
    _, body = await sql(session, crate, stmt, bulk_args=[[1, "new", 0, 99]])
    assert body["results"] == [{"rowcount": 1}]
    _, row = await sql(session, crate, "SELECT name, ts FROM t WHERE id = 1")
    assert row["rows"] == [["new", 99]]
    status, err = await sql(
        session, crate, INSERT + " ON CONFLICT (id) DO UPDATE SET id = 5", [1, "x", 0]
    )
    assert status == 400 and err["error"]["code"] == 4003


async def test_multi_row_values_item(crate: CrateStandIn, session: aiohttp.ClientSession) -> None:
    """Multi-row VALUES in a bulk: one failing row marks the whole item -2."""
    await sql(session, crate, "CREATE TABLE m (id INT PRIMARY KEY)")
    stmt = "INSERT INTO m (id) VALUES (?), (?)"
    _, body = await sql(session, crate, stmt, bulk_args=[[1, 2], [3, 1]])
    assert body["results"][0] == {"rowcount": 2} and body["results"][1]["rowcount"] == -2


async def test_refresh_visibility(crate: CrateStandIn, session: aiohttp.ClientSession) -> None:
    """count(*) and non-PK filters see writes only after REFRESH; PK lookups see them at once."""
    await sql(session, crate, DDL + " WITH (refresh_interval = 0)")
    await sql(session, crate, INSERT, bulk_args=[[i, "n", i] for i in range(5)])
    _, before = await sql(session, crate, "SELECT count(*) FROM t")
    _, by_name = await sql(session, crate, "SELECT id FROM t WHERE name = 'n'")
    _, by_pk = await sql(session, crate, "SELECT name FROM t WHERE id = 3")
    assert before["rows"] == [[0]] and by_name["rows"] == [] and by_pk["rows"] == [["n"]]
    await sql(session, crate, "REFRESH TABLE t")
    _, after = await sql(session, crate, "SELECT count(*) FROM t WHERE ts >= ? AND ts < ?", [1, 4])
    assert after["rows"] == [[3]]


async def test_refresh_interval_with_injected_clock(session: aiohttp.ClientSession) -> None:
    """Writes become visible by themselves once the table's refresh interval has elapsed."""
    now = [100.0]
    async with CrateStandIn(clock=lambda: now[0]) as crate:
        await sql(
            session, crate, "CREATE TABLE r (id INT PRIMARY KEY) WITH (refresh_interval = 500)"
        )
        await sql(session, crate, "INSERT INTO r (id) VALUES (?)", [1])
        _, before = await sql(session, crate, "SELECT count(*) FROM r")
        now[0] += 0.6
        _, after = await sql(session, crate, "SELECT count(*) FROM r")
    assert before["rows"] == [[0]] and after["rows"] == [[1]]


async def test_update_delete_by_pk_and_filter(
    crate: CrateStandIn, session: aiohttp.ClientSession
) -> None:
    """UPDATE/DELETE by exact PK act at once; by non-PK filter they see refreshed rows only."""
    await sql(session, crate, DDL + " WITH (refresh_interval = 0)")
    await sql(session, crate, INSERT, bulk_args=[[1, "a", 0], [2, "a", 0]])
    _, upd = await sql(session, crate, "UPDATE t SET name = ? WHERE id = ?", ["b", 1])
    _, unseen = await sql(session, crate, "DELETE FROM t WHERE name = 'a'")
    assert upd["rowcount"] == 1 and unseen["rowcount"] == 0
    await sql(session, crate, "REFRESH TABLE t")
    _, bulk = await sql(
        session, crate, "UPDATE t SET name = $2 WHERE id = $1", bulk_args=[[2, "c"]]
    )
    assert bulk["results"] == [{"rowcount": 1}]
    _, gone = await sql(session, crate, "DELETE FROM t WHERE id = ?", [1])
    assert gone["rowcount"] == 1
    status, err = await sql(session, crate, "UPDATE t SET id = 9 WHERE id = 2")
    assert status == 400 and err["error"]["code"] == 4003


async def test_select_order_limit_null(crate: CrateStandIn, session: aiohttp.ClientSession) -> None:
    """SELECT with ORDER BY (nulls last asc), LIMIT, IS NULL and * behaves like CrateDB."""
    await sql(session, crate, "CREATE TABLE s (id INT PRIMARY KEY, v DOUBLE PRECISION)")
    await sql(
        session,
        crate,
        "INSERT INTO s (id, v) VALUES (?, ?)",
        bulk_args=[[1, 2.5], [2, None], [3, 1.0]],
    )
    await sql(session, crate, "REFRESH TABLE s")
    _, ordered = await sql(session, crate, "SELECT id FROM s ORDER BY v ASC LIMIT 3")
    _, desc = await sql(session, crate, "SELECT * FROM s ORDER BY v DESC LIMIT 2")
    _, nulls = await sql(session, crate, "SELECT id FROM s WHERE v IS NULL")
    assert ordered["rows"] == [[3], [1], [2]]
    assert desc["cols"] == ["id", "v"] and desc["rows"] == [[2, None], [1, 2.5]]
    assert nulls["rows"] == [[2]]


async def test_unknown_relation_schema_and_column(
    crate: CrateStandIn, session: aiohttp.ClientSession
) -> None:
    """Unknown table is 404/4041, unknown schema 404/4045, unknown column 404/4043."""
    await sql(session, crate, DDL)
    status, body = await sql(session, crate, "SELECT * FROM nope")
    assert status == 404 and body["error"]["code"] == 4041
    assert body["error"]["message"] == "RelationUnknown[Relation 'doc.nope' unknown]"
    status, body = await sql(session, crate, "SELECT * FROM ghost.t")
    assert status == 404 and body["error"]["code"] == 4045
    status, body = await sql(session, crate, "INSERT INTO t (id, nope) VALUES (?, ?)", [1, 2])
    assert status == 404 and body["error"]["code"] == 4043


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b"[]",
        b'{"stmt": "SELECT 1", "extra": 1}',
        b'{"args": [1]}',
        b'{"stmt": "SELECT ?", "args": [1], "bulk_args": [[1]]}',
        b'{"stmt": "SELECT 1; SELECT 2"}',
        b'{"stmt": "SELEKT 1"}',
    ],
)
async def test_bad_bodies_are_400(
    crate: CrateStandIn, session: aiohttp.ClientSession, payload: bytes
) -> None:
    """Empty, unparsable, extra-key, stmt-less, args+bulk_args, multi-statement bodies: 400/4000."""
    status, body = await raw_post(session, crate, payload)
    assert status == 400 and body["error"]["code"] == 4000


async def test_error_trace_flag(crate: CrateStandIn, session: aiohttp.ClientSession) -> None:
    """?error_trace adds a top-level error_trace string to error bodies."""
    _, plain = await sql(session, crate, "SELECT * FROM nope")
    _, traced = await sql(session, crate, "SELECT * FROM nope", query="?error_trace=true")
    assert "error_trace" not in plain and isinstance(traced["error_trace"], str)


async def test_bulk_only_for_writes(crate: CrateStandIn, session: aiohttp.ClientSession) -> None:
    """bulk_args with a SELECT is refused with 400 / 4000."""
    status, body = await sql(session, crate, "SELECT ?", bulk_args=[[1]])
    assert status == 400 and body["error"]["code"] == 4000


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_compressed_request_body(
    crate: CrateStandIn, session: aiohttp.ClientSession, encoding: str
) -> None:
    """Request bodies with Content-Encoding gzip or deflate are accepted."""
    await sql(session, crate, DDL)
    data = orjson.dumps({"stmt": INSERT, "bulk_args": [[i, "x", 0] for i in range(50)]})
    packed = zlib.compress(data) if encoding == "deflate" else gzip.compress(data)
    status, body = await raw_post(session, crate, packed, **{"Content-Encoding": encoding})
    assert status == 200 and len(body["results"]) == 50


async def test_default_schema_is_per_connection(crate: CrateStandIn) -> None:
    """Default-Schema is read on a connection's first request; later changes are ignored."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as one:
        await sql(one, crate, "CREATE TABLE t (id INT)", headers={"Default-Schema": "custom"})
        status, _ = await sql(one, crate, "SELECT * FROM t", headers={"Default-Schema": "other"})
        assert status == 200
    async with aiohttp.ClientSession() as fresh:
        status, body = await sql(fresh, crate, "SELECT * FROM t")
        assert status == 404 and body["error"]["code"] == 4041
        status, _ = await sql(fresh, crate, "SELECT * FROM custom.t")
        assert status == 200


async def test_system_queries_cr8_sends(
    crate: CrateStandIn, session: aiohttp.ClientSession
) -> None:
    """sys.nodes / sys.cluster / information_schema.columns answer the queries cr8 sends."""
    await sql(
        session,
        crate,
        "CREATE TABLE doc.f (id BIGINT, o OBJECT(STRICT) AS (a INT), tags ARRAY(TEXT))",
    )
    _, version = await sql(session, crate, "select min(version['number']) from sys.nodes")
    assert version["rows"] == [["5.10.11"]]
    _, named = await sql(session, crate, "SELECT name, version['number'] FROM sys.nodes")
    assert named["cols"] == ["name", "version['number']"] and named["rows"][0][1] == "5.10.11"
    _, cluster = await sql(session, crate, "SELECT name FROM sys.cluster")
    assert cluster["rows"] == [["standin"]]
    cr8 = (
        "select column_name, data_type, character_maximum_length from information_schema.columns "
        "where cast(is_generated as string) in ('f', 'NEVER') and table_schema = ? "
        "and table_name = ? and column_name not like '%]' order by ordinal_position asc"
    )
    _, cols = await sql(session, crate, cr8, ["doc", "f"])
    assert cols["rows"] == [
        ["id", "bigint", None],
        ["o", "object", None],
        ["tags", "text_array", None],
    ]


async def test_column_names_crate_refuses_are_4008(
    crate: CrateStandIn, session: aiohttp.ClientSession
) -> None:
    """A column named like a system column (_x), with a dot or in subscript form is 400 / 4008."""
    cases = {
        '"_x"': '"_x" conflicts with system column pattern',
        '"a.b"': '"a.b" contains a dot',
        "\"a['b']\"": "\"a['b']\" conflicts with subscript pattern, square brackets are "
        "not allowed",
    }
    for name, why in cases.items():
        status, body = await sql(
            session, crate, f"CREATE TABLE u (id BIGINT PRIMARY KEY, {name} TEXT)"
        )
        assert (status, body["error"]["code"]) == (400, 4008)
        assert body["error"]["message"] == f"InvalidColumnNameException[{why}]"
    status, _ = await sql(session, crate, "SELECT count(*) FROM u")
    assert status == 404  # nothing was created
    await sql(session, crate, DDL)
    status, body = await sql(session, crate, 'ALTER TABLE t ADD COLUMN "_score2" TEXT')
    assert (status, body["error"]["code"]) == (400, 4008)
    status, body = await sql(session, crate, "SELECT * FROM t")
    assert status == 200 and body["cols"] == ["id", "name", "ts"]


async def _users_answers(
    session: aiohttp.ClientSession,
    crate: CrateStandIn,
    columns: str,
    refused: list[str],
    rows: list[list[str]],
) -> tuple[int, dict[str, Any], list[Any], list[Any]]:
    """CREATE TABLE users (``columns``), INSERT ``refused`` then each of ``rows`` (each 200).

    Gives the refused insert's status and error, the stored rows by id and
    information_schema's (column_name, data_type, character_maximum_length) rows.
    """
    insert = "INSERT INTO users (id, name) VALUES (?, ?)"
    await sql(session, crate, f"CREATE TABLE users ({columns})")
    status, body = await sql(session, crate, insert, refused)
    for row in rows:
        assert (await sql(session, crate, insert, row))[0] == 200
    await sql(session, crate, "REFRESH TABLE users")
    _, stored = await sql(session, crate, "SELECT id, name FROM users ORDER BY id")
    _, listed = await sql(
        session, crate, "SELECT column_name, data_type, character_maximum_length "
        "FROM information_schema.columns WHERE table_name = 'users' ORDER BY ordinal_position"
    )  # fmt: skip
    return status, body["error"], stored["rows"], listed["rows"]


async def test_varchar_n_refuses_a_longer_value_and_cuts_blank_excess(
    crate: CrateStandIn, session: aiohttp.ClientSession
) -> None:
    """VARCHAR(6) as CrateDB's docs show: 'john doe' is 400 / 4000, 'john     ' stored 'john  '."""
    status, error, stored, listed = await _users_answers(
        session, crate, "id VARCHAR, name VARCHAR(6)", ["1361", "john doe"], [["1", "john     "]]
    )
    assert (status, error["code"]) == (400, 4000)
    assert "'john doe' is too long for the text type of length: 6" in error["message"]
    assert stored == [["1", "john  "]]
    assert listed == [["id", "text", None], ["name", "character varying", 6]]


async def test_alter_drop_begin_commit(crate: CrateStandIn, session: aiohttp.ClientSession) -> None:
    """ALTER TABLE SET, BEGIN/COMMIT are accepted; DROP TABLE removes it (IF EXISTS tolerant)."""
    await sql(session, crate, DDL)
    for stmt in (
        "ALTER TABLE t SET (refresh_interval = 0, number_of_replicas = 0)",
        "BEGIN",
        "COMMIT",
    ):
        status, _ = await sql(session, crate, stmt)
        assert status == 200
    assert (await sql(session, crate, "DROP TABLE t"))[0] == 200
    assert (await sql(session, crate, "DROP TABLE t"))[0] == 404
    assert (await sql(session, crate, "DROP TABLE IF EXISTS t"))[0] == 200


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def test_auth_required(session: aiohttp.ClientSession) -> None:
    """With a user configured, missing or wrong credentials get a plain-text 401 and close."""
    async with CrateStandIn(StandInConfig(user="crate", password="pw")) as crate:
        for auth in ({}, basic("crate", "wrong")):
            async with session.post(
                f"{crate.url}/_sql", json={"stmt": "SELECT 1"}, headers=auth
            ) as r:
                assert r.status == 401 and r.content_type == "text/plain"
                assert "WWW-Authenticate" in r.headers and r.headers["Connection"] == "close"
        ok = basic("crate", "pw")
        async with session.post(f"{crate.url}/_sql", json={"stmt": "SELECT 1"}, headers=ok) as r:
            assert r.status == 200
        assert crate.counters.faults["auth"] == 2


async def test_grammar_error_is_cratedb_sql_parse_exception(
    crate: CrateStandIn, session: aiohttp.ClientSession
) -> None:
    """Grammar-invalid SQL: 400 / 4000 SQLParseException[line 1:C: ...] at the column."""
    status, body = await sql(session, crate, "SELECT a FROM t WHERE (a, b) >= (?, ?)", [1, 2])
    assert status == 400 and body["error"]["code"] == 4000
    assert body["error"]["message"].startswith("SQLParseException[line 1:25: ")


async def test_valid_sql_beyond_the_stand_in_is_not_supported(
    crate: CrateStandIn, session: aiohttp.ClientSession
) -> None:
    """Valid SQL the stand-in cannot run: 400 / 4004 naming the stand-in, not a syntax error."""
    status, body = await sql(session, crate, "SELECT a FROM t WHERE a = 1 OR a = 2")
    assert status == 400 and body["error"]["code"] == 4004
    assert "not supported by the stand-in" in body["error"]["message"]


async def test_peak_connections_counts_connections_open_at_once(crate: CrateStandIn) -> None:
    """Three clients with a connection each count 3; after they close, one more leaves it 3."""
    body = {"stmt": "SELECT 1"}
    clients = [aiohttp.ClientSession() for _ in range(3)]
    try:
        for client in clients:
            async with client.post(f"{crate.url}/_sql", json=body) as resp:
                assert resp.status == 200
        assert crate.counters.peak_connections == 3
    finally:
        for client in clients:
            await client.close()
    async with aiohttp.ClientSession() as late:
        for _ in range(2):
            async with late.post(f"{crate.url}/_sql", json=body) as resp:
                assert resp.status == 200
    assert crate.counters.peak_connections == 3


async def _leave_mid_request(crate: CrateStandIn, missing: int) -> None:
    """Send a POST (its body ``missing`` bytes short), then drop the connection unanswered."""
    host, port = crate.url.removeprefix("http://").rsplit(":", 1)
    _, writer = await asyncio.open_connection(host, int(port))
    body = orjson.dumps({"stmt": "SELECT 1"})
    head = f"POST /_sql HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body) + missing}\r\n\r\n"
    writer.write(head.encode() + body)
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.transport.abort()
    await asyncio.sleep(0.3)


@pytest.mark.parametrize("missing", [0, 100], ids=["in-service", "mid-body"])
async def test_a_client_leaving_mid_request_is_not_an_error(
    missing: int, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """A client that disconnects mid-request leaves no traceback and no error log."""
    async with CrateStandIn(StandInConfig(latency_ms=200)) as crate:
        await _leave_mid_request(crate, missing)
        async with aiohttp.ClientSession() as client:
            assert (await post_sql(client, crate.url, "SELECT 1"))[0] == 200
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert capfd.readouterr().err == ""


async def test_a_failing_handler_still_logs_its_traceback(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A real error (not a client leaving) still surfaces: aiohttp logs its traceback."""
    async with CrateStandIn(StandInConfig()) as crate:

        def broken(*args: object) -> None:
            raise ConnectionResetError("a bug that looks like a reset")

        monkeypatch.setattr(crate, "answer", broken)
        async with (
            aiohttp.ClientSession() as client,
            client.post(f"{crate.url}/_sql", json={"stmt": "SELECT 1"}) as resp,
        ):
            assert resp.status == 500
            body = await resp.text()
    if crate.config.http == "lean":  # the lean layer names it in the 500's body instead
        assert "ConnectionResetError: a bug that looks like a reset" in body, body
        return
    errors = [r.exc_info[1] for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info]
    assert [str(e) for e in errors] == ["a bug that looks like a reset"], caplog.text


async def test_character_n_pads_a_shorter_value_and_refuses_a_longer_one(
    crate: CrateStandIn, session: aiohttp.ClientSession
) -> None:
    """CHAR(3) as CrateDB's docs show: 'Alice Smith' 400 / 4000, 'Bob     ' 'Bob', 'Bo' 'Bo '."""
    status, error, stored, listed = await _users_answers(
        session, crate, "id CHARACTER, name CHAR(3)", ["1", "Alice Smith"],
        [["1", "Bob     "], ["2", "Bo"]],
    )  # fmt: skip
    assert (status, error["code"]) == (400, 4000)
    assert "'Alice Smith' is too long for the character type of length: 3" in error["message"]
    assert stored == [["1", "Bob"], ["2", "Bo "]]
    assert listed == [["id", "character", 1], ["name", "character", 3]]


async def test_show_create_table_gives_each_column_as_declared(
    crate: CrateStandIn, session: aiohttp.ClientSession
) -> None:
    """SHOW CREATE TABLE: one row, the statement; VARCHAR(n) / CHAR(n) / arrays keep their n."""
    await sql(session, crate, "CREATE TABLE t (id BIGINT PRIMARY KEY, a ARRAY(VARCHAR(3)), "
                              "b CHAR(2)[], c TEXT, d VARCHAR(5), e ARRAY(TEXT))")  # fmt: skip
    status, body = await sql(session, crate, 'SHOW CREATE TABLE "doc"."t"')
    assert status == 200 and body["cols"] == ["SHOW CREATE TABLE doc.t"], body
    ddl = body["rows"][0][0]
    assert ddl.startswith('CREATE TABLE IF NOT EXISTS "doc"."t" (\n'), ddl
    for column in ('"id" BIGINT', '"a" ARRAY(VARCHAR(3))', '"b" ARRAY(CHARACTER(2))',
                   '"c" TEXT', '"d" VARCHAR(5)', '"e" ARRAY(TEXT)'):  # fmt: skip
        assert f"   {column}," in ddl, (column, ddl)
