"""A failed run is resumed only from the source it was planned over: another source table,
query, chunk key or source columns is refused in one line, before anything is written."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from async_etl.errors import ConfigError
from async_etl.jobs.api import JobOptions
from async_etl.jobs.runner import run_job
from async_etl.testing.databases import fresh_database
from tests.integration.jobs_helpers import at, fetchval, spec_of

JOB = """
name = "ri"
scd = {{ type = 1 }}
parallel = {{ enabled = true, max_workers = 2, chunk_size = 10, min_rows_for_parallel = 0 }}
[source]
url = "{dsn}"
{read}
key = {key}
[target]
url = "{dsn}"
table = "dim"
schema_evolution = "add_columns"
"""

TABLE = 'table = "src"'
KEY = '["id"]'


async def failed_run(dsn: str, read: str = TABLE) -> str:
    """Sources ``src`` and ``src2`` alike, a target refusing one row: a FAILED run's id."""
    conn = await asyncpg.connect(dsn)
    try:
        for name in ("src", "src2"):
            await conn.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, v int)")
            await conn.execute(f"INSERT INTO {name} SELECT i, i FROM generate_series(1, 60) i")
        await conn.execute("UPDATE src SET v = -1 WHERE id = 45")
        await conn.execute("CREATE TABLE dim (id int PRIMARY KEY, v int CHECK (v > 0))")
    finally:
        await conn.close()
    spec = spec_of(JOB.format(dsn=dsn, read=read, key=KEY))
    failed = await run_job(spec, options=JobOptions(as_of=at(0)))
    assert failed.status == "FAILED" and failed.error is not None and "dim_v_check" in failed.error
    await fetchval(dsn, "UPDATE src SET v = 45 WHERE id = 45")
    return failed.run_id


async def refused(dsn: str, run_id: str, read: str = TABLE, key: str = KEY) -> str:
    """The rerun's one-line refusal; the failed run is left as it was, and no other recorded."""
    spec = spec_of(JOB.format(dsn=dsn, read=read, key=key))
    with pytest.raises(ConfigError) as info:
        await run_job(spec, options=JobOptions(as_of=at(0)))
    message = str(info.value)
    assert f"job ri: run {run_id} was planned over another source (" in message
    assert "resume it with the source it had, or start over with --fresh" in message
    assert "\n" not in message
    runs = await fetchval(
        dsn, "SELECT string_agg(run_id || ' ' || status, ',') FROM async_etl_runs"
    )
    assert runs == f"{run_id} FAILED"
    return message


async def test_resume_over_another_source_table_is_refused(pg_dsn: str) -> None:
    """A FAILED run over table src, rerun over src2: refused, naming both tables."""
    run_id = await failed_run(pg_dsn)
    message = await refused(pg_dsn, run_id, read='table = "src2"')
    assert "([source] table src, now table src2)" in message


async def test_resume_over_another_source_query_is_refused(pg_dsn: str) -> None:
    """A FAILED run over one [source] query, rerun with another query: refused."""
    run_id = await failed_run(pg_dsn, read='query = "SELECT id, v FROM src"')
    message = await refused(pg_dsn, run_id, read='query = "SELECT id, v FROM src2"')
    assert "(another [source] query)" in message


async def test_resume_over_another_chunk_key_is_refused(pg_dsn: str) -> None:
    """A FAILED run chunked over key id, rerun with key (id, v): refused, naming both keys."""
    run_id = await failed_run(pg_dsn)
    message = await refused(pg_dsn, run_id, key='["id", "v"]')
    assert "([source] key id, now id, v)" in message


async def test_resume_over_changed_source_columns_is_refused(pg_dsn: str) -> None:
    """A FAILED run, then a column added to the source table: refused, naming the column."""
    run_id = await failed_run(pg_dsn)
    await fetchval(pg_dsn, "ALTER TABLE src ADD COLUMN w int")
    message = await refused(pg_dsn, run_id)
    assert "(column w was not among its columns)" in message


