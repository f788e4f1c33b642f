"""How chunks use their sessions (real PostgreSQL): kept connections, fresh ones on a retry, and
a commit that waits for its WAL flush only when the checkpoint is elsewhere."""

from __future__ import annotations

from typing import Any

import anyio
import asyncpg
import pytest

from async_etl.core import scd_sql_pg as pg
from async_etl.drivers import postgres_connections
from async_etl.errors import TransientLoadError
from async_etl.jobs.api import JobOptions
from async_etl.jobs.budget import LimiterBudget
from async_etl.jobs.pg_driver import PgTarget
from async_etl.jobs.runner import run_job
from async_etl.testing.databases import fresh_database
from tests.integration.jobs_helpers import (
    COLUMNS,
    at,
    cols_of,
    history,
    job_toml,
    load_source,
    norm,
    reference,
    spec_of,
    table_rows,
)


async def logged_target(dsn: str, table: str) -> None:
    """Pre-create ``table``; each INSERT statement into it logs its backend and commit mode."""
    conn = await asyncpg.connect(dsn)
    try:
        for st in pg.target_ddl(table, COLUMNS, cols_of(2)):
            await conn.execute(st.text)
        await conn.execute("CREATE TABLE public.chunk_pids (pid integer, sync text)")
        await conn.execute(
            "CREATE FUNCTION public.log_pid() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "INSERT INTO public.chunk_pids VALUES (pg_backend_pid(), "
            "current_setting('synchronous_commit')); RETURN NULL; END $$"
        )
        await conn.execute(
            f"CREATE TRIGGER log_pid AFTER INSERT ON {table} FOR EACH STATEMENT "
            "EXECUTE FUNCTION public.log_pid()"
        )
    finally:
        await conn.close()


async def test_chunks_reuse_their_workers_connections(pg_dsn: str) -> None:
    """A dozen chunks on 2 workers commit through at most 2 target backends, all correct."""
    states = history(seed=21, n_keys=600, runs=1)
    await load_source(pg_dsn, states[0])
    await logged_target(pg_dsn, "dw.dim")
    spec = spec_of(job_toml("reuse", pg_dsn, "dw.dim", workers=2, chunk_size=30))
    result = await run_job(spec, options=JobOptions(as_of=at(0)))
    assert result.status == "SUCCEEDED", result.error
    assert result.chunks_total >= 10
    conn = await asyncpg.connect(pg_dsn)
    try:
        statements, backends = await conn.fetchrow(
            "SELECT count(*), count(DISTINCT pid) FROM public.chunk_pids"
        )
    finally:
        await conn.close()
    assert statements == result.chunks_total and 1 <= backends <= 2, (statements, backends)
    got = await table_rows(pg_dsn, "dw.dim")
    assert norm(got, cols_of(2)) == norm(reference(states, cols_of(2)), cols_of(2))


async def test_kept_connections_never_starve_a_budget_below_the_chunks_in_flight(
    pg_dsn: str,
) -> None:
    """Budget 3 on one database, 4 workers: kept connections give their tokens to waiting chunks."""
    rows = history(seed=13, n_keys=300, runs=1)[0]
    await load_source(pg_dsn, rows)
    spec = spec_of(job_toml("tight", pg_dsn, "dw.tight", workers=4, chunk_size=50))
    with anyio.fail_after(60):  # it waited for ever for a token an idle connection held
        result = await run_job(
            spec, options=JobOptions(as_of=at(0)), budget=LimiterBudget(1, {pg_dsn: 3})
        )
    assert result.status == "SUCCEEDED", result.error
    assert result.chunks_total >= 4
    got = await table_rows(pg_dsn, "dw.tight")
    assert norm(got, cols_of(2)) == norm(reference([rows], cols_of(2)), cols_of(2))


async def test_a_retried_chunk_takes_no_kept_connection(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk's first attempt runs on the run's shelf; its retry after a failure does not."""
    states = history(seed=22, n_keys=300, runs=1)
    await load_source(pg_dsn, states[0])
    seen: list[tuple[int, bool]] = []  # (chunk, whether the attempt could take kept ones)
    real = PgTarget.run_chunk

    async def flaky(self: PgTarget, ctx: Any, chunk: Any, source: Any) -> Any:
        shelved = postgres_connections._SHELF.get()  # (shelf, fresh): a retry takes none
        seen.append((chunk.index, shelved is not None and not shelved[1]))
        if chunk.index == 1 and len([s for s in seen if s[0] == 1]) == 1:
            raise TransientLoadError("connection lost (injected)")
        return await real(self, ctx, chunk, source)

    monkeypatch.setattr(PgTarget, "run_chunk", flaky)
    spec = spec_of(job_toml("retry", pg_dsn, "dw.dim", workers=2, chunk_size=40))
    result = await run_job(spec, options=JobOptions(as_of=at(0)))
    assert result.status == "SUCCEEDED", result.error
    assert [s for s in seen if s[0] == 1] == [(1, True), (1, False)]
    assert all(kept for index, kept in seen if index != 1)
    got = await table_rows(pg_dsn, "dw.dim")
    assert norm(got, cols_of(2)) == norm(reference(states, cols_of(2)), cols_of(2))


@pytest.mark.parametrize("state_elsewhere", [False, True])
async def test_a_chunk_waits_for_its_flush_only_when_its_checkpoint_is_elsewhere(
    pg_dsn: str, pg_server_dsn: str, state_elsewhere: bool
) -> None:
    """Checkpoint in the chunk's transaction: synchronous_commit off; state elsewhere: on."""
    states = history(seed=23, n_keys=300, runs=1)
    await load_source(pg_dsn, states[0])
    await logged_target(pg_dsn, "dw.dim")
    async with fresh_database(pg_server_dsn) as state_dsn:
        extra = f'[state]\nurl = "{state_dsn}"' if state_elsewhere else ""
        text = job_toml("flush", pg_dsn, "dw.dim", workers=2, chunk_size=40, extra=extra)
        result = await run_job(spec_of(text), options=JobOptions(as_of=at(0)))
    assert result.status == "SUCCEEDED", result.error
    conn = await asyncpg.connect(pg_dsn)
    try:
        modes = [r[0] for r in await conn.fetch("SELECT sync FROM public.chunk_pids")]
    finally:
        await conn.close()
    assert len(modes) == result.chunks_total
    assert set(modes) == ({"on"} if state_elsewhere else {"off"})


async def test_a_runs_record_skips_the_flush_wait_and_its_final_status_does_not(
    pg_dsn: str,
) -> None:
    """The new run's record commits without the WAL flush wait; its final status waits."""
    from async_etl.jobs.state import with_store

    await with_store(pg_dsn, "flush-test", lambda store: store.ensure())
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(
            "CREATE TABLE public.run_writes (op text, status text, sync text); "
            "CREATE FUNCTION public.log_run() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "INSERT INTO public.run_writes VALUES (TG_OP, NEW.status, "
            "current_setting('synchronous_commit')); RETURN NULL; END $$; "
            "CREATE TRIGGER log_run AFTER INSERT OR UPDATE ON async_etl_runs FOR EACH ROW "
            "EXECUTE FUNCTION public.log_run()"
        )
        await load_source(pg_dsn, history(seed=24, n_keys=50, runs=1)[0])
        spec = spec_of(job_toml("runflush", pg_dsn, "dw.dim", workers=1, chunk_size=100))
        result = await run_job(spec, options=JobOptions(as_of=at(0)))
        assert result.status == "SUCCEEDED", result.error
        writes = [tuple(r) for r in await conn.fetch("SELECT * FROM public.run_writes")]
    finally:
        await conn.close()
    assert writes == [("INSERT", "RUNNING", "off"), ("UPDATE", "SUCCEEDED", "on")]
