"""Full refresh and append modes on PostgreSQL and the CrateDB stand-in, against the model."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg

from async_etl.core.modes import new_table
from async_etl.core.scd import Row
from async_etl.drivers.cratedb import CrateDBClient
from async_etl.jobs.api import JobOptions, JobResult
from async_etl.jobs.runner import run_job
from async_etl.jobs.spec import JobSpec
from async_etl.testing.crate import CrateStandIn
from tests.integration.jobs_helpers import (
    NAMES,
    at,
    fetchval,
    history,
    job_toml,
    kill_at_gate,
    load_source,
    run_cli,
    spec_of,
    table_rows,
    write,
)


def refresh_toml(name: str, dsn: str, table: str, **kw: Any) -> str:
    """A type-1 job file in full refresh mode."""
    return job_toml(name, dsn, table, kind=1, extra='mode = "full_refresh"', **kw)


def append_toml(name: str, dsn: str, table: str, **kw: Any) -> str:
    """A job file in append mode (no [scd] section)."""
    text = job_toml(name, dsn, table, kind=1, extra='mode = "append"', **kw)
    return text.replace('[scd]\ntype = 1\ndeletes = "delete"\n', "")


async def load_and_run(dsn: str, spec: JobSpec, rows: list[Row], day: int) -> JobResult:
    """Make ``rows`` the source and run ``spec`` as of ``at(day)``; it must succeed."""
    await load_source(dsn, rows)
    result = await run_job(spec, options=JobOptions(as_of=at(day)))
    assert result.status == "SUCCEEDED", result.error
    return result


def data(rows: list[Row] | list[dict[str, Any]]) -> Counter[tuple[Any, ...]]:
    """The rows as a multiset of source-column tuples."""
    return Counter(tuple(r[c] for c in NAMES) for r in rows)


async def test_full_refresh_replaces_target_with_source(pg_dsn: str) -> None:
    """Two full refreshes: the target equals each source state; no new table is left."""
    states = history(seed=5, n_keys=600, runs=2)
    spec = spec_of(refresh_toml("fr", pg_dsn, "dw.fr", chunk_size=60))
    for i, rows in enumerate(states):
        await load_and_run(pg_dsn, spec, rows, i)
        assert data(await table_rows(pg_dsn, "dw.fr")) == data(rows)
        assert await fetchval(pg_dsn, "SELECT to_regclass($1)", new_table("dw.fr")) is None
    indexes = await fetchval(pg_dsn, "SELECT count(*) FROM pg_indexes WHERE tablename = 'fr'")
    assert indexes == 1  # the unique key index moved with the table and was not lost


async def test_full_refresh_reader_sees_old_or_new_never_a_mix(pg_dsn: str) -> None:
    """A reader polling during a full refresh sees exactly the old or the new rows."""
    old, new = history(seed=6, n_keys=900, runs=2)
    spec = spec_of(refresh_toml("frr", pg_dsn, "dw.frr", chunk_size=30, workers=2))
    await load_source(pg_dsn, old)
    assert (await run_job(spec, options=JobOptions(as_of=at(0)))).status == "SUCCEEDED"
    await load_source(pg_dsn, new)
    seen: list[Counter[tuple[Any, ...]]] = []
    done = asyncio.Event()

    async def reader() -> None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            while not done.is_set():
                seen.append(data([dict(r) for r in await conn.fetch("SELECT * FROM dw.frr")]))
        finally:
            await conn.close()

    task = asyncio.create_task(reader())
    result = await run_job(spec, options=JobOptions(as_of=at(1)))
    done.set()
    await task
    assert result.status == "SUCCEEDED", result.error
    assert len(seen) >= 3
    assert all(s in (data(old), data(new)) for s in seen)
    assert seen[0] == data(old) and data(await table_rows(pg_dsn, "dw.frr")) == data(new)


async def test_full_refresh_sigkill_keeps_old_table_and_rerun_swaps(
    pg_dsn: str, tmp_path: Path
) -> None:
    """SIGKILL mid-load: the old table is intact; the next run resumes and swaps the new in."""
    old, new = history(seed=7, n_keys=1500, runs=2)
    path = write(tmp_path, "frk.toml", refresh_toml("frk", pg_dsn, "dw.frk", chunk_size=10,
                                                    workers=1))  # fmt: skip
    await load_source(pg_dsn, old)
    code, _, err = await run_cli("run", str(path), "--log-format", "json")
    assert code == 0, err
    await load_source(pg_dsn, new)
    await kill_at_gate(pg_dsn, "frk", 5, str(path), "--fresh", "--log-format", "json")
    assert data(await table_rows(pg_dsn, "dw.frk")) == data(old)
    assert await fetchval(pg_dsn, "SELECT to_regclass($1)", new_table("dw.frk")) is not None
    code, out, err = await run_cli("run", str(path), "--log-format", "json")
    assert code == 0, err
    assert "(resumed)" in out
    assert data(await table_rows(pg_dsn, "dw.frk")) == data(new)


async def test_run_full_refresh_flag_rebuilds_a_merge_job(pg_dsn: str, tmp_path: Path) -> None:
    """`run --full-refresh` on a type-1 merge job drops keys that a merge would keep."""
    old, new = history(seed=8, n_keys=300, runs=2)
    text = job_toml("mf", pg_dsn, "dw.mf", kind=1).replace('deletes = "delete"', "")
    path = write(tmp_path, "mf.toml", text)
    await load_source(pg_dsn, old)
    assert (await run_cli("run", str(path)))[0] == 0
    await load_source(pg_dsn, new)
    code, _, err = await run_cli("run", str(path), "--full-refresh")
    assert code == 0, err
    assert data(await table_rows(pg_dsn, "dw.mf")) == data(new)


async def test_full_refresh_after_a_failed_merge_is_refused_not_a_missing_table(
    pg_dsn: str, tmp_path: Path
) -> None:
    """A failed merge run, then `--full-refresh`: exit 2 naming why (not '_etl_new missing')."""
    rows = history(seed=9, n_keys=100, runs=1)[0]
    text = job_toml("mr", pg_dsn, "dw.mr", kind=1).replace('deletes = "delete"', "")
    path = write(tmp_path, "mr.toml", text)
    await load_source(pg_dsn, rows)
    assert (await run_cli("run", str(path)))[0] == 0
    await fetchval(pg_dsn, "ALTER TABLE dw.mr ADD CONSTRAINT no_x CHECK (name <> 'x')")
    await fetchval(pg_dsn, "UPDATE src.t SET name = 'x' WHERE a = (SELECT min(a) FROM src.t)")
    failed, _, err = await run_cli("run", str(path))
    assert failed == 1 and "no_x" in err, err
    code, _, err = await run_cli("run", str(path), "--full-refresh")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert "is unfinished as a merge load; this run is a full_refresh of type 1 load" in err
    assert "_etl_new" not in err
    again, out, err = await run_cli("run", str(path), "--set", "on_bad_row=reject")
    assert again == 0 and "(resumed)" in out, err


async def test_append_twice_inserts_every_row_twice(pg_dsn: str) -> None:
    """Append: two runs over two states leave exactly the rows of both."""
    states = history(seed=9, n_keys=600, runs=2)
    spec = spec_of(append_toml("ap", pg_dsn, "dw.ap", chunk_size=60))
    for i, rows in enumerate(states):
        assert (await load_and_run(pg_dsn, spec, rows, i)).inserted == len(rows)
    assert data(await table_rows(pg_dsn, "dw.ap")) == data(states[0]) + data(states[1])


async def test_append_exactly_once_under_sigkill(pg_dsn: str, tmp_path: Path) -> None:
    """SIGKILL an append mid-run; the resumed run leaves every source row exactly once."""
    (rows,) = history(seed=10, n_keys=1500, runs=1)
    path = write(tmp_path, "apk.toml", append_toml("apk", pg_dsn, "dw.apk", chunk_size=10,
                                                   workers=2))  # fmt: skip
    await load_source(pg_dsn, rows)
    await kill_at_gate(pg_dsn, "apk", 7, str(path), "--log-format", "json")
    partial = data(await table_rows(pg_dsn, "dw.apk"))
    assert 0 < sum(partial.values()) < len(rows)
    code, out, err = await run_cli("run", str(path), "--log-format", "json")
    assert code == 0, err
    assert "(resumed)" in out
    assert data(await table_rows(pg_dsn, "dw.apk")) == data(rows)


async def crate_data(url: str, table: str) -> Counter[tuple[Any, ...]]:
    """The rows of a stand-in table as a multiset of source-column tuples."""
    async with CrateDBClient(url) as client:
        await client.execute(f"REFRESH TABLE {table}")
        resp = await client.execute(f"SELECT {', '.join(NAMES)} FROM {table}")
    return Counter(tuple(r) for r in resp.rows)


async def test_full_refresh_into_crate_swaps_table(pg_dsn: str) -> None:
    """CrateDB stand-in: each full refresh leaves exactly the source rows, via SWAP TABLE."""
    states = history(seed=12, n_keys=450, runs=2)
    async with CrateStandIn() as crate:
        text = refresh_toml("frc", pg_dsn, "dw.frc", chunk_size=50)
        text = text.replace(f'url = "{pg_dsn}"\ntable', f'url = "{crate.url}"\ntable')
        spec = spec_of(text + f'\n[state]\nurl = "{pg_dsn}"\n')
        for i, rows in enumerate(states):
            await load_and_run(pg_dsn, spec, rows, i)
            assert await crate_data(crate.url, "dw.frc") == data(rows)
        assert ("dw", new_table("dw.frc").split(".")[1]) not in crate.catalog.tables


async def test_resume_into_another_target_table_is_refused(pg_dsn: str, tmp_path: Path) -> None:
    """A run killed mid-load, rerun with another [target] table: exit 2, nothing skipped."""
    rows = history(seed=12, n_keys=400, runs=1)[0]
    path = write(tmp_path, "rt.toml", job_toml("rt", pg_dsn, "dw.rt", kind=2, chunk_size=50))
    await load_source(pg_dsn, rows)
    await kill_at_gate(pg_dsn, "rt", 2, str(path), "--log-format", "json")
    code, _, err = await run_cli("run", str(path), "--set", "target.table=dw.rt_other")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert "is unfinished into target dw.rt" in err
    assert await fetchval(pg_dsn, "SELECT to_regclass('dw.rt_other')") is None
