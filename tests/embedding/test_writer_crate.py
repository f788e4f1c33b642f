"""The writer into the CrateDB stand-in: faults, per-item failures, refusals, exactly once."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from async_etl import ConfigError, RetryPolicy, open_writer
from async_etl.drivers import cratedb as cratedb_driver
from async_etl.testing.crate import CrateStandIn, StandInConfig
from async_etl.testing.crate.probe import post_sql

COLUMNS = {"id": "BIGINT", "name": "TEXT", "score": "DOUBLE PRECISION"}
PATIENT = RetryPolicy(max_retries=30, base=0.005, cap=0.05)


async def _ids(crate: CrateStandIn, table: str = "ev") -> list[int]:
    async with aiohttp.ClientSession() as session:
        await post_sql(session, crate.url, f"REFRESH TABLE {table}")
        _, body = await post_sql(session, crate.url, f"SELECT id FROM {table} ORDER BY id")
    return [row[0] for row in body["rows"]]


@pytest.mark.parametrize(
    "faults",
    [
        {"fail_rate": 0.3, "busy_rate": 0.1},
        {"item_fail_rate": 0.2},
        {"drop_rate": 0.3},
        {"fail_rate": 0.1, "item_fail_rate": 0.1, "drop_rate": 0.15},
    ],
    ids=["503-429", "item-5002", "dropped", "all"],
)
async def test_faults_deliver_every_row_exactly_once(faults: dict[str, float]) -> None:
    """503/429 answers, per-item failures and dropped connections: each row lands once."""
    n = 3000
    async with CrateStandIn(StandInConfig(seed=5)) as crate:
        writer = open_writer(
            crate.url, table="ev", columns=COLUMNS, primary_key=["id"], batch_rows=250,
            max_in_flight=4, retry=PATIENT,
        )  # fmt: skip
        async with writer:
            for name, rate in faults.items():
                setattr(crate, name, rate)
            await writer.write_many({"id": i, "name": f"n{i}", "score": i / 2} for i in range(n))
            await writer.flush()
            for name in faults:
                setattr(crate, name, 0.0)
        report = writer.report
        assert report.retries > 0
        assert (report.delivered, report.rejected, report.undelivered) == (n, 0, 0), report.reasons
        assert await _ids(crate) == list(range(n))


async def test_a_key_already_present_is_rejected_with_the_server_reason(
    crate_standin: CrateStandIn,
) -> None:
    """On a first attempt a duplicate key is the host's row refused (4091), not a resend."""
    crate = crate_standin
    async with open_writer(crate.url, table="ev", columns=COLUMNS, primary_key=["id"]) as w:
        await w.write_many((i, "a", 0.0) for i in range(10))
    async with open_writer(crate.url, table="ev") as again:
        await again.write_many((i, "b", 0.0) for i in range(5, 15))
    report = again.report
    assert (report.delivered, report.rejected) == (5, 5)
    assert {r.row[0] for r in report.rejected_rows} == set(range(5, 10))
    assert all("4091" in r.reason for r in report.rejected_rows)
    assert await _ids(crate) == list(range(15))


async def test_server_refusals_name_the_row_and_reason() -> None:
    """A NOT NULL violation refuses its own row; a value JSON cannot carry never leaves."""
    async with CrateStandIn() as crate:
        cols = {"id": "BIGINT", "v": "TEXT NOT NULL", "x": "DOUBLE"}
        async with open_writer(crate.url, table="nn", columns=cols, primary_key=["id"]) as w:
            await w.write_many([(1, "ok", 1.0), (2, None, 2.0), (3, "ok", float("nan"))])
        report = w.report
        assert (report.delivered, report.rejected) == (1, 2)
        refused = {r.row[0]: r.reason for r in report.rejected_rows}
        assert set(refused) == {2, 3}
        nan = "column x: nan cannot travel in CrateDB's JSON (it would arrive as NULL)"
        assert refused[3] == nan
        assert "null" in refused[2].lower() or "not null" in refused[2].lower()
        assert await _ids(crate, "nn") == [1]


