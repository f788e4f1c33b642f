"""SIGINT / SIGTERM during `async-etl run`: exit 3, run STOPPED, the next run resumes correctly."""

from __future__ import annotations

import asyncio
import random
import signal
from datetime import datetime
from pathlib import Path

import asyncpg

from async_etl.core.scd import Row, history_problems
from tests.integration.jobs_helpers import (
    at,
    cols_of,
    fetchval,
    generation,
    job_toml,
    load_source,
    norm,
    reference,
    run_cli,
    slow_target,
    start_cli,
    table_rows,
    wait_committed,
    write,
)

KEYS = [(a, b) for a in range(33_334) for b in ("x", "y", "Y")]  # 100,002 keys


def next_state(rnd: random.Random, rows: list[Row]) -> list[Row]:
    """``rows`` with 10% changed (tracked or overwrite columns), 5% deleted, absent keys added."""
    present = {(r["a"], r["b"]) for r in rows}
    out = [{"a": a, "b": b, "name": "new", "city": None, "tier": 9}
           for a, b in KEYS if (a, b) not in present]  # fmt: skip
    for row in rows:
        p = rnd.random()
        if p < 0.05:
            continue
        if p < 0.15:
            column = rnd.choice(["name", "city", "tier"])
            row = {**row, column: None if p < 0.07 else (3 if column == "tier" else "v2")}
        out.append(row)
    return out


async def latest_run(dsn: str) -> tuple[str, str, datetime]:
    """(run_id, status, as_of) of the newest run of the job."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow("SELECT run_id, status, as_of FROM async_etl_runs "
                                  "WHERE job = 'sig' ORDER BY started_at DESC LIMIT 1")  # fmt: skip
        return row["run_id"], row["status"], row["as_of"]
    finally:
        await conn.close()


async def stop_and_resume(dsn: str, job: Path, sig: signal.Signals, day: int) -> None:
    """Run ``job`` at ``at(day)``, send ``sig`` after one committed chunk, then run it again."""
    proc = start_cli("run", str(job), "--as-of", at(day).isoformat(), "--log-format", "json")
    await wait_committed(dsn, "sig", 1)
    proc.send_signal(sig)
    _, err = await asyncio.to_thread(proc.communicate, timeout=60)
    assert proc.returncode == 3, err
    run_id, status, as_of = await latest_run(dsn)
    assert (status, as_of) == ("STOPPED", at(day))
    chunks = "SELECT count(*) FROM async_etl_chunks WHERE run_id = $1"
    done = await fetchval(dsn, chunks + " AND status = 'COMMITTED'", run_id)
    total = await fetchval(dsn, chunks, run_id)
    assert 1 <= done < total, (done, total)
    code, out, err = await run_cli("run", str(job), "--log-format", "json", timeout=120)
    assert code == 0, err
    assert "SUCCEEDED" in out and "(resumed)" in out
    assert await latest_run(dsn) == (run_id, "SUCCEEDED", at(day))
    assert await fetchval(dsn, "SELECT count(*) FROM async_etl_runs") == day + 1


async def test_sigint_and_sigterm_stop_then_resume(pg_dsn: str, tmp_path: Path) -> None:
    """SIGINT mid initial load, SIGTERM mid second run: exit 3, STOPPED, resume equals the model."""
    cols = cols_of(2)
    rnd = random.Random(5)
    first = [r for r in generation(rnd, KEYS, 1.0) if rnd.random() > 0.01]
    states = [first, next_state(rnd, first)]
    await slow_target(pg_dsn, "dw.dim", sleep_s=0.02)  # >= 20 ms a chunk: still running
    job = write(tmp_path, "sig.toml", job_toml("sig", pg_dsn, "dw.dim", workers=2,
                                               chunk_size=2000))  # fmt: skip
    for day, sig in enumerate((signal.SIGINT, signal.SIGTERM)):
        await load_source(pg_dsn, states[day])
        await stop_and_resume(pg_dsn, job, sig, day)
        got = await table_rows(pg_dsn, "dw.dim")
        assert norm(got, cols) == norm(reference(states[: day + 1], cols), cols), sig.name
        assert history_problems(got, cols) == []


async def _count_or_zero(dsn: str, sql: str) -> int:
    """``sql``'s count, or 0 while the state tables do not exist yet."""
    try:
        return int(await fetchval(dsn, sql))
    except asyncpg.UndefinedTableError:
        return 0


async def test_a_second_signal_stops_at_once_and_still_marks_the_run_stopped(
    pg_dsn: str, tmp_path: Path
) -> None:
    """SIGINT twice: exit 3 without a traceback, the run STOPPED (not left RUNNING), resumable."""
    rnd = random.Random(7)
    await load_source(pg_dsn, generation(rnd, KEYS[:8_000], 1.0))
    await slow_target(pg_dsn, "dw.dim", sleep_s=2.0)  # each chunk's insert naps: still in flight
    job = write(tmp_path, "sig.toml", job_toml("sig", pg_dsn, "dw.dim", workers=2,
                                               chunk_size=2000))  # fmt: skip
    proc = start_cli("run", str(job), "--as-of", at(0).isoformat(), "--log-format", "json")
    napping = (  # the run has started: its first chunks are napping in their inserts
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name LIKE 'async-etl:sig:%' AND wait_event = 'PgSleep'"
    )
    for _ in range(600):
        if await _count_or_zero(pg_dsn, napping):
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("no chunk of the run got to its insert")
    proc.send_signal(signal.SIGINT)
    await asyncio.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = await asyncio.to_thread(proc.communicate, timeout=60)
    assert proc.returncode == 3, err
    assert "Traceback" not in err
    assert "async-etl: job sig STOPPED at once; the next run resumes it" in err
    run_id, status, _ = await latest_run(pg_dsn)
    assert status == "STOPPED"
    code, out, err = await run_cli("run", str(job), "--log-format", "json", timeout=180)
    assert code == 0, err
    assert "(resumed)" in out
    assert await latest_run(pg_dsn) == (run_id, "SUCCEEDED", at(0))
