"""Bad job files touch nothing (exit 2, one line); bad rows are rejected or fail the run whole."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import pytest

from async_etl.core.chunks import ChunkPlan, row_in_chunk
from async_etl.errors import ErrorKind
from async_etl.jobs.api import JobOptions
from async_etl.jobs.runner import run_job
from tests.integration.jobs_helpers import (
    at,
    cols_of,
    fetchval,
    history,
    job_toml,
    load_source,
    norm,
    reference,
    run_cli,
    spec_of,
    table_rows,
    write,
)


def _bad_files(dsn: str) -> dict[str, tuple[str, str]]:
    base = job_toml("bad", dsn, "dw.dim")
    dead = "postgresql://postgres:secret@127.0.0.1:1/nowhere"
    return {
        "malformed": (base + "\n[scd\n", "malformed TOML"),
        "unknown key": (base.replace("chunk_size", "chunk_sise"), "chunk_sise"),
        "missing key": (base.replace('table = "dw.dim"', ""), "[target] table"),
        "bad identifier": (base.replace('"dw.dim"', '"dw.dim; drop"'), "bad identifier"),
        "unknown column": (
            base.replace('tracked = ["name", "city"]', 'tracked = ["nope"]'),
            "nope",
        ),
        "unreachable": (  # one quick retry: a retry line is still written, not 13 s of them
            base.replace(f'url = "{dsn}"\ntable', f'url = "{dead}"\ntable')
            + "[retry]\nmax_attempts = 2\nbase_delay = 0.05\n",
            "127.0.0.1:1",
        ),
    }


@pytest.mark.parametrize(
    "case",
    ["malformed", "unknown key", "missing key", "bad identifier", "unknown column", "unreachable"],
)
async def test_bad_job_file_exits_2_and_touches_nothing(
    pg_dsn: str, tmp_path: Path, case: str
) -> None:
    """Each broken job file: exit 2, one line naming the key or URL (masked), no table made."""
    await load_source(pg_dsn, history(seed=1, n_keys=30, runs=1)[0])
    text, needle = _bad_files(pg_dsn)[case]
    code, out, err = await run_cli("run", str(write(tmp_path, "bad.toml", text)))
    assert code == 2, (out, err)
    lines = [ln for ln in err.splitlines() if ln.startswith("async-etl: error:")]
    assert len(lines) == 1 and needle in lines[0], err
    retries = [ln for ln in err.splitlines() if "retrying" in ln]  # an unreachable server
    assert len(err.strip().splitlines()) == 1 + len(retries) and "Traceback" not in err
    assert "secret" not in err
    tables = await fetchval(
        pg_dsn,
        "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', "
        "'information_schema', 'src')",
    )
    assert tables == 0


async def _constrained_target(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE SCHEMA dw; CREATE TABLE dw.dim (a bigint NOT NULL, b text NOT NULL, "
            "name varchar(2), city text, tier integer CHECK (tier <> 7), "
            "valid_from timestamptz NOT NULL, valid_to timestamptz, "
            "is_current boolean NOT NULL DEFAULT true)"
        )
    finally:
        await conn.close()


def _with_bad_rows(seed: int) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    rows = history(seed=seed, n_keys=600, runs=1)[0]
    bad = []
    for i, row in enumerate(rows):
        if i % 97 == 5:
            row["name"] = "far too long"
            bad.append(row)
        elif i % 89 == 7:
            row["tier"] = 7
            bad.append(row)
    return rows, bad


async def test_reject_bad_rows_loads_the_rest(pg_dsn: str) -> None:
    """on_bad_row = reject: refused rows land in async_etl_rejects with key and reason."""
    rows, bad = _with_bad_rows(seed=2)
    await load_source(pg_dsn, rows)
    await _constrained_target(pg_dsn)
    spec = spec_of(job_toml("rej", pg_dsn, "dw.dim", chunk_size=80, extra='on_bad_row = "reject"'))
    result = await run_job(spec, options=JobOptions(as_of=at(0)))
    assert result.status == "SUCCEEDED", result.error
    assert result.rejected == len(bad) > 5
    conn = await asyncpg.connect(pg_dsn)
    try:
        rejects = await conn.fetch("SELECT job, run_id, key, reason FROM async_etl_rejects")
        counted = await conn.fetchval("SELECT rows_rejected FROM async_etl_runs")
    finally:
        await conn.close()
    assert counted == len(bad)
    assert {(r["job"], r["run_id"]) for r in rejects} == {("rej", result.run_id)}
    keys = sorted((json.loads(r["key"])["a"], json.loads(r["key"])["b"]) for r in rejects)
    assert keys == sorted((r["a"], r["b"]) for r in bad)
    assert all("22001" in r["reason"] or "23514" in r["reason"] for r in rejects)
    cols = cols_of(2)
    good = [r for r in rows if r not in bad]
    assert norm(await table_rows(pg_dsn, "dw.dim"), cols) == norm(reference([good], cols), cols)


async def test_fail_on_bad_row_commits_no_partial_chunk(pg_dsn: str) -> None:
    """on_bad_row = fail: FAILED with the database's message; only whole chunks are in."""
    rows, bad = _with_bad_rows(seed=3)
    await load_source(pg_dsn, rows)
    await _constrained_target(pg_dsn)
    spec = spec_of(job_toml("fail", pg_dsn, "dw.dim", chunk_size=80))
    result = await run_job(spec)
    assert result.status == "FAILED"
    assert result.error_kind is ErrorKind.DATA
    assert result.error is not None and "SQLSTATE" in result.error
    conn = await asyncpg.connect(pg_dsn)
    try:
        plan = ChunkPlan.from_json(
            json.loads(await conn.fetchval("SELECT plan FROM async_etl_runs"))
        )
        done = {
            r[0]
            for r in await conn.fetch(
                "SELECT chunk_index FROM async_etl_chunks WHERE status = 'COMMITTED'"
            )
        }
        status = await conn.fetchval("SELECT status FROM async_etl_runs")
    finally:
        await conn.close()
    assert status == "FAILED"
    loaded = {(r["a"], r["b"]) for r in await table_rows(pg_dsn, "dw.dim")}
    expected = {
        (r["a"], r["b"])
        for r in rows
        if any(row_in_chunk((r["a"], r["b"]), plan.chunks[i]) for i in done)
    }
    assert loaded == expected
    for row in bad:
        chunk = plan.chunk_for((row["a"], row["b"]))
        assert chunk.index not in done
