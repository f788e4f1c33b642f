"""A job refused before its run is recorded prints one error line, not a FAILED run summary."""

from __future__ import annotations

from pathlib import Path

from tests.integration.jobs_helpers import fetchval, run_cli, write
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
    assert "Größe" in lines[0] and "Traceback" not in err
    runs = await fetchval(pg_dsn, "SELECT count(*) FROM async_etl_runs")
    assert runs == 0
