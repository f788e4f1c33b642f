"""``async-etl orchestrate`` running real mapper jobs over tiny PostgreSQL tables."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import asyncpg
import pytest

from async_etl.errors import ErrorKind
from async_etl.orchestrator import Orchestrator, load_plan
from tests.integration.pg_activity import peak_connections

pytestmark = pytest.mark.timeout(90)

JOB = """name = "{name}"
[source]
url = "{url}"
query = "{query}"
key = ["id"]
[target]
url = "{url}"
table = "dw.{name}"
[scd]
type = 1
[parallel]
chunk_size = 300
min_rows_for_parallel = 0
max_workers = 4
"""


async def seed(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE SCHEMA src; CREATE SCHEMA dw; "
            "CREATE TABLE src.customers (id int PRIMARY KEY, name text, city text); "
            "INSERT INTO src.customers SELECT g, 'n' || g, 'c' || g % 7 "
            "FROM generate_series(1, 600) g; "
            "CREATE TABLE src.orders (id int PRIMARY KEY, customer_id int, amount numeric); "
            "INSERT INTO src.orders SELECT g, g % 600 + 1, g * 1.5 FROM generate_series(1, 3000) g"
        )
    finally:
        await conn.close()


def write_plan(tmp_path: Path, dsn: str, budget: int) -> Path:
    jobs = {
        "dim_customer": ("SELECT id, name, city FROM src.customers", []),
        "fact_orders": ("SELECT id, customer_id, amount FROM src.orders", ["dim_customer"]),
        "fact_copy": ("SELECT id, customer_id, amount FROM src.orders", []),
        "broken": ("SELECT id FROM src.missing_table", []),
        "after_broken": ("SELECT id, name FROM src.customers", ["broken"]),
    }
    (tmp_path / "jobs").mkdir()
    body = [
        f'name = "e2e"\nstate = "{dsn}"\nlocal_max = 3\nglobal_max = 3\n'
        f'[retry]\nmax_attempts = 3\nbase_delay = 0.05\n[budgets]\n"{dsn}" = {budget}\n'
    ]
    for name, (query, deps) in jobs.items():
        (tmp_path / "jobs" / f"{name}.toml").write_text(JOB.format(name=name, url=dsn, query=query))
        body.append(f'[[jobs]]\nfile = "jobs/{name}.toml"\ndepends_on = {json.dumps(deps)}\n')
    plan = tmp_path / "plan.toml"
    plan.write_text("".join(body))
    return plan


async def test_real_mapper_jobs_run_in_order_within_budget(tmp_path: Path, pg_dsn: str) -> None:
    """Jobs load in dependency order, a failure skips only its dependents, connections in budget."""
    # A permanent failure skips only its dependents; job connections never exceed the budget.
    await seed(pg_dsn)
    plan, report_file = write_plan(tmp_path, pg_dsn, budget=5), tmp_path / "report.json"
    cmd = [
        sys.executable,
        "-m",
        "async_etl",
        "orchestrate",
        str(plan),
        "--json-out",
        str(report_file),
        "--log-format",
        "json",
    ]
    async with peak_connections(pg_dsn) as peak:
        proc = await anyio.run_process(cmd, check=False)
    assert proc.returncode == 1, proc.stderr.decode()[-2000:]
    report = json.loads(report_file.read_text())
    jobs = {j["job"]: j for j in report["jobs"]}
    assert {n: (j["status"], j["attempts"]) for n, j in jobs.items()} == {
        "dim_customer": ("SUCCEEDED", 1),
        "fact_orders": ("SUCCEEDED", 1),
        "fact_copy": ("SUCCEEDED", 1),
        "broken": ("FAILED", 1),
        "after_broken": ("SKIPPED", 0),
    }
    assert jobs["fact_orders"]["rows"] == 3000 and jobs["dim_customer"]["rows"] == 600
    assert jobs["fact_orders"]["started_at"] >= jobs["dim_customer"]["finished_at"]
    assert "missing_table" in jobs["broken"]["error"]
    assert report["critical_path"]["jobs"][-1] in jobs and report["bottlenecks"]
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM dw.fact_orders") == 3000
        assert await conn.fetchval("SELECT count(*) FROM dw.fact_copy") == 3000
    finally:
        await conn.close()
    assert 0 < peak.value <= 5


def test_rerunning_a_finished_plan_runs_every_job_again(tmp_path: Path, pg_dsn: str) -> None:
    """A second run of a finished plan starts fresh (nothing resumed) and converges."""
    anyio.run(seed, pg_dsn)
    plan = write_plan(tmp_path, pg_dsn, budget=8)
    for _ in range(2):
        proc = subprocess.run(
            [sys.executable, "-m", "async_etl", "orchestrate", str(plan)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 1, proc.stderr[-2000:]
        assert "SUCCEEDED fact_orders" in proc.stdout

    async def runs() -> list[tuple[str | None, int]]:
        conn = await asyncpg.connect(pg_dsn)
        try:
            rows = await conn.fetch(
                "SELECT r.resumed_from, j.attempts FROM async_etl_plan_runs r "
                "JOIN async_etl_plan_jobs j USING (plan_run_id) "
                "WHERE j.job = 'fact_orders' ORDER BY r.started_at"
            )
        finally:
            await conn.close()
        return [(r["resumed_from"], r["attempts"]) for r in rows]

    # the second plan run really ran the job again (attempt 1), it did not take it over
    assert anyio.run(runs) == [(None, 1), (None, 1)]


async def test_a_job_whose_source_is_unreachable_is_retried_as_a_network_failure(
    tmp_path: Path, pg_dsn: str
) -> None:
    """An unreachable source is a transient (network) failure: retried per the plan, then FAILED."""
    jobs_dir = tmp_path / "jobs"
    jobs_dir.mkdir()
    job = JOB.format(name="far", url=pg_dsn, query="SELECT 1 AS id").replace(
        f'[source]\nurl = "{pg_dsn}"', '[source]\nurl = "postgresql://postgres@127.0.0.1:1/none"'
    )
    (jobs_dir / "far.toml").write_text(job)
    plan_file = tmp_path / "plan.toml"
    plan_file.write_text(
        f'name = "unreachable"\nstate = "{pg_dsn}"\nlocal_max = 1\n'
        '[retry]\nmax_attempts = 3\nbase_delay = 0.01\n[[jobs]]\nfile = "jobs/far.toml"\n'
    )
    outcome = await Orchestrator(load_plan(plan_file)).run()
    far = outcome.jobs["far"]
    assert outcome.status == "FAILED"
    assert far.attempts == 3
    assert far.error_kind == ErrorKind.NETWORK
    assert far.error is not None and "cannot read the source" in far.error


@pytest.mark.parametrize(("budget", "code"), [(1, 2), (2, 0)])
async def test_a_plans_budget_below_a_jobs_minimum_exits_2_and_the_minimum_runs(
    tmp_path: Path, pg_dsn: str, budget: int, code: int
) -> None:
    """One database for source, target and state: budget 1 exits 2 in one line; 2 (not 3) runs."""
    await seed(pg_dsn)
    (tmp_path / "jobs").mkdir()
    query = "SELECT id, name, city FROM src.customers"
    (tmp_path / "jobs" / "dim.toml").write_text(JOB.format(name="dim", url=pg_dsn, query=query))
    plan = tmp_path / "plan.toml"
    plan.write_text(
        f'name = "tight"\nstate = "{pg_dsn}"\n[budgets]\n"{pg_dsn}" = {budget}\n'
        '[[jobs]]\nfile = "jobs/dim.toml"\n'
    )
    cmd = [sys.executable, "-m", "async_etl", "orchestrate", str(plan)]
    proc = await anyio.run_process(cmd, check=False)
    err = proc.stderr.decode()
    assert proc.returncode == code, err[-2000:]
    if code == 2:
        assert "this job needs at least 2 connections there at once" in err
        assert len([line for line in err.splitlines() if "budget" in line]) == 1, err
    else:
        conn = await asyncpg.connect(pg_dsn)
        try:
            assert await conn.fetchval("SELECT count(*) FROM dw.dim") == 600
        finally:
            await conn.close()
