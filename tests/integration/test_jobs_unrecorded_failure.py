"""A job refused before its run is recorded prints one error line, not a FAILED run summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from async_etl.errors import ConfigError
from async_etl.jobs.runner import run_job
from tests.integration.jobs_helpers import fetchval, run_cli, spec_of, write
from tests.integration.test_jobs_incremental import execute

JOB = """
name = "weird"
[source]
url = "{dsn}"
query = 'SELECT id, v AS "Größe" FROM src'
key = ["id"]
[target]
url = "{dsn}"
table = "weird_t"
[state]
url = "{dsn}"
[scd]
type = 1
"""


async def test_column_the_target_cannot_name_is_one_line_and_no_run(
    pg_dsn: str, tmp_path: Path
) -> None:
    """A source column named Größe: exit 2, 'job weird:' line naming it, no run printed or kept."""
    await execute(pg_dsn, "CREATE TABLE src (id int PRIMARY KEY, v text)",
                  "INSERT INTO src VALUES (1, 'a')")  # fmt: skip
    job = write(tmp_path, "weird.toml", JOB.format(dsn=pg_dsn))
    code, out, err = await run_cli("run", str(job), "--log-format", "json")
    assert code == 2, err
    assert "FAILED" not in out and "run weird-" not in out
    lines = [ln for ln in err.splitlines() if ln.startswith("async-etl:")]
    assert len(lines) == 1 and lines[0].startswith("async-etl: error: job weird: "), err
    assert "source column 'Größe' is not a plain name" in lines[0] and "Traceback" not in err
    if await fetchval(pg_dsn, "SELECT to_regclass('async_etl_runs')") is not None:
        assert await fetchval(pg_dsn, "SELECT count(*) FROM async_etl_runs") == 0


async def test_key_and_column_refusals_name_the_job(pg_dsn: str) -> None:
    """A [source] key or [scd] column that is not in the source: the error starts 'job NAME:'."""
    await execute(pg_dsn, "CREATE TABLE src (id int PRIMARY KEY, v text)")
    base = JOB.format(dsn=pg_dsn).replace(
        "query = 'SELECT id, v AS \"Größe\" FROM src'", 'table = "src"'
    )
    for old, new, needle in [
        ('key = ["id"]', 'key = ["nope"]', "[source] key: nope not among the source columns"),
        ("type = 1", 'type = 2\ntracked = ["zz"]', "[scd] tracked: zz not among"),
    ]:
        with pytest.raises(ConfigError) as info:
            await run_job(spec_of(base.replace(old, new)))
        assert str(info.value).startswith(f"job weird: {needle}"), str(info.value)
