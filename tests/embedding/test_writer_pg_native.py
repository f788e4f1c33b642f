"""The writer's fast PostgreSQL path (asyncpg's encoders), real server: exact or refused."""

from __future__ import annotations

import enum
import math
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import pytest

from async_etl import open_writer
from async_etl.sinks import postgres_rows
from async_etl.sinks.postgres_rows import PostgresRowsSink
from async_etl.sinks.rows_common import RecordsBatch
from tests.embedding.test_writer_pg import _fetch

COLUMNS = {
    "id": "bigint", "name": "text", "score": "double precision", "at": "timestamptz",
    "day": "date", "ok": "boolean", "u": "uuid", "small": "smallint",
}  # fmt: skip
BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture
def sent_as(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """How each COPY went: "records" (asyncpg encodes) or "payload" (reference encoders)."""
    seen: list[str] = []
    copy = PostgresRowsSink._copy

    async def spy(self: PostgresRowsSink, conn: Any, batch: Any, before: str | None = None) -> None:
        seen.append("records" if isinstance(batch, RecordsBatch) else "payload")
        await copy(self, conn, batch, before)

    monkeypatch.setattr(PostgresRowsSink, "_copy", spy)
    yield seen


@pytest.fixture
def slices(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The slice size of every paced feed of a batch to asyncpg (one entry a paced COPY)."""
    seen: list[int] = []
    paced = postgres_rows._paced

    async def counting(rows: Any, every: int, cast: Any) -> Any:
        seen.append(every)
        async for row in paced(rows, every, cast):
            yield row

    monkeypatch.setattr(postgres_rows, "_paced", counting)
    return seen


def _in_utc(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """The row with its timestamptz as UTC (a time in a DST gap equals no other zone's)."""
    return (*row[:3], row[3].astimezone(UTC), *row[4:])


def _row(i: int) -> tuple[Any, ...]:
    at = datetime(2024, 3, 31, 1, 30, tzinfo=BERLIN) + timedelta(minutes=i)
    return (i, f"näme-{i} ✓", i / 7, at, date(2000, 1, 1) + timedelta(days=i), i % 2 == 0,
            uuid.UUID(int=i), i % 100)  # fmt: skip


async def test_plain_batches_go_through_asyncpg_and_read_back_exactly(
    pg_dsn: str, sent_as: list[str]
) -> None:
    """A list of well-typed tuples is COPYed as records, and every value reads back equal."""
    extremes = [
        (-(2**63), "", -0.0, datetime(1, 1, 2, tzinfo=UTC), date(1, 1, 2), None, None, -(2**15)),
        (2**63 - 1, None, math.inf, datetime(9999, 12, 31, tzinfo=UTC), date(9999, 12, 30),
         False, uuid.UUID(int=2**128 - 1), 2**15 - 1),
        (5000, "x", 5e-324, datetime(2031, 3, 4, tzinfo=timezone(timedelta(hours=-5))), None,
         True, None, None),
    ]  # fmt: skip
    data = [_row(i) for i in range(3000)] + extremes
    async with open_writer(
        pg_dsn, table="t", columns=COLUMNS, primary_key=["id"], batch_rows=1000
    ) as writer:
        await writer.write_many(data)
    assert writer.report.ok and writer.report.delivered == len(data), writer.report.reasons
    assert sent_as == ["records"] * 4
    got = await _fetch(pg_dsn, f"SELECT {', '.join(COLUMNS)} FROM t ORDER BY id")
    assert [tuple(r) for r in got] == sorted(_in_utc(r) for r in data)


async def test_timestamptz_with_nulls_and_folds_goes_through_asyncpg_exactly(
    pg_dsn: str, sent_as: list[str]
) -> None:
    """A nullable timestamptz column (NULLs, both sides of a DST fold, many zones) lands exactly."""
    fold = datetime(2024, 10, 27, 2, 30, tzinfo=BERLIN)
    zones = [UTC, BERLIN, ZoneInfo("Asia/Kathmandu"), timezone(timedelta(hours=-9, minutes=-30))]
    values = [fold, fold.replace(fold=1), None] + [
        datetime(2024, 1, 1, tzinfo=zones[i % 4]) + timedelta(microseconds=7_777_777 * i)
        for i in range(997)
    ]
    async with open_writer(pg_dsn, table="ts", columns={"id": "bigint", "at": "timestamptz"}) as w:
        await w.write_many(list(enumerate(values)))
    assert w.report.ok and w.report.delivered == len(values), w.report.reasons
    assert sent_as == ["records"]
    got = await _fetch(pg_dsn, "SELECT at FROM ts ORDER BY id")
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    assert [None if r[0] is None else r[0] - epoch for r in got] == [
        None if v is None else v - epoch for v in values
    ]


async def test_values_asyncpg_would_change_go_through_the_reference_encoders(
    pg_dsn: str, sent_as: list[str]
) -> None:
    """The last instant (asyncpg: infinity) and NaN land exactly; a naive datetime is refused."""
    last = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    async with open_writer(
        pg_dsn, table="t", columns={"id": "bigint", "at": "timestamptz", "x": "float8"},
        primary_key=["id"], batch_rows=10,
    ) as writer:  # fmt: skip
        await writer.write_many([(1, last, math.nan), (2, datetime(2024, 1, 1), 1.0)])
        await writer.write_many([(3, datetime(2024, 1, 1, tzinfo=UTC), 2**53 + 1)])
    report = writer.report
    assert (report.delivered, report.rejected) == (1, 2)
    assert [r.reason for r in report.rejected_rows] == [
        "column 'at' (timestamptz): timestamptz needs a timezone-aware datetime",
        f"column 'x' (float8): {2**53 + 1} has no exact float value",
    ]
    assert sent_as == ["payload"]
    got = await _fetch(pg_dsn, "SELECT id, at, at::text AS t, x FROM t")
    assert [(r["id"], r["at"], r["t"]) for r in got] == [(1, last, "9999-12-31 23:59:59.999999+00")]
    assert math.isnan(got[0]["x"])


async def test_a_value_asyncpg_refuses_is_rejected_and_the_batch_lands_once(
    pg_dsn: str, sent_as: list[str]
) -> None:
    """An int8 out of range fails asyncpg's COPY; the batch is re-encoded, the row refused."""
    data = [(i, f"r{i}", 0.5) for i in range(50)]
    data[20] = (2**63, "too big", 0.5)
    async with open_writer(
        pg_dsn, table="t", columns={"id": "bigint", "name": "text", "x": "float8"},
        primary_key=["id"], batch_rows=50,
    ) as writer:  # fmt: skip
        await writer.write_many(data)
    report = writer.report
    assert (report.delivered, report.rejected, report.undelivered) == (49, 1, 0)
    assert report.rejected_rows[0].row == (2**63, "too big", 0.5)
    assert report.rejected_rows[0].reason == f"column 'id' (int8): {2**63} is out of range"
    assert report.retries == 1
    assert sent_as == ["records", "payload"]
    got = await _fetch(pg_dsn, "SELECT count(*) AS n, count(DISTINCT id) AS d FROM t")
    assert (got[0]["n"], got[0]["d"]) == (49, 49)
    ledger = await _fetch(pg_dsn, "SELECT start_id, rows FROM async_etl_bench_ledger")
    assert [tuple(r) for r in ledger] == [(1, 49)]


class _Mood(enum.StrEnum):
    GLAD = "glad ✓"
    SAD = "sad"


async def test_an_enums_str_values_go_through_asyncpg_and_misfits_are_refused(
    pg_dsn: str, sent_as: list[str]
) -> None:
    """A text column of StrEnum members is COPYed as records; a bool, a NUL or a NULL is not."""
    cols = {"id": "bigint", "mood": "text", "x": "float8"}
    good = [(i, [_Mood.GLAD, _Mood.SAD][i % 2], i / 3) for i in range(300)]
    bad = [(300, "ok", 0.5), (True, "a bool id", 0.5), (302, "nul\x00", 0.5), (None, "x", 0.5),
           (304, "int x", 1), (305, None, None)]  # fmt: skip
    async with open_writer(
        pg_dsn, table="m", columns=cols, primary_key=["id"], batch_rows=300, linger_ms=60_000
    ) as writer:
        await writer.write_many(good)
        await writer.write_many(bad)
    report = writer.report
    assert (report.delivered, report.rejected) == (303, 3), report.reasons
    assert [r.row[0] for r in report.rejected_rows] == [True, 302, None]
    assert sent_as == ["records", "payload"]
    got = await _fetch(pg_dsn, "SELECT id, mood, x FROM m ORDER BY id")
    rest = [(300, "ok", 0.5), (304, "int x", 1.0), (305, None, None)]
    assert [tuple(r) for r in got] == [(i, str(m), x) for i, m, x in good] + rest
    assert all(type(r["mood"]) is str for r in got[:300])


async def test_wide_batches_are_encoded_in_slices_and_land_whole(
    pg_dsn: str, sent_as: list[str], slices: list[int]
) -> None:
    """A batch above the pacing size is fed to asyncpg a slice at a time; nothing is lost."""
    cols = {"id": "bigint"} | {f"c{k}": ("bigint" if k % 2 else "text") for k in range(20)}
    data = [(i, *[(i * k if k % 2 else f"v-{i}-{k}") for k in range(20)]) for i in range(4000)]
    async with open_writer(
        pg_dsn, table="w", columns=cols, primary_key=["id"], batch_rows=2000, linger_ms=60_000
    ) as writer:
        for row in data:  # row by row: the plain check runs when the batch is sent
            await writer.write(dict(zip(cols, row, strict=True)))
    assert writer.report.ok and writer.report.delivered == 4000
    assert sent_as == ["records", "records"] and len(slices) == 2
    got = await _fetch(pg_dsn, f"SELECT {', '.join(cols)} FROM w ORDER BY id")
    assert [tuple(r) for r in got] == data


async def test_a_wide_timestamptz_batch_with_a_duplicate_lands_the_rest_exactly(
    pg_dsn: str, sent_as: list[str], slices: list[int]
) -> None:
    """Paced slices and the split-and-retry keep timestamptz exact; the duplicate is refused."""
    zones = [UTC, BERLIN, ZoneInfo("America/New_York")]
    start = datetime(2024, 3, 10, 1, 0, tzinfo=UTC)
    data: list[tuple[int, datetime | None]] = [
        (i, None if i % 97 == 0 else (start + timedelta(microseconds=1_234_567 * i)).astimezone(
            zones[i % 3]))
        for i in range(20_000)
    ]  # fmt: skip
    data[12_345] = (7, data[12_345][1])  # a second id 7: the primary key refuses it
    async with open_writer(
        pg_dsn, table="tzw", columns={"id": "bigint", "at": "timestamptz"}, primary_key=["id"],
        batch_rows=20_000, linger_ms=60_000,
    ) as writer:  # fmt: skip
        await writer.write_many(data)
    report = writer.report
    assert (report.delivered, report.rejected, report.undelivered) == (19_999, 1, 0)
    assert report.rejected_rows[0].row == data[12_345]
    assert sent_as[0] == "records" and slices  # 40,000 values: fed to asyncpg in slices
    got = await _fetch(pg_dsn, "SELECT id, at FROM tzw ORDER BY id")
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    kept = sorted(data[:12_345] + data[12_346:])
    assert [(r["id"], r["at"] and r["at"] - epoch) for r in got] == [
        (i, at and at - epoch) for i, at in kept
    ]


async def test_a_list_with_a_misfit_row_lands_the_others_in_order(pg_dsn: str) -> None:
    """``write_many`` with a wrong-width row and a dict: that row is rejected, the rest land."""
    data: list[Any] = [(i, f"r{i}") for i in range(30)]
    data[10] = (10,)
    data[11] = {"id": 11, "name": "dict"}
    async with open_writer(
        pg_dsn, table="t", columns={"id": "bigint", "name": "text"}, primary_key=["id"],
        batch_rows=8,
    ) as writer:  # fmt: skip
        await writer.write_many(data)
        await writer.write_many(iter([(100, "from an iterator"), (101, "too", "wide")]))
    report = writer.report
    assert (report.accepted, report.delivered, report.rejected) == (32, 30, 2)
    assert [r.reason for r in report.rejected_rows] == [
        "row has 1 values for 2 columns",
        "row has 3 values for 2 columns",
    ]
    got = await _fetch(pg_dsn, "SELECT id, name FROM t ORDER BY id")
    assert [r["id"] for r in got] == [*(i for i in range(30) if i != 10), 100]
    assert got[10]["name"] == "dict"


@pytest.mark.parametrize("after", [0.05, 0.15, 0.4])
async def test_cancelled_while_paced_copies_run_the_table_holds_what_was_counted(
    pg_dsn: str, after: float
) -> None:
    """Cancelled at any moment of wide, sliced COPYs: delivered == the rows in the table."""
    cols = {"id": "bigint"} | {f"c{k}": "text" for k in range(15)}
    writer = open_writer(
        pg_dsn, table="w", columns=cols, primary_key=["id"], batch_rows=4000, max_in_flight=2
    )

    # The clock starts once the writer is open (the table exists): a cancel that landed
    # while it opened found no COPY to cut, and no table to count.
    with anyio.CancelScope() as scope:
        async with writer:
            scope.deadline = anyio.current_time() + after
            for start in range(0, 1_000_000, 4000):
                await writer.write_many([(i, *["v" * 20] * 15) for i in range(start, start + 4000)])
    assert scope.cancelled_caught
    report = writer.report
    assert report.accepted == report.delivered + report.undelivered
    assert report.rejected == 0
    got = await _fetch(pg_dsn, "SELECT count(*) AS n, count(DISTINCT id) AS d FROM w")
    assert got[0]["n"] == got[0]["d"] == report.delivered


async def test_cancelled_while_opening_accounts_nothing_and_closes_the_pool(
    pg_dsn: str,
) -> None:
    """A cancel that lands while the writer opens: no row counted, its pool closed."""
    writer = open_writer(pg_dsn, table="w", columns={"id": "bigint"}, primary_key=["id"])
    with anyio.move_on_after(0) as scope:
        async with writer:
            await writer.write((1,))
    assert scope.cancelled_caught
    report = writer.report
    assert (report.accepted, report.delivered, report.undelivered) == (0, 0, 0)
    assert writer._sink._pool is None  # type: ignore[attr-defined]
