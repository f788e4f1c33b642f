"""bench over a real two-node Ray cluster: SIGKILL an actor mid-run, every row lands once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import psycopg

from async_etl.runtime.ray_bench import UNITS_PER_ACTOR
from tests.ray.cluster import NO_AUTH, two_node_cluster

REPO = str(Path(__file__).resolve().parents[2])
RECORDS = 400_000


def _actor_pids() -> list[int]:
    pids = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if cmd.startswith("ray::BenchActor"):
            pids.append(int(proc.info["pid"]))
    return pids


def _rows(dsn: str) -> int:
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM async_etl_bench").fetchone()
    except psycopg.Error:
        return 0
    return int(row[0]) if row else 0


def test_sigkill_of_an_actor_mid_run_loses_and_duplicates_nothing(
    pg_dsn: str, tmp_path: Path
) -> None:
    """An actor SIGKILLed mid-run: run completes, every row once, only its units re-sent."""
    out = tmp_path / "summary.json"
    with two_node_cluster(REPO) as address:
        cmd = [
            sys.executable,
            "-m",
            "async_etl",
            "bench",
            "--sink",
            pg_dsn,
            "--records",
            str(RECORDS),
        ]
        cmd += ["--batch-size", "2000", "--concurrency", "2", "--generators", "0", "--ray", address]
        cmd += ["--ray-actors", "2", "--log-format", "json", "--json-out", str(out)]
        env = {**os.environ, "PYTHONPATH": REPO, **NO_AUTH}
        bench = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 90
        killed = None
        while killed is None and time.monotonic() < deadline and bench.poll() is None:
            pids = _actor_pids()
            if len(pids) == 2 and _rows(pg_dsn) > 0:
                killed = pids[0]
                os.kill(killed, signal.SIGKILL)
            time.sleep(0.05)
        _, stderr = bench.communicate(timeout=120)
    assert killed is not None, "the run ended before an actor could be killed"
    assert bench.returncode == 0, stderr.decode()[-2000:]
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
    assert 1 <= ray["resent_units"] <= UNITS_PER_ACTOR  # only the units the dead actor held
    assert ray["units"] * 2000 * 2 >= RECORDS
