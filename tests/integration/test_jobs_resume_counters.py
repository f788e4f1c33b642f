"""A resumed run's change counters are exact: each committed chunk's counts are in its checkpoint.

The run row is updated every few chunks, so a run killed between two updates had committed
chunks whose inserts the row did not hold yet; the resumed run started from the row and
reported fewer inserted rows than the target received.  The NULL-key rows are rejected (and
recorded in ``async_etl_rejects``) by the new run before any chunk, so no checkpoint holds them:
a resumed run counted them read but not rejected; it must count them, and not record them again.
"""

from __future__ import annotations

from pathlib import Path

import asyncpg

from async_etl.jobs.runner import run_job
from tests.integration.jobs_helpers import (
    at,
    fetchval,
    history,
    job_toml,
    kill_at_gate,
    killed_run,
    load_source,
    slow_target,
    spec_of,
    write,
)


async def test_counters_after_sigkill_and_resume_count_every_row(
    pg_dsn: str, tmp_path: Path
) -> None:
    """Initial SCD2 load SIGKILLed after 7 chunks, then resumed: inserted = rows read = source."""
    job, rows = await killed_run(
        pg_dsn, tmp_path, "cnt", seed=5, n_keys=1200, sleep_s=0.05, committed=7
    )
    result = await run_job(spec_of(job.read_text()))
    assert result.status == "SUCCEEDED" and result.resumed
    assert (result.rows_read, result.inserted, result.rejected) == (len(rows), len(rows), 0)
    stored = await fetchval(pg_dsn, "SELECT row(rows_read, rows_inserted)::text "
                            "FROM async_etl_runs")  # fmt: skip
    assert stored == f"({len(rows)},{len(rows)})"
    assert await fetchval(pg_dsn, "SELECT count(*) FROM dw.dim") == len(rows)


async def test_resumed_run_records_null_key_rejects_once(pg_dsn: str, tmp_path: Path) -> None:
    """5 NULL-key rows, run SIGKILLed after 3 chunks, resumed: 5 rejected, 5 reject rows."""
    rows = history(seed=7, n_keys=600, runs=1)[0]
    await load_source(pg_dsn, rows)
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("INSERT INTO src.t (a, b, name) "
                           "SELECT NULL, 'x', 'n' || i FROM generate_series(1, 5) i")  # fmt: skip
    finally:
        await conn.close()
    await slow_target(pg_dsn, "dw.dim", sleep_s=0.05)
    text = job_toml("rej", pg_dsn, "dw.dim", chunk_size=40, extra='on_bad_row = "reject"')
    job = write(tmp_path, "r.toml", text)
    await kill_at_gate(pg_dsn, "rej", 3, str(job), "--as-of", at(0).isoformat(),
                       "--log-format", "json")  # fmt: skip
    result = await run_job(spec_of(text))
    assert result.status == "SUCCEEDED" and result.resumed, result.error
    assert (result.rows_read, result.rejected) == (len(rows) + 5, 5)
    stored = await fetchval(pg_dsn, "SELECT count(*) FROM async_etl_rejects WHERE job = 'rej'")
    assert stored == result.rejected


async def test_a_fail_run_resumed_in_reject_mode_records_its_null_key_rejects(
    pg_dsn: str, tmp_path: Path
) -> None:
    """5 NULL-key rows fail a `fail` run; its resume with `reject` records the 5 it counts."""
    # a new `fail` run meeting them is not recorded (nothing to resume): this run was recorded
    # before they came (SIGKILLed after 3 chunks), and its `fail` resume fails on them
    rows = history(seed=8, n_keys=200, runs=1)[0]
    await load_source(pg_dsn, rows)
    await slow_target(pg_dsn, "dw.dim", sleep_s=0.01)
    job = write(tmp_path, "nk.toml", job_toml("nk", pg_dsn, "dw.dim", chunk_size=40))
    await kill_at_gate(pg_dsn, "nk", 3, str(job), "--as-of", at(0).isoformat(),
                       "--log-format", "json")  # fmt: skip
    await fetchval(pg_dsn, "INSERT INTO src.t (a, b, name) "
                   "SELECT NULL, 'x', 'n' || i FROM generate_series(1, 5) i")  # fmt: skip
    failed = await run_job(spec_of(job.read_text()))
    assert failed.status == "FAILED" and "NULL in key" in (failed.error or ""), failed.error
    text = job_toml("nk", pg_dsn, "dw.dim", chunk_size=40, extra='on_bad_row = "reject"')
    result = await run_job(spec_of(text))
    assert result.status == "SUCCEEDED" and result.resumed, result.error
    assert (result.rows_read, result.rejected) == (len(rows) + 5, 5)
    recorded = await fetchval(pg_dsn, "SELECT count(*) FROM async_etl_rejects WHERE job = 'nk' "
                              "AND reason = 'NULL in key column(s) a'")  # fmt: skip
    assert recorded == 5
    again = await run_job(spec_of(text))
    assert again.rejected == 5 and not again.resumed
    total = await fetchval(pg_dsn, "SELECT count(*) FROM async_etl_rejects WHERE job = 'nk'")
    assert total == 10  # 5 per run, none twice