async def test_a_table_without_primary_key_is_refused_in_one_line() -> None:
    """Without a primary key a resend could land twice: the writer does not open."""
    async with CrateStandIn() as crate:
        async with aiohttp.ClientSession() as session:
            await post_sql(session, crate.url, "CREATE TABLE nokey (id BIGINT, v TEXT)")
        with pytest.raises(ConfigError, match="has no primary key"):
            async with open_writer(crate.url, table="nokey"):
                pass
        with pytest.raises(ConfigError, match="does not exist"):
            async with open_writer(crate.url, table="missing"):
                pass


@pytest.mark.parametrize(("threshold", "gzipped"), [(None, True), (0, False)])
async def test_gzip_threshold_decides_whether_bodies_are_compressed(
    crate_standin: CrateStandIn,
    monkeypatch: pytest.MonkeyPatch,
    threshold: int | None,
    gzipped: bool,
) -> None:
    """By default large bodies are gzipped; ``gzip_threshold=0`` sends them as they are."""
    crate = crate_standin
    sizes: list[int] = []
    real = cratedb_driver.maybe_gzip

    def spy(body: bytes, at: int) -> tuple[bytes, dict[str, str]]:
        sizes.append(len(body))
        return real(body, at)

    monkeypatch.setattr(cratedb_driver, "maybe_gzip", spy)
    async with open_writer(
        crate.url, table="ev", columns=COLUMNS, primary_key=["id"], gzip_threshold=threshold
    ) as writer:
        await writer.write_many([(i, "x" * 100, 0.5) for i in range(2000)])
    assert writer.report.ok and writer.report.delivered == 2000
    assert await _ids(crate) == list(range(2000))
    assert bool(sizes) == gzipped


