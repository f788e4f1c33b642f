"""``[parallel] max_workers = "auto"``: the chunk fan-out adapts within its bounds."""

from __future__ import annotations

import asyncpg
import pytest
from structlog.testing import capture_logs

from async_etl.core import scd_sql_pg as pg
from async_etl.core.specs import ScdSpec
from async_etl.errors import ConfigError
from async_etl.jobs.api import JobOptions
from async_etl.jobs.runner import run_job
from tests.integration.jobs_helpers import at, spec_of, table_rows

ROWS = 600


def _job(dsn: str, workers: str) -> str:
    return f"""
name = "auto"
[source]
url = "{dsn}"
query = "SELECT id, v FROM src"
key = ["id"]
[target]
url = "{dsn}"
table = "dw.out"
[scd]
type = 1
[parallel]
max_workers = {workers}
chunk_size = 4
min_rows_for_parallel = 0
"""


async def test_auto_workers_load_every_row_and_stay_within_bounds(pg_dsn: str) -> None:
    """auto:1-4 starts at 1, grows from chunk latency, never past 4; all 600 rows land."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("CREATE TABLE src (id int, v text); CREATE SCHEMA dw")
        # 10 ms per chunk in the target: the run outlasts the controller's first windows
        # however fast a chunk's own work is (chunks reuse their connections)
        cols = ScdSpec(type=1, business_key=("id",)).resolve(["id", "v"])
        for st in pg.target_ddl("dw.out", [("id", "integer"), ("v", "text")], cols):
            await conn.execute(st.text)
        await conn.execute(
            "CREATE FUNCTION nap() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN PERFORM pg_sleep(0.01); RETURN NULL; END $$; "
            "CREATE TRIGGER nap BEFORE INSERT ON dw.out FOR EACH STATEMENT EXECUTE FUNCTION nap()"
        )
        await conn.executemany(
            "INSERT INTO src VALUES ($1, $2)", [(i, f"v{i}") for i in range(ROWS)]
        )
        await conn.execute("ANALYZE src")
    finally:
        await conn.close()
    spec = spec_of(_job(pg_dsn, '"auto:1-4"'))
    assert (spec.parallel.adaptive, spec.parallel.min_workers, spec.parallel.max_workers) == (
        True,
        1,
        4,
    )
    with capture_logs() as logs:
        result = await run_job(spec, options=JobOptions(as_of=at(1)))
    changes = [e for e in logs if e["event"] == "concurrency_changed"]
    assert result.status == "SUCCEEDED", result.error
    assert (result.rows_read, result.inserted) == (ROWS, ROWS)
    assert len(await table_rows(pg_dsn, "dw.out")) == ROWS
    assert changes and changes[0]["old"] == 1
    assert all(1 <= e["new"] <= 4 for e in changes)


@pytest.mark.parametrize(
    ("value", "problem"),
    [('"fast"', "expected an integer, auto or auto:MIN-MAX"), ('"auto:5-2"', "1 <= MIN <= MAX")],
)
def test_bad_auto_workers_are_one_line(value: str, problem: str) -> None:
    """A max_workers that is neither an integer nor auto[:MIN-MAX] is a one-line ConfigError."""
    with pytest.raises(ConfigError, match=r"\[parallel\] max_workers: .*") as info:
        spec_of(_job("postgresql://u@h/db", value))
    assert problem in str(info.value) and "\n" not in str(info.value)


def test_auto_workers_from_set_and_the_environment() -> None:
    """--set parallel.max_workers=auto and the env var give bounds 1-16; a number stays fixed."""
    from async_etl.jobs.spec import parse_job

    text = _job("postgresql://u@h/db", "2").replace("max_workers = 2\n", "")
    auto = parse_job(text, overrides=["parallel.max_workers=auto"], env={}).parallel
    env = parse_job(text, env={"ASYNC_ETL_PARALLEL_MAX_WORKERS": "auto"}).parallel
    fixed = parse_job(text, env={"ASYNC_ETL_PARALLEL_MAX_WORKERS": "6"}).parallel
    assert auto == env
    assert (auto.adaptive, auto.min_workers, auto.max_workers) == (True, 1, 16)
    assert (fixed.adaptive, fixed.max_workers) == (False, 6)
