"""A job started while another process runs it is refused; it used to join the live run.

The second process found the first one's run RUNNING, took it for an unfinished run and
"resumed" it: both ran the pending chunks, and an append loaded them twice, each process
reporting every row inserted once.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from tests.integration.jobs_helpers import (
    closed_gate,
    fetchval,
    gate_target,
    history,
    job_toml,
    load_source,
    run_cli,
    start_cli,
    wait_committed,
    wait_gone,
    write,
)


async def test_a_second_run_of_a_running_job_is_one_line_and_loads_nothing(
    pg_dsn: str, tmp_path: Path
) -> None:
    """Run 2 of a job started mid-run 1: exit 2 naming the job; the target gets each row once."""
    rows = history(seed=8, n_keys=900, runs=1)[0]
    await load_source(pg_dsn, rows)
    await fetchval(pg_dsn, "CREATE SCHEMA IF NOT EXISTS dw")
    await fetchval(pg_dsn, "CREATE TABLE dw.twin (a bigint, b text, name text, city text, "
                   "tier integer)")  # fmt: skip
    await gate_target(pg_dsn, "dw.twin", "twin", after=2)  # a closed gate holds each run there
    text = job_toml(
        "twin", pg_dsn, "dw.twin", kind=1, workers=2, chunk_size=40, extra='mode = "append"'
    ).replace('[scd]\ntype = 1\ndeletes = "delete"', "")
    job = write(tmp_path, "twin.toml", text)
    async with closed_gate(pg_dsn):
        first = start_cli("run", str(job), "--log-format", "json")
        await wait_committed(pg_dsn, "twin", 2)
        code, out, err = await run_cli("run", str(job), "--log-format", "json")
    assert code == 2, out
    assert err.count("\n") == 1 and "job twin is already running" in err, err
    await asyncio.to_thread(first.wait, 60)
    assert first.returncode == 0
    assert await fetchval(pg_dsn, "SELECT count(*) FROM dw.twin") == len(rows)
    async with closed_gate(pg_dsn):  # the killed run is killed mid-run, not after its end
        second = start_cli("run", str(job), "--fresh", "--log-format", "json")
        await wait_committed(pg_dsn, "twin", 1)
        second.send_signal(signal.SIGKILL)  # a killed run's lock dies with its connection
        await asyncio.to_thread(second.wait)
    await wait_gone(pg_dsn, "twin")  # its sessions end once the gate lets their statements go
    code, _, err = await run_cli("run", str(job), "--log-format", "json")
    assert code == 0, err
