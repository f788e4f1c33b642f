"""The writer into real PostgreSQL: values, shapes, refusals, faults, cancellation, abort."""

from __future__ import annotations

import asyncio
import math
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import asyncpg
import orjson
import pytest

from async_etl import ConfigError, RetryPolicy, open_writer
from async_etl.runtime.writer_send import CANCELLED
from async_etl.sinks.postgres_rows import PostgresRowsSink
from async_etl.sinks.rows_common import RecordsBatch
from async_etl.typing import IdRange, SendResult
from tests.integration.pg_activity import until_waiting_on

COLUMNS = {"id": "bigint", "name": "text", "score": "double precision", "at": "timestamptz"}


async def _fetch(dsn: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


async def _napping(dsn: str, table: str, nap: float, when: str, each: str) -> None:
    """Create ``table`` (``name (columns)``) with a trigger sleeping ``nap`` s ``when`` ``each``."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            f"CREATE TABLE {table}; "
            "CREATE FUNCTION nap() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN PERFORM pg_sleep({nap}); RETURN NEW; END $$; "
            f"CREATE TRIGGER nap {when} INSERT ON {table.split()[0]} "
            f"FOR EACH {each} EXECUTE FUNCTION nap()"
        )
    finally:
        await conn.close()


VALUES: list[tuple[str, list[Any]]] = [
    ("smallint", [-(2**15), 0, 2**15 - 1]),
    ("integer", [-(2**31), 2**31 - 1]),
    ("bigint", [-(2**63), 2**63 - 1]),
    ("real", [1.5, -0.0, math.inf]),
    ("double precision", [1e-308, -1.7976931348623157e308, math.inf, -math.inf]),
    (
        "numeric",
        [
            Decimal(0),
            Decimal("-0.001"),
            Decimal("1E+20"),
            Decimal("123456789.123456789"),
            Decimal("-99999.00010"),
            Decimal("0.00000001"),
            10**30,
        ],
    ),
    ("text", ["", "äöü ✓ 𝄞", "a" * 10_000, "line\nbreak\ttab"]),
    ("varchar(5)", ["abcde"]),
    ("bytea", [b"", b"\x00\xff" * 100]),
    ("boolean", [True, False]),
    ("jsonb", [{"a": [1, 2.5, None, "x"]}, [], "null", '{"k": "v"}']),
    ("json", [{"z": 1, "a": 2}]),
    (
        "timestamptz",
        [
            datetime(2000, 1, 1, tzinfo=UTC),
            datetime(1969, 7, 20, 20, 17, 40, 123456, tzinfo=UTC),
            datetime(2031, 3, 4, 5, 6, 7, tzinfo=timezone(timedelta(hours=-5))),
        ],
    ),
    ("timestamp", [datetime(1999, 12, 31, 23, 59, 59, 999999), datetime(2400, 2, 29)]),
    ("date", [date(2000, 1, 1), date(1, 1, 1), date(9999, 12, 31), date(1999, 12, 31)]),
    ("time", [time(0, 0), time(23, 59, 59, 999999)]),
    ("uuid", [uuid.UUID(int=0), uuid.UUID("12345678-1234-5678-1234-567812345678")]),
]


@pytest.mark.parametrize(("sql_type", "values"), VALUES, ids=[t for t, _ in VALUES])
async def test_every_supported_type_round_trips_exactly(
    pg_dsn: str, sql_type: str, values: list[Any]
) -> None:
    """Each value written through binary COPY reads back equal (asyncpg's decoding)."""
    async with open_writer(
        pg_dsn, table="v", columns={"k": "int", "v": sql_type}, primary_key=["k"]
    ) as writer:
        await writer.write_many((k, v) for k, v in enumerate(values))
    assert writer.report.delivered == len(values), writer.report.reasons
    rows = await _fetch(pg_dsn, "SELECT k, v FROM v ORDER BY k")
    got = [r["v"] for r in rows]
    if sql_type in ("json", "jsonb"):  # asyncpg reads JSON as text
        assert [orjson.loads(g) for g in got] == [
            orjson.loads(v) if isinstance(v, str) else v for v in values
        ]
    else:
        assert got == [
            Decimal(v) if isinstance(v, int) and sql_type == "numeric" else v for v in values
        ]


async def test_numeric_nan_round_trips(pg_dsn: str) -> None:
    """Decimal('NaN') lands as numeric NaN."""
    async with open_writer(pg_dsn, table="n", columns={"v": "numeric"}) as writer:
        await writer.write((Decimal("NaN"),))
    rows = await _fetch(pg_dsn, "SELECT v::text AS t FROM n")
    assert [r["t"] for r in rows] == ["NaN"]


async def test_numeric_signalling_nan_is_rejected_not_stored_as_nan(pg_dsn: str) -> None:
    """Decimal('sNaN') is no NaN: its row is rejected with the reason, NaN still lands."""
    async with open_writer(pg_dsn, table="n", columns={"k": "int4", "v": "numeric"}) as writer:
        await writer.write_many([(1, Decimal("NaN")), (2, Decimal("sNaN"))])
    report = writer.report
    assert (report.delivered, report.rejected, report.undelivered) == (1, 1, 0), report.reasons
    assert [(r.row[0], r.reason) for r in report.rejected_rows] == [
        (2, "column 'v' (numeric): sNaN is a signalling NaN, not NaN; numeric has no such value")
    ]
    rows = await _fetch(pg_dsn, "SELECT k, v::text AS t FROM n ORDER BY k")
    assert [(r["k"], r["t"]) for r in rows] == [(1, "NaN")]  # before: 2 rows, both NaN


@dataclass
class Event:
    id: int
    name: str
    score: float
    at: datetime


async def test_rows_as_tuples_dicts_and_dataclasses(pg_dsn: str) -> None:
    """Tuples, dicts by column name (missing keys are NULL) and dataclasses all land."""
    at = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    async with open_writer(pg_dsn, table="ev", columns=COLUMNS, primary_key=["id"]) as writer:
        await writer.write((1, "tuple", 1.0, at))
        await writer.write({"id": 2, "name": "dict", "at": at})
        await writer.write(Event(3, "dataclass", 3.0, at))
    rows = await _fetch(pg_dsn, "SELECT id, name, score, at FROM ev ORDER BY id")
    assert [tuple(r) for r in rows] == [
        (1, "tuple", 1.0, at),
        (2, "dict", None, at),
        (3, "dataclass", 3.0, at),
    ]
    assert writer.report.ok and writer.report.accepted == 3


async def test_bad_rows_are_rejected_with_reasons_and_the_rest_land(pg_dsn: str) -> None:
    """A wrong shape, a wrong type, an out-of-range int and a NULL key are refused one by one."""
    at = datetime.now(UTC)
    async with open_writer(pg_dsn, table="ev", columns=COLUMNS, primary_key=["id"]) as writer:
        for i in range(100):
            await writer.write((i, "ok", 0.5, at))
        await writer.write((1000, "short"))
        await writer.write({"id": 1001, "nope": 1})
        await writer.write(("x", "bad id", 0.0, at))
        await writer.write((2**63, "too big", 0.0, at))
        await writer.write((None, "null key", 0.0, at))
        await writer.write((1002, "naive", 0.0, datetime(2020, 1, 1)))
    report = writer.report
    assert (report.accepted, report.delivered, report.rejected) == (106, 100, 6)
    reasons = [r.reason for r in report.rejected_rows]
    assert reasons == [
        "row has 2 values for 4 columns",
        "unknown column 'nope'",
        "column 'id' (int8): expected an integer, got str",
        f"column 'id' (int8): {2**63} is out of range",
        "column 'id' (int8): NULL in a NOT NULL column",
        "column 'at' (timestamptz): timestamptz needs a timezone-aware datetime",
    ]
    assert report.rejected_rows[2].row == ("x", "bad id", 0.0, at)
    assert (await _fetch(pg_dsn, "SELECT count(*) AS n FROM ev"))[0]["n"] == 100


async def test_a_constraint_violation_rejects_only_its_rows_with_their_own_reasons(
    pg_dsn: str,
) -> None:
    """Duplicate keys reject only the duplicates, each with its own key; the others land."""
    at = datetime.now(UTC)
    async with open_writer(
        pg_dsn, table="ev", columns=COLUMNS, primary_key=["id"], batch_rows=10
    ) as writer:
        await writer.write_many((i, "a", 0.0, at) for i in range(10))
        await writer.flush()
        await writer.write_many((i, "b", 0.0, at) for i in range(5, 15))
    report = writer.report
    assert (report.delivered, report.rejected, report.undelivered) == (15, 5, 0)
    refused = {r.row[0]: r.reason for r in report.rejected_rows}
    assert set(refused) == set(range(5, 10))
    assert all(f"Key (id)=({key}) already exists" in why for key, why in refused.items())
    rows = await _fetch(pg_dsn, "SELECT id, name FROM ev ORDER BY id")
    assert [(r["id"], r["name"]) for r in rows] == [
        *((i, "a") for i in range(10)),
        *((i, "b") for i in range(10, 15)),
    ]


@pytest.mark.parametrize("encoded", [False, True], ids=["driver-encoded", "reference-encoded"])
async def test_one_duplicate_in_a_large_batch_strands_no_innocent_row(
    pg_dsn: str, encoded: bool
) -> None:
    """One key present before and one repeated in the batch: 2 rejects of 52, every row counted."""
    async with open_writer(pg_dsn, table="dup", columns={"id": "bigint", "v": "text"},
                           primary_key=["id"]) as first:  # fmt: skip
        await first.write((5, "old"))
    rows: list[tuple[int, Any]] = [(i, "b") for i in range(100, 152)]
    rows[10], rows[30] = (5, "b"), rows[29]
    if encoded:  # a value the driver refuses sends the batch through the reference encoders
        rows[40] = (140, 7)
    async with open_writer(pg_dsn, table="dup") as writer:
        await writer.write_many(rows)
    report = writer.report
    bad = 3 if encoded else 2
    assert (report.delivered, report.rejected, report.undelivered) == (52 - bad, bad, 0)
    refused = {r.row: r.reason for r in report.rejected_rows}
    assert "Key (id)=(5) already exists" in refused[(5, "b")]
    assert "Key (id)=(129) already exists" in refused[(129, "b")]
    found = await _fetch(pg_dsn, "SELECT id FROM dup ORDER BY id")
    kept = {r[0] for r in rows} - ({140} if encoded else set())
    assert [r["id"] for r in found] == sorted(kept)


async def test_a_batch_of_rows_all_present_already_is_rejected_row_by_row(pg_dsn: str) -> None:
    """8,000 keys written again in one batch: each refused alone, no server lock pile-up."""
    rows = [(i, "v") for i in range(8000)]
    cols = {"id": "bigint", "v": "text"}
    for _ in range(2):  # the second run: every key is there (~16,000 COPYs bisecting it)
        async with open_writer(pg_dsn, table="again", columns=cols, primary_key=["id"],
                               batch_rows=8000, max_in_flight=1) as writer:  # fmt: skip
            await writer.write_many(rows)
    report = writer.report
    assert (report.delivered, report.rejected, report.undelivered) == (0, 8000, 0), report.reasons
    assert all("already exists" in r.reason for r in report.rejected_rows)
    assert len(await _fetch(pg_dsn, "SELECT id FROM again")) == 8000


async def test_an_existing_table_gives_the_columns_and_a_subset_may_be_written(
    pg_dsn: str,
) -> None:
    """Without declared types the table's own columns are used; named columns fill a subset."""
    conn = await asyncpg.connect(pg_dsn)
    await conn.execute("CREATE TABLE t (id bigserial PRIMARY KEY, v int NOT NULL, note text)")
    await conn.close()
    async with open_writer(pg_dsn, table="t", columns=["v"]) as writer:
        await writer.write_many({"v": i} for i in range(50))
    rows = await _fetch(pg_dsn, "SELECT count(*) AS n, sum(v) AS s, max(id) AS m FROM t")
    assert (rows[0]["n"], rows[0]["s"], rows[0]["m"]) == (50, sum(range(50)), 50)


async def test_opening_refuses_a_missing_table_or_an_unknown_type_in_one_line(
    pg_dsn: str,
) -> None:
    """A missing table, a missing column and an unsupported type are one-line ConfigErrors."""
    with pytest.raises(ConfigError, match="table 'nope' does not exist"):
        async with open_writer(pg_dsn, table="nope"):
            pass
    conn = await asyncpg.connect(pg_dsn)
    await conn.execute("CREATE TABLE odd (id int, span interval)")
    await conn.close()
    with pytest.raises(ConfigError, match="has no column 'x'"):
        async with open_writer(pg_dsn, table="odd", columns=["id", "x"]):
            pass
    with pytest.raises(ConfigError, match="column 'span' has type interval"):
        async with open_writer(pg_dsn, table="odd"):
            pass
    with pytest.raises(ConfigError, match=r"columns\['a'\]: 'jsonx' is not a type the server"):
        async with open_writer(pg_dsn, table="nope", columns={"id": "int", "a": "jsonx"}):
            pass


async def test_a_generated_column_named_is_refused_as_generated(pg_dsn: str) -> None:
    """columns= naming a generated column says it is generated, not that the table lacks it."""
    conn = await asyncpg.connect(pg_dsn)
    await conn.execute("CREATE TABLE g (id int PRIMARY KEY, a int, "
                       "b int GENERATED ALWAYS AS (a * 2) STORED)")  # fmt: skip
    await conn.close()
    with pytest.raises(ConfigError) as caught:
        async with open_writer(pg_dsn, table="g", columns=["id", "a", "b"]):
            pass
    assert str(caught.value) == (
        "table 'g': column 'b' is generated (GENERATED ALWAYS AS ... STORED): PostgreSQL "
        "computes it and refuses a value for it; leave it out of columns="
    )
    async with open_writer(pg_dsn, table="g") as writer:  # every column: b is left out
        await writer.write({"id": 1, "a": 3})
    assert [tuple(r) for r in await _fetch(pg_dsn, "SELECT id, a, b FROM g")] == [(1, 3, 6)]


async def test_a_primary_key_other_than_the_existing_tables_is_refused(pg_dsn: str) -> None:
    """``primary_key=`` for an existing table must be its key: else one line, never ignored."""
    conn = await asyncpg.connect(pg_dsn)
    await conn.execute("CREATE TABLE nk (id int, v text); CREATE TABLE k (v text, id int, "
                       "PRIMARY KEY (id, v))")  # fmt: skip
    await conn.close()
    declared = {"id": "int", "v": "text"}
    for table, given, has, columns in (
        ("nk", ["id"], "no primary key", None),
        ("nk", ["id"], "no primary key", declared),
        ("k", ["v"], "primary key ['id', 'v']", None),
        ("k", ["id"], "primary key ['id', 'v']", ["id", "v"]),
    ):
        with pytest.raises(ConfigError) as info:
            async with open_writer(pg_dsn, table=table, columns=columns, primary_key=given):
                pass
        assert str(info.value).endswith(f"primary_key={given!r}, but table {table!r} has {has}")
        assert "\n" not in str(info.value)
    async with open_writer(pg_dsn, table="k", primary_key=["v", "id"]) as writer:  # its key
        await writer.write(("a", 1))
    assert writer.report.delivered == 1


@pytest.mark.parametrize("exists", [False, True])
@pytest.mark.parametrize("sql_type", ["bogustype", "foo bar baz"])
async def test_an_unknown_declared_type_is_one_line_whether_or_not_the_table_exists(
    pg_dsn: str, exists: bool, sql_type: str
) -> None:
    """``columns={"v": <no type>}``: the same one-line ConfigError, table there or not."""
    if exists:
        conn = await asyncpg.connect(pg_dsn)
        await conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        await conn.close()
    declared = {"id": "int", "v": sql_type}
    with pytest.raises(ConfigError) as info:
        async with open_writer(pg_dsn, table="t", columns=declared, primary_key=["id"]):
            pass
    assert str(info.value).endswith(f"columns['v']: {sql_type!r} is not a type the server knows")
    present = await _fetch(pg_dsn, "SELECT to_regclass('t') IS NOT NULL AS there")
    assert present[0]["there"] is exists


async def test_a_declared_type_other_than_the_existing_columns_is_refused(pg_dsn: str) -> None:
    """A declared type other than an existing column's is refused in one line; aliases are equal."""
    # ``v text`` declared ``bigint`` is refused; ``int`` for ``int4``, ``serial`` for ``integer``
    # and ``varchar(5)`` for ``varchar(9)`` are the same types.
    conn = await asyncpg.connect(pg_dsn)
    await conn.execute("CREATE TABLE t (id integer PRIMARY KEY, v text, w varchar(9))")
    await conn.close()
    with pytest.raises(ConfigError) as info:
        async with open_writer(pg_dsn, table="t", columns={"id": "int", "v": "bigint"}):
            pass
    assert str(info.value).endswith(
        "columns['v']: declared 'bigint', but table 't' has it as 'text'"
    )
    assert "\n" not in str(info.value)
    same = {"id": "serial", "v": "TEXT", "w": "varchar(5)"}
    async with open_writer(pg_dsn, table="t", columns=same) as writer:
        await writer.write({"id": 1, "v": "a", "w": "b"})
    assert [tuple(r) for r in await _fetch(pg_dsn, "SELECT id, v, w FROM t")] == [(1, "a", "b")]


async def test_backends_terminated_mid_copy_land_every_row_exactly_once(pg_dsn: str) -> None:
    """Killing the writer's backends during COPY and commit: retried batches never land twice."""
    at = datetime.now(UTC)
    n = 40_000
    kills = 0
    admin = await asyncpg.connect(pg_dsn)

    async def killer() -> None:
        nonlocal kills
        while kills < 25:
            done = await admin.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND (query LIKE 'COPY%' OR query LIKE 'INSERT INTO async_etl%')"
            )
            kills += sum(1 for r in done if r[0])
            await anyio.sleep(0.005)

    policy = RetryPolicy(max_retries=50, base=0.01, cap=0.1)
    writer = open_writer(
        pg_dsn, table="ev", columns=COLUMNS, primary_key=["id"], batch_rows=500,
        max_in_flight=4, retry=policy,
    )  # fmt: skip
    async with writer, anyio.create_task_group() as tg:
        tg.start_soon(killer)
        await writer.write_many((i, "x", 0.0, at) for i in range(n))
        await writer.flush()
        tg.cancel_scope.cancel()
    await admin.close()
    report = writer.report
    assert kills > 0
    assert report.retries > 0
    assert (report.delivered, report.rejected, report.undelivered) == (n, 0, 0), report.reasons
    rows = await _fetch(pg_dsn, "SELECT count(*) AS n, count(DISTINCT id) AS d FROM ev")
    assert (rows[0]["n"], rows[0]["d"]) == (n, n)


async def test_cancelling_the_writing_task_keeps_the_accounting_and_closes_the_pool(
    pg_dsn: str,
) -> None:
    """Cancelled mid-run: every accepted row is delivered or undelivered, and counted right."""
    at = datetime.now(UTC)
    writer = open_writer(
        pg_dsn, table="ev", columns=COLUMNS, primary_key=["id"], batch_rows=200, max_in_flight=2
    )

    async def produce() -> None:
        async with writer:
            i = 0
            while True:
                await writer.write((i, "x" * 200, 0.0, at))
                i += 1

    with anyio.move_on_after(1.0):
        await produce()
    report = writer.report
    assert report.accepted > 0
    assert report.accepted == report.delivered + report.rejected + report.undelivered
    assert report.rejected == 0
    rows = await _fetch(pg_dsn, "SELECT count(*) AS n, count(DISTINCT id) AS d FROM ev")
    assert rows[0]["n"] == rows[0]["d"] == report.delivered
    assert writer._sink._pool is None  # type: ignore[union-attr]


async def test_cancelled_while_closing_the_writer_still_closes_its_pool(pg_dsn: str) -> None:
    """The host's cancel lands in the flush at the block's end: rows accounted, pool closed."""
    at = datetime.now(UTC)
    writer = open_writer(
        pg_dsn, table="ev", columns=COLUMNS, primary_key=["id"], batch_rows=2000, max_in_flight=2
    )
    with anyio.CancelScope() as scope:
        async with writer:
            await writer.write_many((i, "x" * 200, 0.0, at) for i in range(39_000))
            # delivered at the next await: aclose's wait, the last 1000 rows still buffered
            scope.cancel()
    assert scope.cancelled_caught
    assert writer._sink._pool is None  # type: ignore[union-attr]
    report = writer.report
    assert report.accepted == 39_000 and report.undelivered > 0  # the flush was cut short
    assert report.accepted == report.delivered + report.rejected + report.undelivered
    rows = await _fetch(pg_dsn, "SELECT count(*) AS n, count(DISTINCT id) AS d FROM ev")
    assert rows[0]["n"] == rows[0]["d"] == report.delivered
    assert await writer.aclose() is report  # closing again answers, instead of raising


async def test_abort_mid_run_reports_buffered_rows_undelivered(pg_dsn: str) -> None:
    """``abort()`` stops at once; the target holds exactly the rows reported delivered."""
    at = datetime.now(UTC)
    async with open_writer(
        pg_dsn, table="ev", columns=COLUMNS, primary_key=["id"], batch_rows=1000, linger_ms=10_000
    ) as writer:
        await writer.write_many((i, "x", 0.0, at) for i in range(2500))
        report = await writer.abort()
    assert report.accepted == 2500
    assert report.delivered + report.undelivered == 2500
    assert report.undelivered >= 500  # the open batch never left
    assert "writer aborted before delivery" in report.reasons
    rows = await _fetch(pg_dsn, "SELECT count(*) AS n FROM ev")
    assert rows[0]["n"] == report.delivered
    with pytest.raises(Exception, match="not open"):
        await writer.write((9999, "late", 0.0, at))


async def test_in_flight_is_bounded_and_adjustable_at_runtime(pg_dsn: str) -> None:
    """No more batches are in flight than the limiter allows, also after it is changed live."""
    at = datetime.now(UTC)
    peaks: list[tuple[float, float]] = []
    async with open_writer(
        pg_dsn, table="ev", columns=COLUMNS, primary_key=["id"], batch_rows=100, max_in_flight=3
    ) as writer:
        limiter = writer.limits.in_flight

        async def watch() -> None:
            while True:
                peaks.append((limiter.borrowed_tokens, limiter.total_tokens))
                await asyncio.sleep(0)

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            await writer.write_many((i, "x", 0.0, at) for i in range(5000))
            limiter.total_tokens = 1
            await writer.write_many((i, "x", 0.0, at) for i in range(5000, 8000))
            await writer.flush()
            tg.cancel_scope.cancel()
    before = [b for b, t in peaks if t == 3]
    after = [b for b, t in peaks if t == 1]
    assert 1 <= max(before) <= 3
    settled = next(i for i, b in enumerate(after) if b <= 1)  # batches begun before the change
    assert all(b <= 1 for b in after[settled:])  # end; none start while one is in flight
    assert writer.report.delivered == 8000


async def test_batches_cancelled_mid_copy_are_counted_by_what_committed(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled while a COPY is held on a lock (others slow): delivered == rows in the table."""
    asked: list[bool | None] = []  # what the ledger said of each batch cut off in flight
    landed = PostgresRowsSink.landed

    async def counted(self: PostgresRowsSink, batch: Any) -> bool | None:
        asked.append(await landed(self, batch))
        return asked[-1]

    monkeypatch.setattr(PostgresRowsSink, "landed", counted)
    # row 1050's batch waits on an advisory lock the test holds: it is surely mid-COPY when the
    # cancel comes (a wall-clock cancel could find every COPY finished on a loaded machine)
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(
            "CREATE TABLE slow (id bigint PRIMARY KEY, v text); "
            "CREATE FUNCTION nap() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.id = 1050 THEN PERFORM pg_advisory_xact_lock(4242); "
            "ELSE PERFORM pg_sleep(0.002); END IF; RETURN NEW; END $$; "
            "CREATE TRIGGER nap BEFORE INSERT ON slow FOR EACH ROW EXECUTE FUNCTION nap(); "
            "SELECT pg_advisory_lock(4242)"
        )
        writer = open_writer(pg_dsn, table="slow", batch_rows=100, max_in_flight=3, linger_ms=5)

        async def produce() -> None:
            async with writer:
                await writer.write_many((i, "x") for i in range(100_000))

        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            await until_waiting_on(conn, 4242)
            tg.cancel_scope.cancel()
    finally:
        await conn.close()  # lets go of the lock: a COPY the cancel missed could commit now
    report = writer.report
    assert report.accepted == report.delivered + report.undelivered > report.delivered > 0
    assert report.undelivered >= 100  # the held batch never committed
    # a batch cut off after it was sent commits or not as the server decides; the ledger says
    assert set(report.reasons) <= {"writer cancelled before delivery", CANCELLED}
    assert False in asked  # the held batch was asked about, and the ledger said not landed
    rows = await _fetch(pg_dsn, "SELECT count(*) AS n FROM slow")
    assert rows[0]["n"] == report.delivered
    assert not await _fetch(pg_dsn, "SELECT id FROM slow WHERE id = 1050")


async def test_landed_tells_a_batch_committed_with_refused_rows_from_a_whole_one(
    pg_dsn: str,
) -> None:
    """After a cut-off send: whole batch True, one with a duplicate refused None, unsent False."""
    sink = PostgresRowsSink(pg_dsn, table="ld", concurrency=1)
    try:
        await sink.open({"id": "bigint"}, ["id"])
        whole = RecordsBatch(IdRange(1, 3), b"", sink.wire, records=[(1,), (2,), (3,)])
        split = RecordsBatch(IdRange(4, 3), b"", sink.wire, records=[(4,), (1,), (6,)])
        unsent = RecordsBatch(IdRange(7, 1), b"", sink.wire, records=[(7,)])
        assert (await sink.send(whole, 1)).delivered == 3
        result = await sink.send(split, 1)
        assert result.delivered == 2
        assert [e.row_id for e in result.rejected] == [5]
        assert (await sink.landed(whole), await sink.landed(split)) == (True, None)
        assert await sink.landed(unsent) is False
    finally:
        await sink.aclose()


async def test_a_batch_found_not_landed_can_no_longer_land(pg_dsn: str) -> None:
    """``landed`` False fences the batch out: its query, run by the server after, lands nothing."""
    sink = PostgresRowsSink(pg_dsn, table="fz", concurrency=2)
    try:
        await sink.open({"id": "bigint"}, ["id"])
        batch = RecordsBatch(IdRange(1, 2), b"", sink.wire, records=[(1,), (2,)])
        assert await sink.landed(batch) is False
        assert await sink.landed(batch) is False  # asked again: still known not landed
        # the batch's own query, as a cut-off connection's backend would run it only now
        record = sink._sql.record_literal(sink.ledger_key, 1, 2)
        assert sink._pool is not None
        async with sink._pool.acquire() as conn:
            with pytest.raises(asyncpg.UniqueViolationError):
                await sink._copy(conn, batch, record)
    finally:
        await sink.aclose()
    assert await _fetch(pg_dsn, "SELECT id FROM fz") == []


async def test_landed_waits_for_a_batch_still_being_written(pg_dsn: str) -> None:
    """Asked while the batch's COPY runs, ``landed`` waits for its commit and says True."""
    await _napping(pg_dsn, "sl (id bigint PRIMARY KEY)", 0.3, "AFTER", "STATEMENT")
    sink = PostgresRowsSink(pg_dsn, table="sl", concurrency=2)
    try:
        await sink.open(None, ())
        batch = RecordsBatch(IdRange(1, 2), b"", sink.wire, records=[(1,), (2,)])
        async with anyio.create_task_group() as tg:
            tg.start_soon(sink.send, batch, 1)
            await anyio.sleep(0.1)  # the COPY has begun, its ledger row is written
            assert await sink.landed(batch) is True
    finally:
        await sink.aclose()
    assert await _fetch(pg_dsn, "SELECT count(*) AS n FROM sl") == [(2,)]


async def test_a_ledger_key_with_quotes_and_backslashes_is_ledgered_exactly(pg_dsn: str) -> None:
    """The ledger row sent as literals with the COPY (one query) keeps an odd key as it is."""
    sink = PostgresRowsSink(pg_dsn, table="lk", concurrency=1)
    key = "lk#it's \\ a key'); DROP TABLE lk; --"
    sink.ledger_key = key
    try:
        await sink.open({"id": "bigint"}, ["id"])
        batch = RecordsBatch(IdRange(1, 2), b"", sink.wire, records=[(1,), (2,)])
        assert (await sink.send(batch, 1)).delivered == 2
        assert await sink.send(batch, 2) == SendResult(delivered=2)  # a retry: seen landed
        assert await sink.landed(batch) is True
    finally:
        await sink.aclose()
    ledger = await _fetch(pg_dsn, "SELECT tbl, start_id, rows FROM async_etl_bench_ledger")
    assert [tuple(r) for r in ledger] == [(key, 1, 2)]
    assert [tuple(r) for r in await _fetch(pg_dsn, "SELECT id FROM lk ORDER BY id")] == [(1,), (2,)]


async def test_a_connection_goes_back_to_the_pool_without_a_reset_query(pg_dsn: str) -> None:
    """After a batch the writer's idle connection last ran its ledger row and COPY, no reset."""
    async with open_writer(pg_dsn, table="t", columns={"id": "bigint"}, max_in_flight=1) as w:
        await w.write_many([(i,) for i in range(10)])
        await w.flush()
        got = await _fetch(
            pg_dsn,
            "SELECT query FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
        )
    assert w.report.delivered == 10
    queries = [r[0] for r in got]
    assert len(queries) == 1 and "COPY" in queries[0], queries


async def test_text_that_varchar_n_or_char_n_would_cut_or_pad_is_rejected(pg_dsn: str) -> None:
    """varchar(n) / char(n): longer (even by blanks) or, for char(n), shorter text is refused."""
    columns = {"id": "bigint", "v": "varchar(3)", "c": "character(3)"}
    rows = [
        (1, "abc", "xyz"), (2, "ab", "x z"), (3, "abc  ", "xyz"), (4, "abcd", "xyz"),
        (5, "abc", "xy"), (6, "abc", "xyz "), (7, None, None), (8, "é€x", "€€€"),
    ]  # fmt: skip
    longer = "column 'v' (varchar(3)): text of {} characters is longer than varchar(3); "
    expected = [
        (3, longer.format(5) + "PostgreSQL would store it cut to its first 3 (its excess is "
         "blanks)"),
        (4, longer.format(4) + "PostgreSQL would refuse it"),
        (5, "column 'c' (character(3)): text of 2 characters is shorter than character(3); "
         "PostgreSQL would store it padded with blanks (pass exactly 3 characters, or use "
         "varchar or text)"),
        (6, "column 'c' (character(3)): text of 4 characters is longer than character(3); "
         "PostgreSQL would store it cut to its first 3 (its excess is blanks)"),
    ]  # fmt: skip
    for table, many in (("vc_many", True), ("vc_one", False)):
        async with open_writer(pg_dsn, table=table, columns=columns, primary_key=["id"]) as w:
            if many:
                await w.write_many(rows)
            else:
                for row in rows:
                    await w.write(row)
        report = w.report
        assert (report.delivered, report.rejected) == (4, 4), report.reasons
        assert [(r.row[0], r.reason) for r in report.rejected_rows] == expected
        stored = await _fetch(pg_dsn, f"SELECT id, v, c FROM {table} ORDER BY id")
        assert [tuple(r) for r in stored] == [rows[i] for i in (0, 1, 6, 7)]


async def test_an_identity_always_column_is_left_out_of_every_column(pg_dsn: str) -> None:
    """No columns=: an ALWAYS identity is left to the server; a NULL says why no DEFAULT."""
    conn = await asyncpg.connect(pg_dsn)
    await conn.execute("CREATE TABLE ident (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                       "v text, d int NOT NULL DEFAULT 5)")  # fmt: skip
    await conn.close()
    async with open_writer(pg_dsn, table="ident") as writer:
        await writer.write_many([{"v": "a", "d": 1}, ("b", 2)])
        await writer.write({"v": "c"})
    report = writer.report
    assert (report.delivered, report.rejected) == (2, 1), report.reasons
    assert [r.reason for r in report.rejected_rows] == [
        "column 'd' (int4): NULL in a NOT NULL column (a missing key is NULL: the column's "
        "DEFAULT applies only when columns= leaves the column out)"
    ]
    async with open_writer(pg_dsn, table="ident", columns=["v"]) as writer:
        await writer.write({"v": "c"})
    stored = await _fetch(pg_dsn, "SELECT id, v, d FROM ident ORDER BY id")
    assert [tuple(r) for r in stored] == [(1, "a", 1), (2, "b", 2), (3, "c", 5)]


async def test_offsets_of_seconds_and_microseconds_store_their_exact_instant(pg_dsn: str) -> None:
    """timestamptz from offsets of seconds, microseconds and LMT zones keeps the exact instant."""
    amsterdam = ZoneInfo("Europe/Amsterdam")  # local mean time +00:19:32 until 1937
    values = [
        datetime(2024, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=-5, minutes=-30, seconds=-30))),
        datetime(1920, 6, 1, 12, 0, 0, 123456, tzinfo=amsterdam),
        datetime(2024, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=1, microseconds=500))),
    ]
    async with open_writer(
        pg_dsn, table="v", columns={"k": "int", "v": "timestamptz"}, primary_key=["k"]
    ) as writer:
        await writer.write_many(enumerate(values))
    assert writer.report.delivered == len(values), writer.report.reasons
    rows = await _fetch(
        pg_dsn, "SELECT k, (extract(epoch FROM v) * 1000000)::bigint AS us FROM v ORDER BY k"
    )
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert [r["us"] for r in rows] == [(v - epoch) // timedelta(microseconds=1) for v in values]