async def test_large_bodies_are_gzipped_in_the_loop_and_land(
    crate_standin: CrateStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body past the inline size is gzipped a slice at a time in the loop, not in a thread."""
    crate = crate_standin
    paced: list[int] = []
    real = cratedb_driver.gzip_paced

    async def spy(body: bytes) -> bytes:
        paced.append(len(body))
        return await real(body)

    def no_thread(*args: object) -> object:
        raise AssertionError("the writer gzipped in a thread")

    monkeypatch.setattr(cratedb_driver, "gzip_paced", spy)
    monkeypatch.setattr(cratedb_driver.CrateDBClient, "in_thread", no_thread)
    rows = [(i, f"{i:0>150}", i / 7) for i in range(3000)]
    async with open_writer(crate.url, table="ev", columns=COLUMNS, primary_key=["id"]) as writer:
        await writer.write_many(rows)
    assert writer.report.ok and writer.report.delivered == 3000
    assert paced and min(paced) >= cratedb_driver._INLINE_GZIP_MAX
    assert await _ids(crate) == list(range(3000))


def test_gzip_threshold_is_refused_for_other_urls_and_below_zero() -> None:
    """A CrateDB-only setting given with PostgreSQL, or a negative one, is a one-line error."""
    with pytest.raises(ConfigError, match="CrateDB URLs only"):
        open_writer("postgresql://u@h/db", table="t", gzip_threshold=0)
    with pytest.raises(ConfigError, match="0 \\(never\\) or more"):
        open_writer("http://h:4200", table="t", gzip_threshold=-1)


@pytest.mark.parametrize(
    ("columns", "bad", "why"),
    [
        ({"id": "BIGINT", "i": "INTEGER"}, {"id": 7, "i": 2**40}, "CrateDB's INTEGER"),
        ({"id": "INTEGER", "i": "INTEGER"}, {"id": 2**63, "i": 7}, "BIGINT range"),
        ({"id": "INTEGER", "i": "SMALLINT"}, {"id": 7, "i": 70_000}, "CrateDB's SMALLINT"),
        ({"id": "BIGINT", "i": "INTEGER"}, {"id": 7, "i": "abc"}, "Cannot cast value"),
        ({"id": "BIGINT", "i": "TEXT"}, {"id": 7, "i": {"a": 1}}, "Cannot cast value"),
    ],
    ids=["int-range", "id-2**63", "smallint-range", "text-in-int", "object-in-text"],
)  # fmt: skip
async def test_one_value_crate_cannot_store_rejects_only_its_row(
    crate_standin: CrateStandIn, columns: dict[str, str], bad: dict[str, object], why: str
) -> None:
    """A value out of its column's range or not castable rejects its row; the others land."""
    rows = [{"id": i, "i": i} for i in range(10) if i != 7]
    async with open_writer(crate_standin.url, table="rg", columns=columns, primary_key=["id"]) as w:
        await w.write_many([*rows[:5], bad, *rows[5:]])
    report = w.report
    assert (report.delivered, report.rejected, report.undelivered) == (9, 1, 0), report.reasons
    assert [r.row for r in report.rejected_rows] == [(bad["id"], bad["i"])]
    assert why in report.rejected_rows[0].reason
    assert await _ids(crate_standin, "rg") == [i for i in range(10) if i != 7]


@pytest.mark.parametrize("bad", ["abc", True], ids=["text-in-int", "bool-in-int"])
async def test_a_value_crate_cannot_cast_alone_in_its_batch_rejects_only_its_row(
    crate_standin: CrateStandIn, bad: object
) -> None:
    """A single-row bulk refused as a whole (400 4000 cast) rejects its row, not the writer."""
    columns = {"id": "BIGINT", "i": "INTEGER"}
    url = crate_standin.url
    async with open_writer(
        url, table="one", columns=columns, primary_key=["id"], batch_rows=1
    ) as w:
        for i in range(4):
            await w.write({"id": i, "i": bad if i == 2 else i})
    report = w.report
    assert (report.delivered, report.rejected, report.undelivered) == (3, 1, 0), report.reasons
    assert [r.row for r in report.rejected_rows] == [(2, bad)]
    assert "Cannot cast value" in report.rejected_rows[0].reason
    assert await _ids(crate_standin, "one") == [0, 1, 3]


@pytest.mark.parametrize("http", ["aiohttp", "lean"])
@pytest.mark.parametrize("batch_rows", [1, 200])
async def test_a_row_over_the_servers_body_limit_rejects_only_itself(
    http: str, batch_rows: int
) -> None:
    """A bulk answered 413 (one row alone over the body limit): that row rejected, the rest land."""
    config = StandInConfig(max_body_bytes=200_000, http=http)
    rows = [{"id": i, "t": "x" * 1000} for i in range(100)]
    big = {"id": 1000, "t": "y" * 300_000}
    async with CrateStandIn(config) as crate:
        async with open_writer(crate.url, table="big", columns={"id": "bigint", "t": "text"},
                               primary_key=["id"], gzip_threshold=0,
                               batch_rows=batch_rows) as w:  # fmt: skip
            await w.write_many([*rows[:50], big, *rows[50:]])
        report = w.report
        assert (report.delivered, report.rejected, report.undelivered) == (100, 1, 0)
        assert [r.row[0] for r in report.rejected_rows] == [1000]
        assert "over the server's request size limit" in report.rejected_rows[0].reason
        assert await _ids(crate, "big") == list(range(100))


async def test_declared_columns_are_checked_before_the_table_is_created(
    crate_standin: CrateStandIn,
) -> None:
    """No primary key, or a type CrateDB does not know: one-line ConfigError, no table made."""
    url = crate_standin.url
    with pytest.raises(ConfigError, match="no primary key"):
        async with open_writer(url, table="nk", columns={"id": "BIGINT", "v": "TEXT"}):
            pass
    with pytest.raises(ConfigError, match=r"columns\['j'\]: 'json' is not a type the server"):
        async with open_writer(url, table="nk", columns={"id": "BIGINT", "j": "json"},
                               primary_key=["id"]):  # fmt: skip
            pass
    async with aiohttp.ClientSession() as session:
        _, body = await post_sql(session, url, "SELECT table_name FROM information_schema.tables "
                                 "WHERE table_name = 'nk'")  # fmt: skip
    assert body["rows"] == []


async def test_a_declared_type_or_key_other_than_the_existing_tables_is_refused_at_open(
    crate_standin: CrateStandIn,
) -> None:
    """An existing table's column type or primary key declared otherwise: one line, no write."""
    url = crate_standin.url
    async with open_writer(url, table="dt", columns=COLUMNS, primary_key=["id"]) as w:
        await w.write({"id": 1, "name": "a", "score": 0.5})
    same = {"id": "long", "name": "string", "score": "double"}  # other names of the same types
    async with open_writer(url, table="dt", columns=same, primary_key=["id"]) as w:
        await w.write({"id": 2, "name": "b", "score": 1.5})
    other = {**COLUMNS, "name": "INTEGER"}
    with pytest.raises(ConfigError) as info:
        async with open_writer(url, table="dt", columns=other, primary_key=["id"]):
            pass
    assert str(info.value).endswith(
        "columns['name']: declared 'INTEGER', but table 'dt' has it as 'text'"
    )
    for columns in (None, COLUMNS):  # a key other than the table's would be silently ignored
        with pytest.raises(ConfigError) as info:
            async with open_writer(url, table="dt", columns=columns, primary_key=["name"]):
                pass
        assert str(info.value).endswith("primary_key=['name'], but table 'dt' has primary key "
                                        "['id']")  # fmt: skip
    assert await _ids(crate_standin, "dt") == [1, 2]


async def test_a_value_json_cannot_carry_in_a_checked_batch_rejects_only_its_row(
    crate_standin: CrateStandIn,
) -> None:
    """A lone surrogate passes the column check but not orjson: its row alone is rejected."""
    rows = [(i, f"n{i}", i / 2) for i in range(40)]
    rows[17] = (17, "bad \ud800", 8.5)
    async with open_writer(crate_standin.url, table="sg", columns=COLUMNS, primary_key=["id"]) as w:
        await w.write_many(rows)
    report = w.report
    assert (report.delivered, report.rejected, report.undelivered) == (39, 1, 0), report.reasons
    assert [r.row for r in report.rejected_rows] == [rows[17]]
    assert await _ids(crate_standin, "sg") == [i for i in range(40) if i != 17]


class _Index:
    """Not an integer, but with ``__index__``: the intake's integer probe takes it, JSON not."""

    def __index__(self) -> int:
        return 3


async def test_an_index_object_in_an_integer_column_rejects_only_its_row(
    crate_standin: CrateStandIn,
) -> None:
    """A value the integer column's probe passes but orjson refuses: its row alone is rejected."""
    columns = {"id": "BIGINT", "n": "INTEGER", "name": "TEXT"}
    rows: list[tuple[object, ...]] = [(i, i, f"n{i}") for i in range(40)]
    rows[17] = (17, _Index(), "n17")
    async with open_writer(crate_standin.url, table="ix", columns=columns, primary_key=["id"]) as w:
        await w.write_many(rows)
    report = w.report
    assert (report.delivered, report.rejected, report.undelivered) == (39, 1, 0), report.reasons
    assert [r.row for r in report.rejected_rows] == [rows[17]]
    assert "_Index" in report.rejected_rows[0].reason
    assert await _ids(crate_standin, "ix") == [i for i in range(40) if i != 17]


async def test_an_analysis_error_on_every_item_rejects_only_the_bad_row() -> None:
    """CrateDB 5.10.9 puts one value's cast error on every item (crate#18067): good rows land."""
    columns = {"id": "BIGINT", "i": "INTEGER"}
    rows: list[dict[str, object]] = [{"id": i, "i": i} for i in range(10)]
    rows[7] = {"id": 7, "i": "abc"}
    async with CrateStandIn(StandInConfig(version="5.10.9", analysis_per_item=True)) as crate:
        async with open_writer(crate.url, table="ap", columns=columns, primary_key=["id"]) as w:
            await w.write_many(rows)
        report = w.report
        assert (report.delivered, report.rejected, report.undelivered) == (9, 1, 0), report.reasons
        assert [r.row for r in report.rejected_rows] == [(7, "abc")]
        assert "Cannot cast value" in report.rejected_rows[0].reason
        assert await _ids(crate, "ap") == [i for i in range(10) if i != 7]


@pytest.mark.parametrize(
    ("kind", "good", "bad", "why"),
    [
        ("TIMESTAMP WITH TIME ZONE", datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 1),
         "column at: timestamptz needs a timezone-aware datetime"),
        ("TIMESTAMP WITHOUT TIME ZONE", datetime(2024, 1, 1), datetime(2024, 1, 1, tzinfo=UTC),
         "column at: timestamp (without time zone) needs a naive datetime"),
    ],
    ids=["naive-in-tz", "aware-in-no-tz"],
)  # fmt: skip
async def test_a_datetime_of_the_other_zone_kind_rejects_its_row(
    crate_standin: CrateStandIn, kind: str, good: datetime, bad: datetime, why: str
) -> None:
    """A naive datetime for a zoned column (or aware for an unzoned one) is refused, as in PG."""
    rows = [{"id": i, "at": bad if i == 3 else good} for i in range(6)]
    columns = {"id": "BIGINT", "at": kind}
    async with open_writer(crate_standin.url, table="tz", columns=columns, primary_key=["id"]) as w:
        await w.write_many(rows)
    report = w.report
    assert (report.delivered, report.rejected, report.undelivered) == (5, 1, 0), report.reasons
    assert [(r.row, r.reason) for r in report.rejected_rows] == [((3, bad), why)]
    assert await _ids(crate_standin, "tz") == [0, 1, 2, 4, 5]


