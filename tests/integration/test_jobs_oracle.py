"""Oracle as target and as source (runs only when ORACLE_DSN=oracle://user:pw@host:port/svc)."""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest

from async_etl.core.scd import history_problems
from async_etl.jobs.api import JobOptions
from async_etl.jobs.runner import run_job
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

ORACLE_DSN = os.environ.get("ORACLE_DSN", "")
pytestmark = [
    pytest.mark.oracle,
    pytest.mark.skipif(not ORACLE_DSN, reason="ORACLE_DSN is not set (no Oracle server here)"),
]


async def oracle_rows(table: str) -> list[dict[str, Any]]:
    """Every row of an Oracle table, names lower-cased, is_current as bool."""
    import oracledb

    from async_etl.drivers.oracle import oracle_params

    conn = await oracledb.connect_async(**oracle_params(ORACLE_DSN))
    try:
        cursor = conn.cursor()
        await cursor.execute("ALTER SESSION SET TIME_ZONE = 'UTC'")
        await cursor.execute(f'SELECT * FROM "{table.upper()}"')
        names = [d[0].lower() for d in cursor.description]
        rows = [dict(zip(names, r, strict=True)) for r in await cursor.fetchall()]
    finally:
        await conn.close()
    for row in rows:
        row["is_current"] = bool(row["is_current"])
        row["tier"] = None if row["tier"] is None else int(row["tier"])
        row["a"] = int(row["a"])
    return rows


async def test_pg_to_oracle_scd2_matches_reference(pg_dsn: str) -> None:
    """PostgreSQL source, Oracle target, several runs: the Oracle table equals the model."""
    cols = cols_of(2)
    table = f"dim_{uuid.uuid4().hex[:8]}"
    text = job_toml("ora", pg_dsn, table, chunk_size=60)
    text = text.replace(f'url = "{pg_dsn}"\ntable', f'url = "{ORACLE_DSN}"\ntable')
    spec = spec_of(text + f'\n[state]\nurl = "{pg_dsn}"\n')
    states = history(seed=31, n_keys=300, runs=3)
    for i, rows in enumerate(states):
        await load_source(pg_dsn, rows)
        result = await run_job(spec, options=JobOptions(as_of=at(i)))
        assert result.status == "SUCCEEDED", result.error
        got = await oracle_rows(table)
        assert norm(got, cols) == norm(reference(states[: i + 1], cols), cols)
        assert history_problems(got, cols) == []


async def test_oracle_source_to_pg(pg_dsn: str) -> None:
    """Oracle source, PostgreSQL target: the target equals the model of the source."""
    import oracledb

    from async_etl.drivers.oracle import oracle_params

    cols = cols_of(2)
    rows = history(seed=32, n_keys=300, runs=1)[0]
    src = f"src_{uuid.uuid4().hex[:8]}"
    conn = await oracledb.connect_async(**oracle_params(ORACLE_DSN))
    try:
        cursor = conn.cursor()
        ddl = (f"CREATE TABLE {src} (a NUMBER(19) NOT NULL, b VARCHAR2(10), "
               "name VARCHAR2(100), city VARCHAR2(100), tier NUMBER(10))")  # fmt: skip
        await cursor.execute(ddl)
        await cursor.executemany(f"INSERT INTO {src} VALUES (:1, :2, :3, :4, :5)",
                                 [tuple(r.values()) for r in rows])  # fmt: skip
        await conn.commit()
    finally:
        await conn.close()
    text = job_toml("orasrc", pg_dsn, "dw.dim", chunk_size=60)
    text = text.replace(f'url = "{pg_dsn}"\nquery = "SELECT a, b, name, city, tier FROM src.t"',
                        f'url = "{ORACLE_DSN}"\ntable = "{src}"')  # fmt: skip
    result = await run_job(spec_of(text), options=JobOptions(as_of=at(0)))
    assert result.status == "SUCCEEDED", result.error
    got = await table_rows(pg_dsn, "dw.dim")
    assert norm(got, cols) == norm(reference([rows], cols), cols)


async def test_null_business_key_rows_are_rejects_on_oracle(pg_dsn: str) -> None:
    """Oracle target, reject mode: rows with b NULL are rejects, the re-run writes nothing."""
    from tests.integration.test_jobs_null_business_key import JOB, _source

    await _source(pg_dsn)
    table = f"nbk_{uuid.uuid4().hex[:8]}"
    text = JOB.format(mode="reject", dsn=pg_dsn, target=ORACLE_DSN, kind=2)
    spec = spec_of(text.replace('table = "dim"', f'table = "{table}"'))
    first = await run_job(spec, options=JobOptions(as_of=at(0)))
    assert (first.status, first.inserted, first.rejected) == ("SUCCEEDED", 30, 10), first.error
    second = await run_job(spec, options=JobOptions(as_of=at(1)))
    assert (second.inserted, second.expired, second.rejected) == (0, 0, 10), second.error
