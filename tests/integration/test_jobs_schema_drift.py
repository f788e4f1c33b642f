"""Source schema drift is found in preflight (exit 2, nothing written) or evolves the target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import pytest

from async_etl.drivers.cratedb import CrateDBClient
from async_etl.jobs.api import JobOptions
from async_etl.jobs.runner import run_job
from async_etl.testing.crate import CrateStandIn, StandInConfig
from tests.integration.jobs_helpers import at, fetchval, run_cli, spec_of, table_rows, write

KEYS = (1, 2, 3)


def _job(source: str, target: str, *, kind: int, evolve: bool, state: str = "") -> str:
    """A job over ``src`` (key ``id``, every column) into ``dw.dim``."""
    evolution = 'schema_evolution = "add_columns"' if evolve else ""
    return f"""
name = "drift"
[source]
url = "{source}"
table = "src"
key = ["id"]
[target]
url = "{target}"
table = "dw.dim"
{evolution}
[scd]
type = {kind}
{state}
"""


async def _exec(dsn: str, *sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for text in sql:
            await conn.execute(text)
    finally:
        await conn.close()


async def _first_load(dsn: str, text: str) -> None:
    await _exec(dsn, "CREATE TABLE src (id int PRIMARY KEY, v int)",
                "INSERT INTO src SELECT i, i * 10 FROM generate_series(1, 3) i")  # fmt: skip
    result = await run_job(spec_of(text), options=JobOptions(as_of=at(1)))
    assert (result.status, result.inserted) == ("SUCCEEDED", len(KEYS)), result.error


DRIFTS = {
    "added": (["ALTER TABLE src ADD COLUMN email text", "UPDATE src SET email = 'e' || id"],
              'the source has column "email" (text) that target dw.dim lacks'),
    "dropped": (["ALTER TABLE src DROP COLUMN v"],
                'target dw.dim has column "v" (integer) that the source no longer has'),
    "retyped": (["ALTER TABLE src ALTER COLUMN v TYPE text"],
                'column "v" of target dw.dim is integer, but the source now gives text'),
    "rounding": (["ALTER TABLE src ALTER COLUMN v TYPE timestamptz USING to_timestamp(v + 0.5)",
                  "ALTER TABLE dw.dim ALTER COLUMN v TYPE timestamptz(0) USING to_timestamp(v)"],
                 'column "v" of target dw.dim is timestamp(0) with time zone, but the source '
                 "now gives timestamp with time zone"),
}  # fmt: skip


@pytest.mark.parametrize("kind", [1, 2])
@pytest.mark.parametrize("case", list(DRIFTS))
async def test_drift_stops_in_preflight(pg_dsn: str, tmp_path: Path, case: str, kind: int) -> None:
    """Added / dropped / retyped source column: exit 2, one line, no write, no run recorded."""
    text = _job(pg_dsn, pg_dsn, kind=kind, evolve=case != "added")
    await _first_load(pg_dsn, text)
    sql, needle = DRIFTS[case]
    await _exec(pg_dsn, *sql)
    before = await table_rows(pg_dsn, "dw.dim")
    code, out, err = await run_cli("run", str(write(tmp_path, "j.toml", text)))
    lines = err.strip().splitlines()
    assert code == 2, (out, err)
    assert len(lines) == 1 and "schema drift" in lines[0] and needle in lines[0], err
    assert await table_rows(pg_dsn, "dw.dim") == before
    assert await fetchval(pg_dsn, "SELECT count(*) FROM async_etl_runs") == 1


async def test_type2_job_on_a_type1_table_stops_in_preflight(pg_dsn: str, tmp_path: Path) -> None:
    """A type-2 job pointed at a type-1 table: exit 2 naming the SCD columns, no run recorded."""
    await _first_load(pg_dsn, _job(pg_dsn, pg_dsn, kind=1, evolve=False))
    text = _job(pg_dsn, pg_dsn, kind=2, evolve=False)
    code, out, err = await run_cli("run", str(write(tmp_path, "j.toml", text)))
    lines = err.strip().splitlines()
    assert code == 2, (out, err)
    assert len(lines) == 1 and "lacks the SCD column(s) valid_from, valid_to, is_current" in err
    assert await fetchval(pg_dsn, "SELECT count(*) FROM async_etl_runs") == 1


@pytest.mark.parametrize("valid", ["timestamp", "date"])
async def test_type2_table_with_naive_validity_stops_in_preflight(
    pg_dsn: str, tmp_path: Path, valid: str
) -> None:
    """A type-2 target made with timestamp / date valid_from: exit 2 naming it, nothing written."""
    dim = (f"CREATE TABLE dw.dim (id int, v int, valid_from {valid} NOT NULL, "
           f"valid_to {valid}, is_current boolean NOT NULL DEFAULT true)")  # fmt: skip
    await _exec(pg_dsn, "CREATE TABLE src (id int PRIMARY KEY, v int)",
                "INSERT INTO src SELECT i, i * 10 FROM generate_series(1, 3) i",
                "CREATE SCHEMA dw", dim)  # fmt: skip
    text = _job(pg_dsn, pg_dsn, kind=2, evolve=False)
    code, out, err = await run_cli("run", str(write(tmp_path, "j.toml", text)))
    lines = err.strip().splitlines()
    assert code == 2, (out, err)
    assert len(lines) == 1 and f'column "valid_from" of target dw.dim is {valid}' in err, err
    assert await table_rows(pg_dsn, "dw.dim") == []
    if await fetchval(pg_dsn, "SELECT to_regclass('async_etl_runs') IS NOT NULL"):
        assert await fetchval(pg_dsn, "SELECT count(*) FROM async_etl_runs") == 0


@pytest.mark.parametrize(
    ("ddl", "kind", "why"),
    [(("CREATE VIEW dw.dim AS SELECT id, v FROM src",), "a view", "name the table it reads"),
     (("CREATE MATERIALIZED VIEW dw.dim AS SELECT id, v FROM src",), "a materialized view",
      "filled by REFRESH MATERIALIZED VIEW, not by a load"),
     (("CREATE SEQUENCE dw.dim",), "a sequence", "it holds no rows a job can load"),
     (("CREATE EXTENSION IF NOT EXISTS postgres_fdw",
       "CREATE SERVER loop FOREIGN DATA WRAPPER postgres_fdw",
       "CREATE FOREIGN TABLE dw.dim (id int, v int) SERVER loop OPTIONS (table_name 'src')"),
      "a foreign table", "commit on its foreign server, outside it, so a chunk retried or "
      "resumed after a failure could load its rows twice or not at all (exactly-once cannot "
      "be kept); point [target] url at the foreign server's database")],
)  # fmt: skip
@pytest.mark.parametrize("kind_of_job", [1, 2])
async def test_a_target_that_is_no_table_stops_in_preflight(
    pg_dsn: str, tmp_path: Path, ddl: tuple[str, ...], kind: str, why: str, kind_of_job: int
) -> None:
    """A view / materialized view / sequence / foreign table as target: exit 2, why, no run."""
    await _exec(pg_dsn, "CREATE TABLE src (id int PRIMARY KEY, v int)",
                "INSERT INTO src SELECT i, i * 10 FROM generate_series(1, 3) i",
                "CREATE SCHEMA dw", *ddl)  # fmt: skip
    text = _job(pg_dsn, pg_dsn, kind=kind_of_job, evolve=False)
    code, out, err = await run_cli("run", str(write(tmp_path, "j.toml", text)))
    lines = err.strip().splitlines()
    assert code == 2, (out, err)
    assert len(lines) == 1 and f"dw.dim is {kind}, not a table: " in err, err
    assert why in lines[0], lines[0]  # before: '...; a job loads into a table ...: name another'
    if await fetchval(pg_dsn, "SELECT to_regclass('async_etl_runs') IS NOT NULL"):
        assert await fetchval(pg_dsn, "SELECT count(*) FROM async_etl_runs") == 0


@pytest.mark.parametrize("kind_of_job", [1, 2])
async def test_a_generated_target_column_stops_in_preflight(
    pg_dsn: str, tmp_path: Path, kind_of_job: int
) -> None:
    """A target column GENERATED ALWAYS AS (...) STORED (COPY cannot write it): exit 2, no run."""
    scd = (", valid_from timestamptz NOT NULL, valid_to timestamptz, "
           "is_current boolean NOT NULL DEFAULT true") if kind_of_job == 2 else ""  # fmt: skip
    await _exec(pg_dsn, "CREATE TABLE src (id int PRIMARY KEY, v int)",
                "INSERT INTO src SELECT i, i * 10 FROM generate_series(1, 3) i", "CREATE SCHEMA dw",
                f"CREATE TABLE dw.dim (id int, v int GENERATED ALWAYS AS (id * 10) STORED{scd})",
                )  # fmt: skip
    text = _job(pg_dsn, pg_dsn, kind=kind_of_job, evolve=False)
    code, out, err = await run_cli("run", str(write(tmp_path, "j.toml", text)))
    lines = err.strip().splitlines()
    assert code == 2, (out, err)
    assert len(lines) == 1 and 'dw.dim: column "v" is generated' in err, err
    if await fetchval(pg_dsn, "SELECT to_regclass('async_etl_runs') IS NOT NULL"):
        assert await fetchval(pg_dsn, "SELECT count(*) FROM async_etl_runs") == 0


async def test_type2_add_columns_adds_a_nullable_column_and_versions(pg_dsn: str) -> None:
    """Type 2 with evolution: the column is added nullable, each key gets a version with it."""
    text = _job(pg_dsn, pg_dsn, kind=2, evolve=True)
    await _first_load(pg_dsn, text)
    await _exec(pg_dsn, "ALTER TABLE src ADD COLUMN email varchar(40)",
                "UPDATE src SET email = 'e' || id")  # fmt: skip
    result = await run_job(spec_of(text), options=JobOptions(as_of=at(2)))
    assert result.status == "SUCCEEDED", result.error
    assert (result.inserted, result.expired) == (len(KEYS), len(KEYS))
    kind = await fetchval(pg_dsn, "SELECT format_type(atttypid, atttypmod) || ' ' || "
                          "attnotnull FROM pg_attribute WHERE attrelid = 'dw.dim'::regclass "
                          "AND attname = 'email'")  # fmt: skip
    assert kind == "character varying(40) false"
    rows = await table_rows(pg_dsn, "dw.dim")
    current = sorted((r["id"], r["v"], r["email"]) for r in rows if r["is_current"])
    old = sorted((r["id"], r["email"]) for r in rows if not r["is_current"])
    assert current == [(i, i * 10, f"e{i}") for i in KEYS]
    assert old == [(i, None) for i in KEYS]
    again = await run_job(spec_of(text), options=JobOptions(as_of=at(3)))
    assert (again.status, again.inserted, again.expired) == ("SUCCEEDED", 0, 0)


async def test_type1_add_columns_fills_the_new_column(pg_dsn: str) -> None:
    """Type 1 with evolution: the column is added and every row updated with its value."""
    text = _job(pg_dsn, pg_dsn, kind=1, evolve=True)
    await _first_load(pg_dsn, text)
    await _exec(pg_dsn, "ALTER TABLE src ADD COLUMN email text", "UPDATE src SET email = 'e' || id")
    result = await run_job(spec_of(text), options=JobOptions(as_of=at(2)))
    assert (result.status, result.updated, result.inserted) == ("SUCCEEDED", len(KEYS), 0)
    rows = await table_rows(pg_dsn, "dw.dim")
    assert sorted((r["id"], r["v"], r["email"]) for r in rows) == [
        (i, i * 10, f"e{i}") for i in KEYS
    ]


async def _crate_rows(url: str) -> list[dict[str, Any]]:
    async with CrateDBClient(url) as client:
        await client.execute("REFRESH TABLE dw.dim")
        resp = await client.execute("SELECT * FROM dw.dim")
    return [dict(zip(resp.cols, r, strict=True)) for r in resp.rows]


@pytest.mark.parametrize("kind", [1, 2])
async def test_crate_target_drift_refused_then_evolved(pg_dsn: str, kind: int) -> None:
    """CrateDB target: an added column is refused without evolution, then added and loaded."""
    async with CrateStandIn(StandInConfig()) as crate:
        state = f'[state]\nurl = "{pg_dsn}"'
        plain = _job(pg_dsn, crate.url, kind=kind, evolve=False, state=state)
        await _first_load(pg_dsn, plain)
        await _exec(pg_dsn, "ALTER TABLE src ADD COLUMN email text",
                    "UPDATE src SET email = 'e' || id")  # fmt: skip
        from async_etl.errors import ConfigError

        with pytest.raises(ConfigError, match='source has column "email" \\(TEXT\\)'):
            await run_job(spec_of(plain), options=JobOptions(as_of=at(2)))
        assert await fetchval(pg_dsn, "SELECT count(*) FROM async_etl_runs") == 1
        evolving = _job(pg_dsn, crate.url, kind=kind, evolve=True, state=state)
        result = await run_job(spec_of(evolving), options=JobOptions(as_of=at(2)))
        assert result.status == "SUCCEEDED", result.error
        rows = await _crate_rows(crate.url)
    if kind == 1:
        assert result.updated == len(KEYS)
        assert sorted((r["id"], r["email"]) for r in rows) == [(i, f"e{i}") for i in KEYS]
    else:
        assert (result.inserted, result.expired) == (len(KEYS), len(KEYS))
        current = sorted((r["id"], r["email"]) for r in rows if r["is_current"])
        assert current == [(i, f"e{i}") for i in KEYS]