async def test_a_declared_column_crate_reserves_is_refused_in_one_line() -> None:
    """columns={'_x': ...} (CrateDB's system column pattern) is refused before any CREATE."""
    async with CrateStandIn() as crate:
        with pytest.raises(ConfigError) as err:
            columns = {"id": "bigint", "_x": "text"}
            async with open_writer(crate.url, table="under", columns=columns, primary_key=["id"]):
                pass
        assert not crate.catalog.tables
    line = err.value.message
    assert "\n" not in line and "column '_x'" in line and "system columns" in line


@pytest.mark.parametrize(
    ("kind", "bad", "why"),
    [
        ("TIMESTAMP WITHOUT TIME ZONE", "2026-01-01T00:00:00.123456",
         "column at: timestamp '2026-01-01T00:00:00.123456' has digits past the millisecond; "
         "CrateDB stores milliseconds (it would cut them)"),
        ("TIMESTAMP WITH TIME ZONE", "2026-01-01 00:00:00.0005Z",
         "column at: timestamp '2026-01-01 00:00:00.0005Z' has digits past the millisecond; "
         "CrateDB stores milliseconds (it would cut them)"),
        ("TIMESTAMP WITHOUT TIME ZONE", "2026-01-01T00:00:00+02:00",
         "column at: timestamp '2026-01-01T00:00:00+02:00' has an offset; CrateDB ignores it "
         "for a TIMESTAMP WITHOUT TIME ZONE (it would store the wall clock as UTC)"),
    ],
    ids=["micros-no-tz", "micros-tz", "offset-no-tz"],
)  # fmt: skip
async def test_a_timestamp_string_crate_would_change_rejects_its_row(
    crate_standin: CrateStandIn, kind: str, bad: str, why: str
) -> None:
    """An ISO string CrateDB would store cut or shifted is refused; exact ones are stored."""
    good = ["2026-01-01T00:00:00.123", "2026-01-01 00:00:00.120000", "2026-01-01", None]
    if "WITH TIME" in kind:
        good.append("2026-01-01T00:00:00.123+02:00")
    else:
        good.append("2026-01-01T00:00:00Z")
    values = [*good[:2], bad, *good[2:]]
    columns = {"id": "BIGINT", "at": kind}
    async with open_writer(crate_standin.url, table="ts", columns=columns, primary_key=["id"]) as w:
        await w.write_many([(i, v) for i, v in enumerate(values)])
        await w.write((100, bad))
    report = w.report
    assert (report.delivered, report.rejected, report.undelivered) == (len(good), 2, 0)
    assert [(r.row, r.reason) for r in report.rejected_rows] == [((2, bad), why), ((100, bad), why)]
    assert await _ids(crate_standin, "ts") == [i for i in range(len(values)) if i != 2]


