"""Mapper jobs and plans from code: specs as mappings, progress, stop, cancellation, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import asyncpg
import pytest

import async_etl
from async_etl import ConfigError, Progress, job_spec, run_job, run_plan
from async_etl.core.modes import new_table


async def _seed(dsn: str, rows: int = 3000) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE SCHEMA src; CREATE TABLE src.customers (id int PRIMARY KEY, name text); "
            f"INSERT INTO src.customers SELECT g, 'n' || g FROM generate_series(1, {rows}) g"
        )
    finally:
        await conn.close()


def _job(dsn: str, name: str = "customers", **parallel: Any) -> dict[str, Any]:
    return {
        "name": name,
        "source": {"url": dsn, "query": "SELECT id, name FROM src.customers", "key": ["id"]},
        "target": {"url": dsn, "table": f"dw_{name}"},
        "scd": {"type": 1},
        "parallel": {"chunk_size": 200, "min_rows_for_parallel": 0, "max_workers": 2, **parallel},
    }


async def test_a_job_built_in_code_runs_with_progress(pg_dsn: str) -> None:
    """A mapping spec runs like its TOML twin; the callback sees chunks done and rows read."""
    await _seed(pg_dsn)
    events: list[Progress] = []
    result = await run_job(_job(pg_dsn), on_progress=events.append)
    assert result.status == "SUCCEEDED" and result.inserted == 3000
    assert events and events[-1].chunks_done == events[-1].chunks_total == result.chunks_total
    assert max(e.rows_read for e in events) == 3000


def test_a_bad_spec_in_code_is_the_same_one_line_error_as_a_file(pg_dsn: str) -> None:
    """An unknown key or a missing section in a mapping fails like a job file, in one line."""
    spec = _job(pg_dsn)
    spec["scd"] = {"type": 1, "trackd": ["name"]}
    with pytest.raises(ConfigError, match=r"\[scd\] trackd: unknown key") as err:
        job_spec(spec)
    assert "\n" not in str(err.value)
    spec["scd"] = {"type": 1}
    del spec["target"]
    with pytest.raises(ConfigError, match="target"):
        job_spec(spec)


async def test_a_stop_event_ends_the_job_at_a_safe_point(pg_dsn: str) -> None:
    """Setting ``stop`` once a chunk is done ends the run STOPPED with its chunks intact."""
    await _seed(pg_dsn, rows=20_000)
    stop = anyio.Event()

    def on_progress(p: Progress) -> None:
        if p.chunks_done >= 1:
            stop.set()

    result = await run_job(
        _job(pg_dsn, max_workers=1, chunk_size=100), stop=stop, on_progress=on_progress
    )
    assert result.status == "STOPPED"
    assert 0 < result.chunks_done < result.chunks_total
    # an initial load builds its target as a new table, renamed in when every chunk is done
    # (``planning.builds_new_table``): the stopped run's chunks are there, the target is not yet
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert await conn.fetchval("SELECT to_regclass('dw_customers')") is None
        building = new_table("dw_customers")
        assert await conn.fetchval(f"SELECT count(*) FROM {building}") == result.inserted
        resumed = await run_job(_job(pg_dsn))
        assert resumed.status == "SUCCEEDED" and resumed.resumed
        assert await conn.fetchval("SELECT count(*) FROM dw_customers") == 20_000
    finally:
        await conn.close()


async def test_cancelling_the_calling_task_marks_the_run_stopped(pg_dsn: str) -> None:
    """Cancellation propagates, and the run's state row says STOPPED (it can resume)."""
    await _seed(pg_dsn, rows=20_000)
    with anyio.move_on_after(30) as scope:
        async with anyio.create_task_group() as tg:

            def cancel(p: Progress) -> None:
                if p.chunks_done >= 1:
                    tg.cancel_scope.cancel()

            tg.start_soon(lambda: run_job(_job(pg_dsn, max_workers=1, chunk_size=100),
                                          on_progress=cancel))  # fmt: skip
    assert not scope.cancelled_caught
    conn = await asyncpg.connect(pg_dsn)
    try:
        status = await conn.fetchval("SELECT status FROM async_etl_runs ORDER BY started_at DESC")
    finally:
        await conn.close()
    assert status == "STOPPED"
    resumed = await run_job(_job(pg_dsn))
    assert resumed.status == "SUCCEEDED" and resumed.resumed


async def test_a_plan_built_in_code_runs_its_jobs_in_order(pg_dsn: str, tmp_path: Path) -> None:
    """A plan mapping with job files runs every job; the outcome is typed and complete."""
    await _seed(pg_dsn)
    import orjson

    for name in ("first", "second"):
        job = _job(pg_dsn, name)
        lines = [f'name = "{name}"']
        for section in ("source", "target", "scd", "parallel"):
            lines.append(f"[{section}]")
            lines += [f"{k} = {orjson.dumps(v).decode()}" for k, v in job[section].items()]
        (tmp_path / f"{name}.toml").write_text("\n".join(lines) + "\n")
    plan = {
        "name": "from-code",
        "state": pg_dsn,
        "jobs": [
            {"file": "first.toml"},
            {"file": "second.toml", "depends_on": ["first"]},
        ],
    }
    seen: list[str] = []
    outcome = await run_plan(plan, base_dir=tmp_path, on_progress=lambda p: seen.append(p.job))
    assert isinstance(outcome, async_etl.PlanOutcome)
    assert outcome.status == "SUCCEEDED"
    assert {name: state.status for name, state in outcome.jobs.items()} == {
        "first": "SUCCEEDED",
        "second": "SUCCEEDED",
    }
    assert set(seen) == {"first", "second"}
