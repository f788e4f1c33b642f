"""Pure helpers of mapper jobs: budgets, type mapping, Oracle binds, progress, CLI parsing."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import anyio
import pytest

from async_etl.cli.run import EXIT_CODES, parse_as_of, summary_line
from async_etl.drivers.oracle import oracle_params
from async_etl.errors import ConfigError
from async_etl.jobs.api import JobResult
from async_etl.jobs.budget import LimiterBudget, database_key, hold
from async_etl.jobs.coltypes import crate_type, crate_value, epoch_ms, from_epoch_ms, oracle_type
from async_etl.jobs.context import ConnectionMeter
from async_etl.jobs.oracle_driver import oracle_bind
from async_etl.jobs.planning import utc_ms
from async_etl.jobs.progress import RateMeter
from async_etl.sources.oracle import pg_type_of_oracle


def test_database_key_ignores_credentials_and_aliases() -> None:
    """Same database, same key: user, password, scheme alias and query do not matter."""
    a = database_key("postgresql://alice:pw@DB.example:5432/Test?sslmode=require")
    b = database_key("postgres://bob@db.example/test")
    assert a == b == "postgresql://db.example:5432/test"
    assert database_key("http://crate:4200/") == database_key("crate://crate")


def test_database_key_reads_the_server_and_database_a_query_string_names() -> None:
    """host / port / dbname in the query (read as libpq and asyncpg do) tell servers apart."""
    assert database_key("postgresql://h/db?port=5433") == database_key("postgresql://h:5433/db")
    assert database_key("postgresql://h/db?port=5433") != database_key("postgresql://h/db")
    assert database_key("postgresql:///db?host=/run/a") != database_key(
        "postgresql:///db?host=/run/b"
    )
    assert database_key("postgresql://h/?dbname=x") == database_key("postgresql://h/x")
    assert database_key("postgresql://h:5432/db?port=5433") == database_key("postgresql://h/db")


async def test_limiter_budget_shares_and_limits() -> None:
    """One limiter per database; per-URL limits override the default; tokens are bounded."""
    budget = LimiterBudget(2, {"postgresql://h/db": 1})
    assert budget.limiter("postgres://u@h:5432/db").total_tokens == 1
    assert budget.limiter("postgresql://h/other") is budget.limiter("postgresql://x@h/other")
    limiter = budget.limiter("postgresql://h/other")
    async with hold(limiter), hold(limiter):
        assert limiter.available_tokens == 0
        with anyio.move_on_after(0.05) as scope:
            async with hold(limiter):
                pass
        assert scope.cancelled_caught
    with pytest.raises(ValueError):
        LimiterBudget(0)


def test_connection_meter_peak() -> None:
    """The meter keeps the highest number of connections open at once per database."""
    meter = ConnectionMeter()
    for _ in range(3):
        meter.opened("postgresql://h/db")
    meter.closed("postgres://h/db")
    meter.opened("postgresql://h/db")
    assert meter.peak == {"postgresql://h:5432/db": 3}


def test_type_mapping_and_crate_values() -> None:
    """PostgreSQL types map onto CrateDB / Oracle types; values take CrateDB's stored form."""
    assert crate_type("numeric(12,2)") == "DOUBLE PRECISION"
    assert crate_type("text[]") == "ARRAY(TEXT)"
    assert oracle_type("character varying(20)") == "VARCHAR2(20 CHAR)"
    assert oracle_type("numeric(12,2)") == "NUMBER(12,2)"
    t = datetime(2024, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)
    convert = crate_value(["timestamptz", "date", "numeric", "text"])
    row = convert([t, date(2024, 1, 2), Decimal("1.5"), None])
    assert row == [epoch_ms(t), epoch_ms(datetime(2024, 1, 2, tzinfo=UTC)), 1.5, None]
    assert from_epoch_ms(epoch_ms(t)) == t
    assert pg_type_of_oracle("DB_TYPE_NUMBER", 10, 0, None) == "bigint"
    assert pg_type_of_oracle("DB_TYPE_VARCHAR", None, None, 30) == "character varying(30)"


def test_oracle_url_and_binds() -> None:
    """oracle:// URLs give connect_async arguments; binds are 0/1 and naive UTC."""
    assert oracle_params("oracle://scott:t%40ger@db:1522/ORCLPDB") == {
        "user": "scott", "password": "t@ger", "dsn": "db:1522/ORCLPDB"}  # fmt: skip
    with pytest.raises(ConfigError, match=r"\*\*\*"):
        oracle_params("oracle://scott:tiger@db")
    cet = timezone(timedelta(hours=1))
    assert oracle_bind(datetime(2024, 1, 1, 1, tzinfo=cet)) == datetime(2024, 1, 1)
    assert oracle_bind(True) == 1


def test_as_of_parsing_and_truncation() -> None:
    """--as-of accepts ISO 8601 (Z too); T is UTC truncated to milliseconds."""
    parsed = parse_as_of("2024-05-01T10:00:00.123456Z")
    assert parsed is not None and utc_ms(parsed) == datetime(2024, 5, 1, 10, 0, 0, 123_000,
                                                              tzinfo=UTC)  # fmt: skip
    with pytest.raises(ConfigError):
        parse_as_of("yesterday")


def test_rate_meter_eta_and_summary_line() -> None:
    """Rows/s counts this process's work; the ETA scales with the chunks left."""
    now = [0.0]
    meter = RateMeter("job", "r1", total=10, chunks_before=2, clock=lambda: now[0])
    now[0] = 4.0
    p = meter.progress(chunks_done=6, rows_read=600, rows_this_process=400)
    assert p.rows_per_s == 100.0 and p.eta_s == pytest.approx(4.0)
    t = datetime(2024, 1, 1, tzinfo=UTC)
    line = summary_line(JobResult("r1", "job", "STOPPED", t, t, t, chunks_total=10, chunks_done=6))
    assert "STOPPED" in line and "chunks 6/10" in line
    assert EXIT_CODES == {"SUCCEEDED": 0, "FAILED": 1, "STOPPED": 3}