async def _write_texts(
    crate: CrateStandIn,
    column: str,
    sql_type: str,
    declared: bool,
    rows: list[tuple[int, Any]],
    singles: list[tuple[int, Any]],
) -> tuple[Any, list[tuple[Any, ...]]]:
    """Write ``rows`` (write_many) then ``singles`` (write) into ``{column}s`` (id, ``column``).

    The table is made by hand first, or by the writer from ``columns=`` when ``declared``;
    gives the writer's report and the stored (id, value) rows by id.
    """
    url, table = crate.url, f"{column}s"
    columns = {"id": "BIGINT", column: sql_type} if declared else None
    if not declared:
        async with aiohttp.ClientSession() as session:
            ddl = f"CREATE TABLE {table} (id BIGINT PRIMARY KEY, {column} {sql_type})"
            await post_sql(session, url, ddl)
    async with open_writer(url, table=table, columns=columns, primary_key=["id"]) as w:
        await w.write_many(rows)
        for row in singles:
            await w.write(row)
    async with aiohttp.ClientSession() as session:
        await post_sql(session, url, f"REFRESH TABLE {table}")
        _, body = await post_sql(session, url, f"SELECT id, {column} FROM {table} ORDER BY id")
    return w.report, [tuple(r) for r in body["rows"]]


