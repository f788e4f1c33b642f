"""Edge values through each mapper path: stored exactly, or rejected with the reason."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from async_etl.core.exact import crate_refusal, row_refusal
from async_etl.drivers.postgres import use_exact_codecs
from async_etl.jobs.api import JobOptions
from async_etl.jobs.coltypes import from_epoch_ms
from async_etl.jobs.runner import run_job
from async_etl.testing.crate import CrateStandIn, StandInConfig
from tests.integration.jobs_helpers import at, crate_rows, fetchval, spec_of

COLUMNS = [
    ("id", "integer"),
    ("d", "double precision"),
    ("r", "real"),
    ("n", "numeric"),
    ("ts", "timestamp with time zone"),
    ("lt", "timestamp without time zone"),
    ("dt", "date"),
    ("t", "text"),
    ("big", "bigint"),
]
NAMES = [n for n, _ in COLUMNS]
TYPES = [t for _, t in COLUMNS]

FLOATS = st.sampled_from([0.0, -0.0, 1.5, math.nan, math.inf, -math.inf, 5e-324, 1.7e308, 0.1])
REALS = st.sampled_from([0.1, 3.4e38, -1.17549435e-38, 2.2, 1e-45, 16777217.0])
NUMERICS = st.sampled_from(
    [Decimal("19.99"), Decimal("0.1"), Decimal("-0"), Decimal("NaN"), Decimal("1E+300"),
     Decimal("12345678901234567890.5"), Decimal("0.000001"), Decimal("9007199254740993")]
)  # fmt: skip
MOMENTS = st.sampled_from(
    [datetime(2024, 2, 29, 23, 59, 59, 999000, tzinfo=UTC), datetime(1, 1, 1, 0, 0, tzinfo=UTC),
     datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
     datetime(2024, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
     datetime(1969, 12, 31, 23, 59, 59, 999500, tzinfo=UTC)]
)  # fmt: skip
NAIVES = st.sampled_from(
    [datetime(2000, 1, 1), datetime(2000, 1, 1, 0, 0, 0, 7), datetime(1, 1, 1)]
)
DATES = st.sampled_from([date(1, 1, 1), date(9999, 12, 31), date(1970, 1, 1), date(2024, 2, 29)])
TEXTS = st.sampled_from(["", "é", "😀 astral \U0010ffff", "x" * 20_000, "line\nbreak", "'\"\\"])
BIGS = st.sampled_from([2**63 - 1, -(2**63), 0, 2**53 + 1])
ROW = st.tuples(FLOATS, REALS, NUMERICS, MOMENTS, NAIVES, DATES, TEXTS, BIGS)


async def _load(dsn: str, rows: list[tuple[Any, ...]]) -> None:
    conn = await asyncpg.connect(dsn)
    await use_exact_codecs(conn)  # asyncpg's own codecs write date(1, 1, 1) as '-infinity'
    try:
        await conn.execute("DROP TABLE IF EXISTS s")
        await conn.execute(f"CREATE TABLE s ({', '.join(f'{n} {t}' for n, t in COLUMNS)}, "
                           "PRIMARY KEY (id))")  # fmt: skip
        await conn.copy_records_to_table("s", records=rows, columns=NAMES)
        await conn.execute("ANALYZE s")
    finally:
        await conn.close()


def _job(dsn: str, target: str, on_bad_row: str = "reject", name: str = "edge") -> str:
    return f"""
