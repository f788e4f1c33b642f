"""bench and run on a real two-node Ray cluster: SIGKILL an actor mid-run, nothing lost."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import psutil
import psycopg
import pytest

from async_etl.jobs.api import JobOptions
from async_etl.jobs.runner import run_job
from async_etl.runtime.ray_bench import units_per_actor
from tests.integration.jobs_helpers import (
    at,
    cols_of,
    history,
    job_toml,
    load_source,
    norm,
    reference,
    slow_target,
    spec_of,
    table_rows,
)
from tests.ray.cluster import NO_AUTH, two_node_cluster

REPO = str(Path(__file__).resolve().parents[2])
RECORDS = 400_000
WORKERS = 2


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A two-node Ray cluster for this module's tests; its GCS address."""
    with two_node_cluster(REPO) as address:
        yield address


def _actor_pids(kind: str) -> list[int]:
    pids = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if cmd.startswith(f"ray::{kind}"):
            pids.append(int(proc.info["pid"]))
    return pids


def _count(dsn: str, sql: str) -> int:
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute(sql).fetchone()
    except psycopg.Error:
        return 0
    return int(row[0]) if row else 0


def _first(pids: list[int]) -> int | None:
    return pids[0]


def _talking_to_postgres(pids: list[int]) -> int | None:
    """The actor with a connection to PostgreSQL open (the one running the job), if any."""
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            if any(c.raddr and c.raddr.port == 5432 for c in psutil.Process(pid).net_connections()):
                return pid
    return None


def _kill_one_during(
    cmd: list[str],
    kind: str,
    ready: Callable[[], bool],
    before_kill: Callable[[], None],
    pick: Callable[[list[int]], int | None] = _first,
) -> tuple[int | None, int, str]:
    """Run ``cmd``; once 2 ``kind`` actors run and ``ready()``, SIGKILL the one ``pick`` names.

    Returns (killed pid or None, exit status, stderr).
    """
    env = {**os.environ, "PYTHONPATH": REPO, **NO_AUTH}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 90
    killed = None
    while killed is None and time.monotonic() < deadline and proc.poll() is None:
        pids = _actor_pids(kind)
        victim = pick(pids) if len(pids) == 2 and ready() else None
        if victim is not None:
            before_kill()
            killed = victim
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    _, stderr = proc.communicate(timeout=180)
    return killed, proc.returncode, stderr.decode()


def test_sigkill_of_a_bench_actor_loses_and_duplicates_nothing(
    cluster: str, pg_dsn: str, tmp_path: Path
) -> None:
    """A bench actor SIGKILLed mid-run: run completes, every row once, only its units re-sent."""
    out = tmp_path / "summary.json"
    cmd = [sys.executable, "-m", "async_etl", "bench", "--sink", pg_dsn]
    cmd += ["--records", str(RECORDS), "--batch-size", "2000", "--concurrency", "2"]
    cmd += ["--generators", "0", "--ray", cluster, "--ray-actors", "2"]
    cmd += ["--log-format", "json", "--json-out", str(out)]
    rows_in = "SELECT count(*) FROM async_etl_bench"
    killed, code, stderr = _kill_one_during(
        cmd, "BenchActor", lambda: _count(pg_dsn, rows_in) > 0, lambda: None
    )
    assert killed is not None, "the run ended before an actor could be killed"
    assert code == 0, stderr[-2000:]
    summary = json.loads(out.read_text())
    ray = summary["extra"]["ray"]
    with psycopg.connect(pg_dsn) as conn:
        count, distinct, low, high = conn.execute(
            "SELECT count(*), count(DISTINCT id), min(id), max(id) FROM async_etl_bench"
        ).fetchone() or (0, 0, 0, 0)
    assert (count, distinct) == (RECORDS, RECORDS)
    assert [low, high + 1] == summary["id_range"]
    assert summary["ok"] and summary["records"] == summary["reconciled"] == RECORDS
    assert len(ray["lost_actors"]) == 1
    held = units_per_actor(2)  # --concurrency 2
    assert ray["units_per_actor"] == held
    assert 1 <= ray["resent_units"] <= held  # only the units the dead actor held