@pytest.mark.parametrize("declared", [False, True], ids=["existing", "declared"])
async def test_a_date_for_a_timestamp_or_a_float_for_an_integer_rejects_its_row(
    crate_standin: CrateStandIn, declared: bool
) -> None:
    """As into PostgreSQL: a date into TIMESTAMP WITH TIME ZONE, 1.0 into INTEGER are rejected."""
    at = datetime(2024, 1, 1, tzinfo=UTC)
    report, stored = await _write_texts(
        crate_standin, "seen", "TIMESTAMP WITH TIME ZONE", declared,
        [(1, at), (2, date(2024, 1, 1))], [(3, date(2024, 1, 2))],
    )  # fmt: skip
    # before: 3 delivered, the dates stored as midnight UTC
    assert (report.delivered, report.rejected, report.undelivered) == (1, 2, 0), report.reasons
    needs = "column seen: timestamptz needs a timezone-aware datetime"
    assert [(r.row[0], r.reason) for r in report.rejected_rows] == [(2, needs), (3, needs)]
    assert [r[0] for r in stored] == [1]
    report, stored = await _write_texts(
        crate_standin, "qty", "INTEGER", declared, [(1, 1), (2, 1.0)], [(3, 2.0)]
    )
    assert (report.delivered, report.rejected, report.undelivered) == (1, 2, 0), report.reasons
    why = "column qty: expected an integer, got float"
    assert [(r.row[0], r.reason) for r in report.rejected_rows] == [(2, why), (3, why)]
    assert stored == [(1, 1)]


