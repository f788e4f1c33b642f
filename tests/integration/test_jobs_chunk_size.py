"""Rows per chunk: unset, the initial load into a new table gets larger chunks; a set one is kept.

400,000 source rows and 2 workers: unset, the load into the absent target (built as a new
table, indexes after the load) is cut for 2 chunks per worker (about 100,000 rows each); a job
file's ``chunk_size`` is honoured on the same load; unset, the next run (which merges into the
existing target) keeps the 50,000 default.  The size and why are in the ``run_started`` event,
the ``JobResult``, the stored plan and ``check``'s report.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from async_etl.core.chunks import ChunkSizing, chunk_count
from async_etl.jobs.api import JobOptions, JobResult
from async_etl.jobs.runner import run_job
from tests.integration.jobs_helpers import at, fetchval, run_cli, spec_of, write

ROWS = 400_000


def job(dsn: str, name: str, chunk_size: int | None) -> str:
    """An SCD2 job over ``src.big`` into ``dw.<name>``, 2 workers, ``chunk_size`` if given."""
    size = "" if chunk_size is None else f"chunk_size = {chunk_size}\n"
    return (f'name = "{name}"\n[source]\nurl = "{dsn}"\ntable = "src.big"\nkey = ["id"]\n'
            f'[target]\nurl = "{dsn}"\ntable = "dw.{name}"\n[scd]\ntype = 2\n'
            f"[parallel]\nmax_workers = 2\n{size}")  # fmt: skip


async def seed(dsn: str) -> None:
    """``src.big``: ``ROWS`` rows with a primary key, analyzed (so the estimate is close)."""
    for sql in ("CREATE SCHEMA IF NOT EXISTS src", "CREATE SCHEMA IF NOT EXISTS dw",
                "CREATE TABLE src.big (id bigint PRIMARY KEY, v text)",
                f"INSERT INTO src.big SELECT g, md5(g::text) FROM generate_series(1, {ROWS}) g",
                "ANALYZE src.big"):  # fmt: skip
        await fetchval(dsn, sql)


async def run(dsn: str, name: str, chunk_size: int | None, day: int) -> tuple[JobResult, dict]:
    """Run the job at ``at(day)``; its result and its ``run_started`` log event."""
    with capture_logs() as logs:
        result = await run_job(spec_of(job(dsn, name, chunk_size)),
                               options=JobOptions(as_of=at(day)))  # fmt: skip
    assert result.status == "SUCCEEDED", result.error
    assert result.inserted == ROWS or day > 0
    (started,) = [e for e in logs if e["event"] == "run_started"]
    return result, started


async def test_unset_chunk_size_into_a_new_table_is_chosen_and_a_set_one_kept(
    pg_dsn: str,
) -> None:
    """Unset: 4 chunks of ~100k into the new table, 50k into the existing one; set: kept."""
    await seed(pg_dsn)
    auto, started = await run(pg_dsn, "auto", None, 0)
    assert auto.chunks_total == 4, auto
    assert auto.chunk_size is not None and 95_000 <= auto.chunk_size <= 105_000
    assert auto.chunk_size_why is not None
    assert auto.chunk_size_why.startswith("auto: a load into a new table")
    assert (started["chunk_size"], started["chunk_size_why"]) == (
        auto.chunk_size,
        auto.chunk_size_why,
    )
    stored = await fetchval(pg_dsn, "SELECT plan -> 'chunk_size' -> 'rows' "
                            "FROM async_etl_runs WHERE run_id = $1", auto.run_id)  # fmt: skip
    assert int(stored) == auto.chunk_size
    # the survey cut the chunks for the very size the plan records (one decision, not two)
    recorded = ChunkSizing(auto.chunk_size, auto.chunk_size_why)
    assert auto.chunks_total == chunk_count(started["estimate"], recorded)

    kept, started = await run(pg_dsn, "kept", 50_000, 0)
    assert (kept.chunk_size, kept.chunk_size_why) == (50_000, "set: [parallel] chunk_size")
    assert kept.chunks_total == 8 and started["chunk_size"] == 50_000
    assert kept.chunks_total == chunk_count(started["estimate"], ChunkSizing(50_000, "set"))

    merged, _ = await run(pg_dsn, "auto", None, 1)  # the target exists now: merged into it
    assert merged.chunk_size == 50_000 and merged.chunks_total == 8
    assert merged.chunk_size_why == "auto: the default 50,000 (a merge into the existing table)"
    assert await fetchval(pg_dsn, "SELECT count(*) FROM dw.auto") == ROWS


async def test_check_prints_the_chunk_size_a_run_would_use(pg_dsn: str, tmp_path: Path) -> None:
    """``check`` of the unset job says the auto size and why; of a set one, that it is set."""
    await seed(pg_dsn)
    for size, expected in ((None, "auto: a load into a new table"),
                           (60_000, "60,000 (set: [parallel] chunk_size)")):  # fmt: skip
        path = write(tmp_path, "c.toml", job(pg_dsn, "c", size))
        code, out, err = await run_cli("check", str(path))
        assert code == 0, err
        (line,) = [x for x in out.splitlines() if x.startswith("  rows per chunk ")]
        assert expected in line


@pytest.mark.parametrize(
    "analyzed_at", [None, 0, 1_000], ids=["never-analyzed", "analyzed-empty", "analyzed-at-1000"]
)
async def test_statistics_older_than_the_rows_do_not_make_one_chunk(
    pg_dsn: str, tmp_path: Path, analyzed_at: int | None
) -> None:
    """200,000 rows whose pg_class.reltuples says -1, 0 or 1,000: check estimates ~200,000."""
    rows = 200_000
    await fetchval(pg_dsn, "CREATE SCHEMA src")
    await fetchval(pg_dsn, "CREATE TABLE src.big (id bigint PRIMARY KEY, v text) "
                           "WITH (autovacuum_enabled = false)")  # fmt: skip
    fill = "INSERT INTO src.big SELECT g, md5(g::text) FROM generate_series({}, {}) g"
    if analyzed_at is not None:
        await fetchval(pg_dsn, fill.format(1, analyzed_at))
        await fetchval(pg_dsn, "ANALYZE src.big")
    await fetchval(pg_dsn, fill.format((analyzed_at or 0) + 1, rows))
    path = write(tmp_path, "stale.toml", job(pg_dsn, "stale", None))
    code, out, err = await run_cli("check", str(path))
    assert code == 0, err
    found = re.search(r"estimate ([\d,]+) rows, (\d+) chunk", out)
    assert found is not None, out
    # before: 'estimate 0 rows, 1 chunk(s)' (analyzed empty) / 'estimate 1,000 rows, 1 chunk(s)'
    assert rows // 2 <= int(found[1].replace(",", "")) <= rows * 2, found[0]
    assert int(found[2]) >= 2, found[0]