def test_sigkill_of_a_chunk_actor_reruns_only_its_chunks(
    cluster: str, pg_dsn: str, tmp_path: Path
) -> None:
    """A chunk actor SIGKILLed mid-run: the run succeeds; only its chunks in flight are re-run."""
    # target == model; no chunk that had committed is re-run.
    rows = history(seed=3, n_keys=1500, runs=1)[0]
    anyio.run(load_source, pg_dsn, rows)
    anyio.run(slow_target, pg_dsn, "dw.dim", 2, 0.1)
    job = tmp_path / "job.toml"
    job.write_text(job_toml("killjob", pg_dsn, "dw.dim", workers=WORKERS, chunk_size=50))
    out = tmp_path / "result.json"
    cmd = [sys.executable, "-m", "async_etl", "run", str(job), "--as-of", at(0).isoformat()]
    cmd += ["--ray", cluster, "--ray-actors", "2", "--log-format", "json", "--json-out", str(out)]
    committed_before: set[int] = set()

    def snapshot() -> None:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            got = conn.execute(
                "SELECT chunk_index FROM async_etl_chunks WHERE committed_at IS NOT NULL"
            ).fetchall()
        committed_before.update(int(r[0]) for r in got)

    checkpoints = "SELECT count(*) FROM async_etl_chunks WHERE committed_at IS NOT NULL"
    killed, code, stderr = _kill_one_during(
        cmd, "ChunkActor", lambda: _count(pg_dsn, checkpoints) > 0, snapshot
    )
    assert killed is not None, "the run ended before an actor could be killed"
    assert code == 0, stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["status"] == "SUCCEEDED"
    assert result["chunks_done"] == result["chunks_total"] > 10
    assert result["rows_read"] == len(rows)
    cols = cols_of(2)
    got = anyio.run(table_rows, pg_dsn, "dw.dim")
    assert norm(got, cols) == norm(reference([rows], cols), cols)
    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    lost = [e["chunk"] for e in events if e.get("event") == "ray_actor_lost"]
    assert 1 <= len(lost) <= WORKERS  # only the chunks in flight on the dead actor
    assert committed_before and not set(lost) & committed_before


def test_sigkill_of_a_job_actor_resumes_the_job_elsewhere(
    cluster: str, pg_dsn: str, tmp_path: Path
) -> None:
    """orchestrate --ray: a job's actor SIGKILLed mid-job, the job resumes in another actor."""
    # Same run, it succeeds in its one attempt, target == model, and no chunk that had committed
    # is run again (its checkpoint time is unchanged).
    rows = history(seed=4, n_keys=1500, runs=1)[0]
    anyio.run(load_source, pg_dsn, rows)
    anyio.run(slow_target, pg_dsn, "dw.dim", 2, 0.1)
    (tmp_path / "job.toml").write_text(
        job_toml("jobkill", pg_dsn, "dw.dim", workers=WORKERS, chunk_size=50)
    )
    plan = tmp_path / "plan.toml"
    plan.write_text(f'name = "killplan"\nstate = "{pg_dsn}"\n[[jobs]]\nfile = "job.toml"\n')
    out = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "async_etl", "orchestrate", str(plan), "--ray", cluster]
    cmd += ["--ray-actors", "2", "--log-format", "json", "--json-out", str(out)]
    committed = "SELECT chunk_index, committed_at FROM async_etl_chunks WHERE status = 'COMMITTED'"
    before: dict[int, object] = {}

    def snapshot() -> None:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            before.update((int(i), at_) for i, at_ in conn.execute(committed).fetchall())

    checkpoints = "SELECT count(*) FROM async_etl_chunks WHERE committed_at IS NOT NULL"
    killed, code, stderr = _kill_one_during(
        cmd, "JobActor", lambda: _count(pg_dsn, checkpoints) > 0, snapshot, _talking_to_postgres
    )
    assert killed is not None, "the job ended before its actor could be killed"
    assert code == 0, stderr[-2000:]
    report = json.loads(out.read_text())
    [job] = report["jobs"]
    assert (job["status"], job["attempts"], job["rows"]) == ("SUCCEEDED", 1, len(rows))
    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    lost = [e for e in events if e.get("event") == "ray_job_actor_lost"]
    assert [e["pid"] for e in lost] == [killed]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        after = {int(i): at_ for i, at_ in conn.execute(committed).fetchall()}
        [(as_of,)] = conn.execute("SELECT as_of FROM async_etl_runs WHERE job = 'jobkill'")
    assert before and all(after[i] == at_ for i, at_ in before.items())
    assert len(after) > len(before)  # and one run only: the dead attempt's run was resumed
    local = spec_of(job_toml("local", pg_dsn, "dw.local", workers=WORKERS, chunk_size=50))
    single = anyio.run(lambda: run_job(local, options=JobOptions(as_of=as_of)))
    assert single.status == "SUCCEEDED", single.error
    cols = cols_of(2)
    got = norm(anyio.run(table_rows, pg_dsn, "dw.dim"), cols)
    assert got == norm(anyio.run(table_rows, pg_dsn, "dw.local"), cols)