@pytest.mark.parametrize("declared", [False, True], ids=["existing", "declared"])
async def test_text_longer_than_varchar_n_rejects_its_row(
    crate_standin: CrateStandIn, declared: bool
) -> None:
    """VARCHAR(n): a longer text (even by blanks, which CrateDB would cut) is refused per row."""
    rows = [(1, "abc"), (2, "abc  "), (3, "abcd"), (4, None), (5, "ab "), (6, "é€x")]
    longer = "column note: text of {} characters is longer than the target's VARCHAR(3); "
    why = {
        2: longer.format(5) + "CrateDB would store it cut to its first 3 (its excess is blanks)",
        3: longer.format(4) + "CrateDB would refuse it",
    }
    singles = [(12, "abc  "), (13, "abcd")]
    report, stored = await _write_texts(
        crate_standin, "note", "VARCHAR(3)", declared, rows, singles
    )
    assert (report.delivered, report.rejected, report.undelivered) == (4, 4, 0), report.reasons
    assert [(r.row[0], r.reason) for r in report.rejected_rows] == [
        (2, why[2]), (3, why[3]), (12, why[2]), (13, why[3]),
    ]  # fmt: skip
    assert stored == [rows[i] for i in (0, 3, 4, 5)]


@pytest.mark.parametrize(
    ("table", "named"),
    [("_under", "table name '_under'"), ("Upper", "table name 'Upper'"),
     ("_s.t", "schema name '_s'"), ("S.t", "schema name 'S'")],
)  # fmt: skip
async def test_a_table_name_crate_refuses_is_refused_in_one_line(table: str, named: str) -> None:
    """table='_under' / 'Upper' (CrateDB's naming restrictions) is refused before any CREATE."""
    async with CrateStandIn() as crate:
        with pytest.raises(ConfigError) as err:
            columns = {"id": "bigint", "x": "text"}
            async with open_writer(crate.url, table=table, columns=columns, primary_key=["id"]):
                pass
        assert not crate.catalog.tables
    line = err.value.message
    assert "\n" not in line and named in line and "Naming restrictions" in line, line


@pytest.mark.parametrize("declared", [False, True], ids=["existing", "declared"])
async def test_text_not_of_char_n_length_rejects_its_row(
    crate_standin: CrateStandIn, declared: bool
) -> None:
    """CHAR(3): a longer text (even by blanks) or a shorter one (CrateDB pads it) is refused."""
    rows = [(1, "abc"), (2, "abc  "), (3, "abcd"), (4, None), (5, "ab "), (6, "é€x"), (7, "ab")]
    longer = "column code: text of {} characters is longer than the target's CHARACTER(3); "
    why = {
        2: longer.format(5) + "CrateDB would store it cut to its first 3 (its excess is blanks)",
        3: longer.format(4) + "CrateDB would refuse it",
        7: "column code: text of 2 characters is shorter than the target's CHARACTER(3); "
        "CrateDB would store it padded with blanks (pass exactly 3 characters, or use varchar "
        "or text)",
    }
    singles = [(12, "abc  "), (17, "ab")]
    report, stored = await _write_texts(crate_standin, "code", "CHAR(3)", declared, rows, singles)
    assert (report.delivered, report.rejected, report.undelivered) == (4, 5, 0), report.reasons
    assert [(r.row[0], r.reason) for r in report.rejected_rows] == [
        (2, why[2]), (3, why[3]), (7, why[7]), (12, why[2]), (17, why[7]),
    ]  # fmt: skip
    assert stored == [rows[i] for i in (0, 3, 4, 5)]


class _Tag(str):
    """A ``str`` subclass whose ``__str__`` is not its value: its value is what is stored."""

    def __str__(self) -> str:
        return "not stored"


