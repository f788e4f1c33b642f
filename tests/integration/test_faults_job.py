"""A killed connection at any step of a mapper job is retried: the job ends like a clean run.

A ``PgProxy`` between the job and PostgreSQL answers the first statement matching a step's
pattern with ``FATAL 57P01`` (what ``pg_terminate_backend`` sends) and drops the session; the
statement never runs.  Each step is hit in turn; the target must equal the pure model, which is
what a run without faults produces (the clean-run tests in ``test_jobs_*`` check that).
"""

from __future__ import annotations

import pytest

from async_etl.core.retry import RetryPolicy
from async_etl.core.scd import Row
from async_etl.jobs.api import JobOptions, JobResult
from async_etl.jobs.runner import run_job
from async_etl.jobs.spec import JobSpec
from async_etl.testing.crate import CrateStandIn
from async_etl.testing.pgproxy import Faults, PgProxy
from tests.integration.jobs_helpers import (
    at,
    cols_of,
    fetchval,
    history,
    job_toml,
    load_source,
    norm,
    reference,
    spec_of,
    table_rows,
)
from tests.integration.test_jobs_crate import crate_rows
from tests.integration.test_jobs_modes import append_toml

FAST = RetryPolicy(max_retries=6, base=0.01, cap=0.1)

SOURCE_STEPS = {
    "preflight: source columns": r"CREATE TEMP TABLE _async_etl_probe",
    "estimate": r"^EXPLAIN",
    "null-key count": r"^SELECT count\(\*\) FROM .* IS NULL",
    "chunk planning": r"row_number\(\) OVER",
}
STATE_STEPS = {
    "preflight: unfinished run": r"FROM async_etl_runs WHERE job = \$1",
    "state tables": r"current_schema\(\)\) \|\| '\.async_etl_runs'",  # the ready check
    "start run": r"^WITH no_flush_wait AS .*\(INSERT INTO async_etl_runs",
    "final run update": r"^UPDATE async_etl_runs SET status",
}
PG_STEPS = {
    **SOURCE_STEPS,
    **STATE_STEPS,
    "preflight: target columns": r"WHERE attrelid = to_regclass\(\$1\)",
    "preflight: target": r'SELECT max\("valid_from"\)',
    "target prepare": r"^SELECT to_regclass\('\"dw\"\.\"t\"'\) IS NOT NULL",  # the ready check
    "staging": r'CREATE TEMP TABLE IF NOT EXISTS "_async_etl_stage"',
    "extraction": r"^COPY \(SELECT",
    "staging copy": r'^COPY "_async_etl_stage"',
    "merge": r"^WITH x AS \(UPDATE",
    "checkpoint": r"INSERT INTO async_etl_chunks .*'COMMITTED'",
}
CRATE_STEPS = {
    **SOURCE_STEPS,
    **STATE_STEPS,
    "extraction": r"^SELECT \* FROM \(\s*SELECT a, b",
    "checkpoint": r"INSERT INTO async_etl_chunks .*'COMMITTED'",
}


def _pg_job(source_url: str, target_url: str) -> str:
    """The SCD2 test job reading through ``source_url``, writing and checkpointing elsewhere."""
    text = job_toml("kb2", target_url, "dw.t", chunk_size=100)
    return text.replace(f'url = "{target_url}"', f'url = "{source_url}"', 1)


async def _second_run_with_a_kill(
    dsn: str, spec: JobSpec, states: list[list[Row]], faults: Faults, pattern: str
) -> JobResult:
    """Run 0 clean on ``states[0]``; run 1 on ``states[1]`` with one kill armed on ``pattern``."""
    first = await run_job(spec, options=JobOptions(as_of=at(0), retry=FAST))
    assert first.status == "SUCCEEDED", first.error
    await load_source(dsn, states[1])
    faults.arm(pattern)
    result = await run_job(spec, options=JobOptions(as_of=at(1), retry=FAST))
    assert faults.kills == 1
    return result


@pytest.mark.parametrize("step", list(PG_STEPS))
async def test_pg_scd2_job_survives_a_killed_connection(pg_dsn: str, step: str) -> None:
    """PG -> PG SCD2: a connection killed at this step is retried; target = model."""
    cols = cols_of(2)
    states = history(seed=5, n_keys=300, runs=2)
    await load_source(pg_dsn, states[0])
    faults = Faults()
    async with PgProxy(pg_dsn, faults) as src, PgProxy(pg_dsn, faults) as tgt:
        spec = spec_of(_pg_job(src.url, tgt.url))
        result = await _second_run_with_a_kill(pg_dsn, spec, states, faults, PG_STEPS[step])
    assert result.status == "SUCCEEDED", result.error
    assert result.chunks_done == result.chunks_total > 1
    assert norm(await table_rows(pg_dsn, "dw.t"), cols) == norm(reference(states, cols), cols)


