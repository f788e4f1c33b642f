"""Mapper jobs survive SIGKILL, terminated backends and stop requests, and converge."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import asyncpg

from async_etl.core.scd import Row, history_problems
from async_etl.jobs.api import JobOptions
from async_etl.jobs.runner import run_job
from tests.integration.jobs_helpers import (
    ROUND_LOCKS,
    at,
    closed_gate,
    cols_of,
    fetchval,
    gate_checkpoint_rounds,
    gate_target,
    history,
    job_toml,
    kill_at_gate,
    killed_run,
    load_source,
    next_round,
    norm,
    reference,
    run_cli,
    slow_target,
    spec_of,
    start_cli,
    table_rows,
    wait_committed,
    wait_gone,
    wait_held_at,
    write,
)


async def test_sigkill_at_random_points_then_rerun_converges(pg_dsn: str, tmp_path: Path) -> None:
    """SIGKILL a parallel `async-etl run` at 3 random points; re-running equals the model."""
    cols = cols_of(2)
    states = history(seed=11, n_keys=1500, runs=2)
    points = random.Random(3).sample(range(2, 18), 3)
    jobs = [f"k{i}" for i in range(len(points))]
    for job in jobs:
        await slow_target(pg_dsn, f"dw.{job}", sleep_s=0.02)
    files = {j: write(tmp_path, f"{j}.toml", job_toml(j, pg_dsn, f"dw.{j}", chunk_size=50))
             for j in jobs}  # fmt: skip
    await load_source(pg_dsn, states[0])
    for job in jobs:  # the initial load, uninterrupted
        assert (await run_job(spec_of(files[job].read_text()),
                              options=JobOptions(as_of=at(0)))).status == "SUCCEEDED"  # fmt: skip
    await load_source(pg_dsn, states[1])
    for job, point in zip(jobs, points, strict=True):
        await kill_at_gate(pg_dsn, job, point, str(files[job]), "--as-of", at(1).isoformat(),
                           "--log-format", "json")  # fmt: skip
        status = await fetchval(pg_dsn, "SELECT status FROM async_etl_runs WHERE job = $1 "
                                "ORDER BY started_at DESC LIMIT 1", job)  # fmt: skip
        assert status == "RUNNING"  # killed: nobody marked it
        code, out, err = await run_cli("run", str(files[job]), "--log-format", "json")
        assert code == 0, err
        assert "SUCCEEDED" in out and "(resumed)" in out
        got = await table_rows(pg_dsn, f"dw.{job}")
        assert norm(got, cols) == norm(reference(states, cols), cols), f"kill point {point}"
        assert history_problems(got, cols) == []


async def test_terminated_backends_are_retried(pg_dsn: str) -> None:
    """pg_terminate_backend on every job connection, three times mid-run: the run completes."""
    cols = cols_of(2)
    states = history(seed=12, n_keys=1500, runs=2)
    await slow_target(pg_dsn, "dw.dim", sleep_s=0)
    spec = spec_of(job_toml("term", pg_dsn, "dw.dim", chunk_size=50))
    await load_source(pg_dsn, states[0])
    assert (await run_job(spec, options=JobOptions(as_of=at(0)))).status == "SUCCEEDED"
    await load_source(pg_dsn, states[1])
    # the second run has 18 chunks; each round holds it at a checkpoint (a chunk in flight,
    # nothing left to end the run) until its kill is done and the next round is set
    rounds = list(zip((2, 7, 12), ROUND_LOCKS, strict=True))
    killed: list[int] = []  # backends terminated in each kill round
    conn = await asyncpg.connect(pg_dsn)
    try:
        await gate_checkpoint_rounds(conn, "term")
        for _, lock in rounds:
            await conn.execute("SELECT pg_advisory_lock($1)", lock)
        await next_round(conn, *rounds[0])

        async def terminate() -> None:
            for i, (point, lock) in enumerate(rounds):
                await wait_committed(pg_dsn, "term", point)
                await wait_held_at(conn, "term", lock)
                killed.append(await conn.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name LIKE 'async-etl:term:%'"
                ))  # fmt: skip
                await next_round(conn, *(rounds[i + 1] if i + 1 < len(rounds) else (None,)))
                await conn.execute("SELECT pg_advisory_unlock($1)", lock)

        async with anyio.create_task_group() as tg:
            tg.start_soon(terminate)
            result = await run_job(spec, options=JobOptions(as_of=at(1)))
            tg.cancel_scope.cancel()  # a run that failed ends before the rounds: see below
    finally:
        await conn.close()
    assert result.status == "SUCCEEDED", result.error
    assert len(killed) == 3 and min(killed) >= 1, f"kill rounds: {killed} of {result.chunks_total}"
    got = await table_rows(pg_dsn, "dw.dim")
    assert norm(got, cols) == norm(reference(states, cols), cols)


@asynccontextmanager
async def gated_run(
    dsn: str, tmp_path: Path, name: str, *, seed: int, after: int
) -> AsyncIterator[tuple[list[list[Row]], Path, subprocess.Popen[str]]]:
    """Job ``name`` (1,500 keys into dw.dim) run by the CLI and held once ``after`` chunks commit.

    Yields the source states, the job file and the run's process while the gate is closed: the
    run cannot end before the block does.
    """
    states = history(seed=seed, n_keys=1500, runs=1)
    await load_source(dsn, states[0])
    await slow_target(dsn, "dw.dim", sleep_s=0)
    await gate_target(dsn, "dw.dim", name, after=after)
    job = write(tmp_path, f"{name}.toml", job_toml(name, dsn, "dw.dim", chunk_size=40))
    async with closed_gate(dsn):
        proc = start_cli("run", str(job), "--as-of", at(0).isoformat(), "--log-format", "json")
        await wait_committed(dsn, name, after)
        yield states, job, proc


async def test_stop_command_then_resume(pg_dsn: str, tmp_path: Path) -> None:
    """`async-etl stop JOB` mid-run: exit 3, run STOPPED; the next run resumes and is correct."""
    cols = cols_of(2)
    async with gated_run(pg_dsn, tmp_path, "stopme", seed=13, after=3) as (states, job, proc):
        code, out, err = await run_cli("stop", "stopme", "--state", pg_dsn)  # it outlasts this
    assert code == 0 and "stop requested for run stopme-" in out, err
    await asyncio.to_thread(proc.wait, 30)
    assert proc.returncode == 3
    row = await fetchval(pg_dsn, "SELECT row(status, watermark)::text FROM async_etl_runs")
    assert row.startswith("(STOPPED,")
    done = int(await fetchval(pg_dsn, "SELECT count(*) FROM async_etl_chunks "
                              "WHERE status = 'COMMITTED'"))  # fmt: skip
    total = int(await fetchval(pg_dsn, "SELECT count(*) FROM async_etl_chunks"))
    assert 3 <= done < total
    code, out, _ = await run_cli("status", str(job))
    assert code == 0 and "STOPPED" in out
    result = await run_job(spec_of(job.read_text()))
    assert result.status == "SUCCEEDED" and result.resumed and result.as_of == at(0)
    assert result.chunks_done == total
    got = await table_rows(pg_dsn, "dw.dim")
    assert norm(got, cols) == norm(reference(states, cols), cols)


async def test_status_and_stop_of_a_killed_run_say_no_live_process(
    pg_dsn: str, tmp_path: Path
) -> None:
    """A SIGKILLed run: status says no live process, stop says so (exit 1, no request)."""
    async with gated_run(pg_dsn, tmp_path, "deadrun", seed=14, after=2) as (_, job, proc):
        code, out, err = await run_cli("status", str(job), "--json")  # it runs until killed
        assert code == 0 and '"status":"RUNNING"' in out and '"live":true' in out, err
        proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(proc.wait)
    await wait_gone(pg_dsn, "deadrun")  # its sessions end once the gate lets their statements go
    code, out, err = await run_cli("status", str(job))
    assert code == 0 and "no live process: resumes on the next run" in out, err
    code, out, err = await run_cli("stop", "deadrun", "--state", pg_dsn)
    assert code == 1 and out == "", out
    assert err.count("\n") == 1 and "no live process" in err and "deadrun-" in err, err
    requests = await fetchval(pg_dsn, "SELECT count(*) FROM async_etl_stop_requests")
    assert requests == 0


async def test_status_and_stop_of_a_run_replaced_by_fresh_say_it_is_never_resumed(
    pg_dsn: str, tmp_path: Path
) -> None:
    """A killed run that ``run --fresh`` replaced: never resumed, and status / stop say so."""
    # Only the job's latest run is resumed; status said the replaced one "resumes on the next
    # run", and showed it live while a later run of its job was.
    job, _ = await killed_run(
        pg_dsn, tmp_path, "gonerun", seed=15, n_keys=600, sleep_s=0.15, committed=1
    )
    killed = await fetchval(pg_dsn, "SELECT run_id FROM async_etl_runs WHERE job = 'gonerun'")
    done = await wait_committed(pg_dsn, "gonerun", 1)
    fresh = start_cli("run", str(job), "--fresh", "--log-format", "json")
    await wait_committed(pg_dsn, "gonerun", done + 1)  # a chunk of the fresh run
    code, out, err = await run_cli("status", str(job), "--json")
    lines = [line for line in out.splitlines() if killed in line]
    assert code == 0 and len(lines) == 1 and '"live":false' in lines[0], (out, err)
    assert await asyncio.to_thread(fresh.wait) == 0
    code, out, err = await run_cli("status", str(job))
    assert code == 0 and "a later run replaced it" in out, (out, err)
    assert "resumes on the next run" not in out, out
    code, out, err = await run_cli("stop", "gonerun", "--state", pg_dsn)
    assert code == 1 and err.count("\n") == 1 and "a later run replaced it" in err, err
    assert "resumes on the next run" not in err, err