async def test_a_checked_batch_lands_as_its_values_utc_offsets_and_exponents_too(
    crate_standin: CrateStandIn,
) -> None:
    """UTC (sent as ``Z``), +05:30, naive ms times, 1e64 and subclasses: stored as given."""
    columns = {
        "id": "BIGINT", "name": "TEXT", "score": "DOUBLE PRECISION",
        "at": "TIMESTAMP WITH TIME ZONE", "wall": "TIMESTAMP WITHOUT TIME ZONE",
    }  # fmt: skip
    india = timezone(timedelta(hours=5, minutes=30))
    at = datetime(2024, 1, 1, 1, 2, 3, 45000, tzinfo=UTC)
    rows = [
        (1, _Tag("a"), 1e64, at, at.replace(tzinfo=None)),
        (2, "b", -2.5e-300, at.astimezone(india), datetime(1969, 12, 31, 23, 59, 59, 999000)),
        (3, "c", 0.1, datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59)),
    ]
    async with open_writer(crate_standin.url, table="rt", columns=columns, primary_key=["id"]) as w:
        await w.write_many(rows)
    assert (w.report.delivered, w.report.rejected, w.report.undelivered) == (3, 0, 0)
    async with aiohttp.ClientSession() as session:
        await post_sql(session, crate_standin.url, "REFRESH TABLE rt")
        _, body = await post_sql(session, crate_standin.url, "SELECT * FROM rt ORDER BY id")

    def ms(moment: datetime) -> int:
        aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        return (aware - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)

    assert body["rows"] == [[r[0], str.__str__(r[1]), r[2], ms(r[3]), ms(r[4])] for r in rows]


async def test_offsets_of_seconds_land_as_their_instant_or_are_refused(
    crate_standin: CrateStandIn,
) -> None:
    """Offsets JSON writes as HH:MM (seconds, LMT zones, microseconds) store the exact instant."""
    amsterdam = ZoneInfo("Europe/Amsterdam")  # local mean time +00:19:32 until 1937
    good = [
        datetime(2024, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=-5, minutes=-30, seconds=-30))),
        datetime(1920, 6, 1, 12, 0, tzinfo=amsterdam),
        datetime(1920, 1, 1, 12, 0, 0, 5000, tzinfo=amsterdam),
        datetime(2024, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=1, microseconds=250_000))),
    ]
    bad = datetime(2024, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=1, microseconds=500)))
    columns = {"id": "BIGINT", "at": "TIMESTAMP WITH TIME ZONE"}
    rows = [(i, at) for i, at in enumerate([*good, bad])]
    async with open_writer(
        crate_standin.url, table="lmt", columns=columns, primary_key=["id"]
    ) as w:
        await w.write_many(rows)
    assert (w.report.delivered, w.report.rejected, w.report.undelivered) == (4, 1, 0)
    assert "milliseconds" in w.report.rejected_rows[0].reason
    async with aiohttp.ClientSession() as session:
        await post_sql(session, crate_standin.url, "REFRESH TABLE lmt")
        _, body = await post_sql(session, crate_standin.url, "SELECT id, at FROM lmt ORDER BY id")
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert body["rows"] == [[i, (at - epoch) // timedelta(milliseconds=1)] for i, at in rows[:4]]


@pytest.mark.parametrize("element", ["VARCHAR(3)", "CHAR(3)"])
async def test_an_array_of_bounded_text_column_is_refused_in_one_line(
    crate_standin: CrateStandIn, element: str
) -> None:
    """ARRAY(VARCHAR(3)) / ARRAY(CHAR(3)): elements are not checked, so the writer refuses it."""
    url = crate_standin.url
    async with aiohttp.ClientSession() as session:
        ddl = f"CREATE TABLE tagged (id BIGINT PRIMARY KEY, tags ARRAY({element}))"
        await post_sql(session, url, ddl)
    with pytest.raises(ConfigError) as err:
        async with open_writer(url, table="tagged", primary_key=["id"]) as w:
            await w.write((1, ["abc  "]))
    line = err.value.message
    shown = {"VARCHAR(3)": "VARCHAR(3)", "CHAR(3)": "CHARACTER(3)"}[element]
    assert "\n" not in line and f"column tags is ARRAY({shown})" in line, line
    assert "SHOW CREATE TABLE" in line
    async with aiohttp.ClientSession() as session:
        await post_sql(session, url, "REFRESH TABLE tagged")
        _, body = await post_sql(session, url, "SELECT id FROM tagged")
    assert body["rows"] == []