name = "{name}"
on_bad_row = "{on_bad_row}"
[source]
url = "{dsn}"
table = "s"
key = ["id"]
[target]
url = "{target}"
table = "dw.edge"
[scd]
type = 2
[parallel]
enabled = false
[state]
url = "{dsn}"
"""


def _same(stored: Any, source: Any, pg_type: str) -> bool:
    """Whether a value read back from the CrateDB target means exactly the source value."""
    if source is None or stored is None:
        return stored is source
    if isinstance(source, float):
        if pg_type == "real":
            return bool(np.float32(stored) == np.float32(source))
        if math.isnan(source):
            return math.isnan(stored)
        return bool(stored == source and math.copysign(1, stored) == math.copysign(1, source))
    if isinstance(source, Decimal):
        return Decimal(repr(stored)) == source
    if isinstance(source, datetime):
        return from_epoch_ms(stored) == (source if source.tzinfo else source.replace(tzinfo=UTC))
    if isinstance(source, date):
        return from_epoch_ms(stored).date() == source
    return bool(stored == source)


async def _reasons(dsn: str, job: str) -> dict[int, str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT key::json ->> 'id' AS id, reason FROM async_etl_rejects WHERE job = $1", job
        )
    finally:
        await conn.close()
    return {int(r["id"]): r["reason"] for r in rows}


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=st.lists(ROW, min_size=1, max_size=12))
async def test_crate_target_stores_edge_values_exactly_or_rejects_them(
    pg_dsn: str, values: list[tuple[Any, ...]]
) -> None:
    """Each row lands exactly (read back equal) or is rejected with its reason; re-runs no-op."""
    rows = [(i, *v) for i, v in enumerate(values, 1)]
    job = f"edge_{uuid.uuid4().hex[:8]}"
    await _load(pg_dsn, rows)
    async with CrateStandIn(StandInConfig()) as crate:
        text = _job(pg_dsn, crate.url, name=job)
        first = await run_job(spec_of(text), options=JobOptions(as_of=at(0)))
        assert first.status == "SUCCEEDED", first.error
        expected = {r[0]: row_refusal(r, NAMES, TYPES, crate_refusal) for r in rows}
        refused = {k: why for k, why in expected.items() if why is not None}
        assert await _reasons(pg_dsn, job) == refused
        stored = await crate_rows(crate.url, "dw.edge")
        assert set(stored) == set(expected) - set(refused)
        for row in rows:
            if row[0] in stored:
                for name, pg_type, value in zip(NAMES, TYPES, row, strict=True):
                    assert _same(stored[row[0]][name], value, pg_type), (name, value)
        again = await run_job(spec_of(text), options=JobOptions(as_of=at(1)))
        assert again.status == "SUCCEEDED", again.error
        assert (again.inserted, again.updated, again.expired) == (0, 0, 0)
        assert again.rejected == len(refused)


async def test_crate_target_fails_with_the_reason_of_an_inexact_value(pg_dsn: str) -> None:
    """In fail mode a NaN double fails the run naming the row, the column and why; no write."""
    await _load(pg_dsn, [(1, 1.0, 0.5, Decimal(1), None, None, None, "a", 1),
                         (2, math.nan, 0.5, Decimal(1), None, None, None, "b", 2)])  # fmt: skip
    async with CrateStandIn(StandInConfig()) as crate:
        result = await run_job(spec_of(_job(pg_dsn, crate.url, "fail")),
                               options=JobOptions(as_of=at(0)))  # fmt: skip
        assert crate.counters.bulk_items == 0
    assert result.status == "FAILED"
    assert 'row {"id": 2} refused: column d: nan cannot travel in CrateDB' in (result.error or "")


async def test_real_column_rerun_writes_nothing(pg_dsn: str) -> None:
    """A real (float4) column read back from CrateDB compares equal: a re-run writes nothing."""
    await _load(
        pg_dsn, [(i, 1.0, i / 10, Decimal(1), None, None, None, "a", 1) for i in range(1, 50)]
    )
    async with CrateStandIn(StandInConfig()) as crate:
        for day in (0, 1):
            result = await run_job(spec_of(_job(pg_dsn, crate.url)),
                                   options=JobOptions(as_of=at(day)))  # fmt: skip
            assert result.status == "SUCCEEDED", result.error
        assert (result.inserted, result.updated, result.expired) == (0, 0, 0)
    assert await fetchval(pg_dsn, "SELECT count(*) FROM async_etl_rejects") == 0
