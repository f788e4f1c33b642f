"""Orchestrator scheduling overhead: 1,000 trivial jobs, local_max = 50, async vs a thread pool.

Both sides run the same jobs under the same limits and write the same status rows (job row
PENDING -> RUNNING -> SUCCEEDED, one attempt row) to the same PostgreSQL state store:

- async:   ``Orchestrator`` (one event loop, CapacityLimiter(local_max), advisory-lock global
           slots when --global-max is given, synthetic ``kind = "sleep"`` jobs);
- threads: ``ThreadPoolExecutor(max_workers=local_max)``, one psycopg connection per thread.

Scenarios: ``sleep`` (each job sleeps SLEEP_S: ideal wall = ceil(jobs / local_max) * SLEEP_S)
and ``connect`` (each job opens one connection to the database and runs SELECT 1).
Overhead per job = (wall - ideal) / jobs (what each extra job adds to the wall time), and
slot ms/job = the same times local_max (slot time each job holds beyond its own work).  Usage:

    python benchmarks/orchestrator_overhead.py [--dsn postgresql://...] [--jobs 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from tempfile import TemporaryDirectory

import asyncpg
import psycopg

from async_etl.log import configure_logging
from async_etl.orchestrator.driver import Orchestrator
from async_etl.orchestrator.plan import load_plan
from async_etl.runtime import loop

JOBS, LOCAL_MAX, SLEEP_S = 1000, 50, 0.05


def plan_text(name: str, dsn: str, jobs: int, scenario: str, global_max: int | None) -> str:
    head = f'name = "{name}"\nstate = "{dsn}"\nlocal_max = {LOCAL_MAX}\n'
    head += f"global_max = {global_max}\n" if global_max else ""
    head += f"[budgets]\ndefault = {LOCAL_MAX}\n"
    job = (
        f"seconds = {SLEEP_S}\n" if scenario == "sleep" else f'connections = 1\ntarget = "{dsn}"\n'
    )
    return head + "".join(f'[[jobs]]\nkind = "sleep"\nname = "j{i}"\n{job}' for i in range(jobs))


def run_async(dsn: str, jobs: int, scenario: str, global_max: int | None) -> float:
    with TemporaryDirectory() as tmp:
        path = Path(tmp) / "plan.toml"
        path.write_text(plan_text(f"bench-{uuid.uuid4().hex[:6]}", dsn, jobs, scenario, global_max))
        plan = load_plan(path)

        async def main() -> float:
            outcome = await Orchestrator(plan).run()
            assert outcome.status == "SUCCEEDED", outcome.status
            return outcome.wall_s

        return loop.run(main)


def run_threads(dsn: str, jobs: int, scenario: str) -> float:
    local = threading.local()
    conns: list[psycopg.Connection] = []
    run_id = f"threads-{uuid.uuid4().hex[:8]}"

    def state() -> psycopg.Connection:
        if not hasattr(local, "conn"):
            local.conn = psycopg.connect(dsn, autocommit=True)
            conns.append(local.conn)
        return local.conn

    def job(name: str) -> None:
        c = state()
        c.execute(
            "UPDATE async_etl_plan_jobs SET status = 'RUNNING', attempts = 1, "
            "started_at = now() WHERE plan_run_id = %s AND job = %s",
            (run_id, name),
        )
        c.execute(
            "INSERT INTO async_etl_plan_attempts (plan_run_id, job, attempt, started_at) "
            "VALUES (%s, %s, 1, now())",
            (run_id, name),
        )
        if scenario == "sleep":
            time.sleep(SLEEP_S)
        else:
            with psycopg.connect(dsn) as work:
                work.execute("SELECT 1")
        c.execute(
            "UPDATE async_etl_plan_attempts SET finished_at = now(), status = 'SUCCEEDED' "
            "WHERE plan_run_id = %s AND job = %s AND attempt = 1",
            (run_id, name),
        )
        c.execute(
            "UPDATE async_etl_plan_jobs SET status = 'SUCCEEDED', finished_at = now() "
            "WHERE plan_run_id = %s AND job = %s",
            (run_id, name),
        )

    t0 = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(
            "INSERT INTO async_etl_plan_runs (plan_run_id, plan, status) "
            "VALUES (%s, 'threads', 'RUNNING')",
            (run_id,),
        )
        with c.cursor() as cur:
            cur.executemany(
                "INSERT INTO async_etl_plan_jobs (plan_run_id, job, status) "
                "VALUES (%s, %s, 'PENDING')",
                [(run_id, f"j{i}") for i in range(jobs)],
            )
    with ThreadPoolExecutor(max_workers=LOCAL_MAX) as pool:
        for future in [pool.submit(job, f"j{i}") for i in range(jobs)]:
            future.result()
    wall = time.perf_counter() - t0
    for conn in conns:
        conn.close()
    return wall


def fresh_database(server: str) -> str:
    name = f"orch_bench_{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        conn = await asyncpg.connect(server)
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()

    asyncio.run(create())
    return server.rsplit("/", 1)[0] + "/" + name


def drop_database(server: str, dsn: str) -> None:
    """Drop the benchmark's own database (``fresh_database``'s), sessions and all."""
    name = dsn.rsplit("/", 1)[1]

    async def drop() -> None:
        conn = await asyncpg.connect(server)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()

    asyncio.run(drop())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--jobs", type=int, default=JOBS)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    configure_logging("console", level=logging.WARNING)
    dsn = fresh_database(args.dsn)
    try:
        _measure(args, dsn)
    finally:
        drop_database(args.dsn, dsn)


def _measure(args: argparse.Namespace, dsn: str) -> None:
    run_async(dsn, 50, "sleep", None)  # warm-up; also creates the state tables
    run_threads(dsn, 50, "sleep")
    print(f"jobs={args.jobs} local_max={LOCAL_MAX} sleep_s={SLEEP_S} state={dsn}")
    print(
        f"{'scenario':<8} {'runner':<22} {'best wall s':>11} {'jobs/s':>8} "
        f"{'overhead ms/job':>15} {'slot ms/job':>11}"
    )
    for scenario in ("sleep", "connect"):
        ideal = math.ceil(args.jobs / LOCAL_MAX) * SLEEP_S if scenario == "sleep" else 0.0
        runs = {
            "async (no global)": lambda s=scenario: run_async(dsn, args.jobs, s, None),
            "async (global_max=50)": lambda s=scenario: run_async(dsn, args.jobs, s, LOCAL_MAX),
            "threads (pool of 50)": lambda s=scenario: run_threads(dsn, args.jobs, s),
        }
        for label, fn in runs.items():
            wall = min(fn() for _ in range(args.repeat))
            overhead_ms = (wall - ideal) / args.jobs * 1000
            print(
                f"{scenario:<8} {label:<22} {wall:>11.2f} {args.jobs / wall:>8.0f} "
                f"{overhead_ms:>15.2f} {overhead_ms * LOCAL_MAX:>11.1f}"
            )


if __name__ == "__main__":
    main()