async def test_resume_over_the_same_source_goes_on(pg_dsn: str) -> None:
    """A FAILED run, rerun unchanged: it resumes and loads every row."""
    run_id = await failed_run(pg_dsn)
    spec = spec_of(JOB.format(dsn=pg_dsn, read=TABLE, key=KEY))
    again = await run_job(spec, options=JobOptions(as_of=at(0)))
    assert again.status == "SUCCEEDED" and again.resumed and again.run_id == run_id, again.error
    assert await fetchval(pg_dsn, "SELECT count(*) FROM dim") == 60


def _target(text: str, dsn: str, url: str, table: str) -> str:
    """The job text with [target] url and table replaced (the source left as it was)."""
    text = text.replace(f'[target]\nurl = "{dsn}"', f'[target]\nurl = "{url}"')
    return text.replace('table = "dim"', f'table = "{table}"')


def _spelt(dsn: str, spelling: str) -> tuple[str, str]:
    """The target (url, table) of ``dsn``'s dim, spelt another way."""
    parts = urlsplit(dsn)
    if spelling == "schema":
        return dsn, "public.dim"
    if spelling == "host":
        if parts.hostname != "127.0.0.1":
            pytest.skip("the server is not reached at 127.0.0.1")
        return urlunsplit(
            parts._replace(netloc=parts.netloc.replace("127.0.0.1", "localhost"))
        ), "dim"
    user = parts.username or "postgres"
    netloc = f"{user}:another-password@{parts.netloc.rpartition('@')[2]}"
    return urlunsplit(parts._replace(netloc=netloc)), "dim"


@pytest.mark.parametrize("spelling", ["schema", "host", "password"])
async def test_resume_into_the_same_target_spelt_otherwise_goes_on(
    pg_dsn: str, spelling: str
) -> None:
    """The same table as public.dim, the server as localhost, or another password: it resumes."""
    run_id = await failed_run(pg_dsn)
    url, table = _spelt(pg_dsn, spelling)
    text = _target(JOB.format(dsn=pg_dsn, read=TABLE, key=KEY), pg_dsn, url, table)
    again = await run_job(spec_of(text), options=JobOptions(as_of=at(0)))
    assert again.status == "SUCCEEDED" and again.resumed and again.run_id == run_id, again.error
    assert await fetchval(pg_dsn, "SELECT count(*) FROM dim") == 60


async def test_resume_into_the_same_table_in_another_database_is_refused(
    pg_dsn: str, pg_server_dsn: str
) -> None:
    """The same table name in another database on the same server: refused, nothing written."""
    run_id = await failed_run(pg_dsn)
    async with fresh_database(pg_server_dsn) as other:
        await fetchval(other, "CREATE TABLE dim (id int PRIMARY KEY, v int CHECK (v > 0))")
        text = _target(JOB.format(dsn=pg_dsn, read=TABLE, key=KEY), pg_dsn, other, "dim")
        text += f'[state]\nurl = "{pg_dsn}"\n'
        with pytest.raises(ConfigError) as info:
            await run_job(spec_of(text), options=JobOptions(as_of=at(0)))
        assert f"job ri: run {run_id} is unfinished into target" in str(info.value)
        assert await fetchval(other, "SELECT count(*) FROM dim") == 0


@pytest.mark.parametrize("spelling", ["schema", "host"])
async def test_resume_over_the_same_source_spelt_otherwise_goes_on(
    pg_dsn: str, spelling: str
) -> None:
    """The same source table as public.src, or its server as localhost: it resumes."""
    run_id = await failed_run(pg_dsn)
    url, table = _spelt(pg_dsn, spelling)
    text = JOB.format(dsn=pg_dsn, read=f'table = "{table.replace("dim", "src")}"', key=KEY)
    text = text.replace(f'[source]\nurl = "{pg_dsn}"', f'[source]\nurl = "{url}"')
    again = await run_job(spec_of(text), options=JobOptions(as_of=at(0)))
    assert again.status == "SUCCEEDED" and again.resumed and again.run_id == run_id, again.error
    assert await fetchval(pg_dsn, "SELECT count(*) FROM dim") == 60