@pytest.mark.parametrize("step", list(CRATE_STEPS))
async def test_crate_job_survives_a_killed_connection(pg_dsn: str, step: str) -> None:
    """CrateDB target, source and state in PostgreSQL: a killed connection is retried."""
    cols = cols_of(2)
    states = history(seed=7, n_keys=240, runs=2)
    await load_source(pg_dsn, states[0])
    faults = Faults()
    async with CrateStandIn() as crate, PgProxy(pg_dsn, faults) as proxy:
        text = job_toml("kc2", proxy.url, "dw.dim", chunk_size=80)
        text = text.replace(f'url = "{proxy.url}"\ntable', f'url = "{crate.url}"\ntable')
        spec = spec_of(text + f'\n[state]\nurl = "{proxy.url}"\n')
        result = await _second_run_with_a_kill(pg_dsn, spec, states, faults, CRATE_STEPS[step])
        got = await crate_rows(crate.url, "dw.dim")
    assert result.status == "SUCCEEDED", result.error
    assert norm(got, cols) == norm(reference(states, cols), cols)


async def test_rejects_are_recorded_through_a_killed_connection(pg_dsn: str) -> None:
    """on_bad_row = reject: the rejects write meets a killed session, is retried, lands once."""
    cols = cols_of(2)
    states = history(seed=5, n_keys=200, runs=1)
    null_key = {"a": None, "b": "x", "name": "n1", "city": "p", "tier": 1}
    await load_source(pg_dsn, [*states[0], null_key])
    faults = Faults()
    faults.arm(r"^INSERT INTO async_etl_rejects")
    async with PgProxy(pg_dsn, faults) as proxy:
        spec = spec_of(job_toml("kr", proxy.url, "dw.t", extra='on_bad_row = "reject"'))
        result = await run_job(spec, options=JobOptions(as_of=at(0), retry=FAST))
    assert faults.kills == 1
    assert result.status == "SUCCEEDED" and result.rejected == 1, result.error
    assert await fetchval(pg_dsn, "SELECT count(*) FROM async_etl_rejects") == 1
    assert norm(await table_rows(pg_dsn, "dw.t"), cols) == norm(reference(states, cols), cols)


@pytest.mark.parametrize("refused", [1, 3])
async def test_job_connects_through_refused_connections(pg_dsn: str, refused: int) -> None:
    """The first connections of a run (state store, then preflight) are refused: it retries."""
    cols = cols_of(2)
    states = history(seed=5, n_keys=200, runs=1)
    await load_source(pg_dsn, states[0])
    faults = Faults()
    faults.refuse(refused)
    async with PgProxy(pg_dsn, faults) as proxy:
        spec = spec_of(job_toml("kn", proxy.url, "dw.t"))
        result = await run_job(spec, options=JobOptions(as_of=at(0), retry=FAST))
    assert faults.kills == refused and faults.refusals == 0
    assert result.status == "SUCCEEDED", result.error
    assert norm(await table_rows(pg_dsn, "dw.t"), cols) == norm(reference(states, cols), cols)


@pytest.mark.parametrize(("attempts", "status"), [(1, "FAILED"), (2, "SUCCEEDED")])
async def test_the_job_files_retry_section_decides_the_chunk_retries(
    pg_dsn: str, attempts: int, status: str
) -> None:
    """``[retry] max_attempts = 1`` makes a killed checkpoint fail the run; 2 retries it once."""
    states = history(seed=5, n_keys=200, runs=1)
    await load_source(pg_dsn, states[0])
    faults = Faults()
    faults.arm(PG_STEPS["checkpoint"])
    async with PgProxy(pg_dsn, faults) as proxy:
        retry = f"\n[retry]\nmax_attempts = {attempts}\nbase_delay = 0.01\nmax_delay = 0.05\n"
        spec = spec_of(job_toml("kq", proxy.url, "dw.t") + retry)
        result = await run_job(spec, options=JobOptions(as_of=at(0)))
    assert faults.kills == 1
    assert result.status == status, result.error


LOST_COMMIT = {
    "scd2": lambda url: job_toml("kl2", url, "dw.t", workers=1),
    "append": lambda url: append_toml("kla", url, "dw.t", workers=1),
    "reject": lambda url: job_toml("klr", url, "dw.t", workers=1, extra='on_bad_row = "reject"'),
}


@pytest.mark.parametrize("case", list(LOST_COMMIT))
async def test_a_chunk_whose_commit_reply_was_lost_is_done_once(pg_dsn: str, case: str) -> None:
    """A chunk's COMMIT lands but its reply is lost: the retry finds it done, counted once."""
    cols = cols_of(2)
    states = history(seed=5, n_keys=300, runs=1)
    null_key = {"a": None, "b": "x", "name": "n1", "city": "p", "tier": 1}
    rows = [*states[0], null_key] if case == "reject" else states[0]
    await load_source(pg_dsn, rows)
    faults = Faults()
    faults.lose_reply(r"^COMMIT", after=PG_STEPS["checkpoint"])
    async with PgProxy(pg_dsn, faults) as proxy:
        spec = spec_of(LOST_COMMIT[case](proxy.url))
        result = await run_job(spec, options=JobOptions(as_of=at(0), retry=FAST))
    assert faults.kills == 1
    assert result.status == "SUCCEEDED", result.error
    assert result.chunks_done == result.chunks_total > 1
    assert result.rows_read == len(rows)
    assert result.inserted == len(states[0]) and result.rejected == (case == "reject")
    assert await fetchval(pg_dsn, "SELECT count(*) FROM async_etl_rejects") == result.rejected
    if case == "append":
        assert await fetchval(pg_dsn, "SELECT count(*) FROM dw.t") == len(states[0])
    else:
        assert norm(await table_rows(pg_dsn, "dw.t"), cols) == norm(reference(states, cols), cols)
