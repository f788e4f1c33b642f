"""Text chunk keys under ICU and libc collations: every row read once, re-runs write nothing."""

from __future__ import annotations

import random
from collections.abc import Sequence
from contextlib import AsyncExitStack

import asyncpg
import pytest

from async_etl.core.scd import Row, history_problems
from async_etl.jobs.api import JobOptions, JobResult
from async_etl.jobs.runner import run_job
from async_etl.jobs.spec import JobSpec
from async_etl.testing.crate import CrateStandIn, StandInConfig
from tests.databases import fresh_database
from tests.integration.jobs_helpers import at, fetchval, norm, reference, spec_of, table_rows
from tests.integration.test_jobs_crate import crate_rows

COLLATIONS = ["en-x-icu", "und-x-icu", "sv-x-icu", "C", "default"]
WORDS = ["apple", "Apple", "Äpfel", "äpfel", "zebra", "Zebra", "ßeta", "ssa", "éclair", "Eclair",
         "öl", "Öl", "ol", "Ol", "ø", "Ø", "z", "Z", "å", "Å"]  # fmt: skip


async def _has_collation(dsn: str, name: str) -> bool:
    if name == "default":
        return True
    found = await fetchval(dsn, "SELECT count(*) FROM pg_collation WHERE collname = $1", name)
    return int(found) > 0


async def _need(dsn: str, name: str) -> None:
    """Skip the test when this server lacks the collation (e.g. an embedded server, no ICU)."""
    if not await _has_collation(dsn, name):
        pytest.skip(f'collation "{name}" is missing on this server')


def _collate(name: str) -> str:
    return "" if name == "default" else f' COLLATE "{name}"'


async def load(dsn: str, collation: str, rows: Sequence[Row], *, composite: bool) -> None:
    """Replace ``src.s`` with ``rows``: ``k`` text in ``collation`` (+ ``n`` int), ``v`` int."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE SCHEMA IF NOT EXISTS src")
        await conn.execute("DROP TABLE IF EXISTS src.s")
        key = "PRIMARY KEY (k, n)" if composite else "PRIMARY KEY (k)"
        extra = "n int NOT NULL, " if composite else ""
        await conn.execute(f"CREATE TABLE src.s (k text{_collate(collation)} NOT NULL, {extra}"
                           f"v int, {key})")  # fmt: skip
        names = ["k", "n", "v"] if composite else ["k", "v"]
        records = [tuple(r[c] for c in names) for r in rows]
        await conn.copy_records_to_table("s", schema_name="src", records=records, columns=names)
        await conn.execute("ANALYZE src.s")
    finally:
        await conn.close()


def case_rows() -> list[Row]:
    """The issue's source: m00001..m01000 and M00001..M01000 (2,000 rows)."""
    return [{"k": f"{c}{i:05d}", "v": i} for i in range(1, 1001) for c in ("m", "M")]


def composite_rows(seed: int, n: int = 100) -> list[Row]:
    """Mixed-case, non-ASCII words x ints as a (text, int) key: 20 x ``n`` rows."""
    rnd = random.Random(seed)
    return [{"k": w, "n": i, "v": rnd.randint(0, 3)} for w in WORDS for i in range(n)]


def job(name: str, source: str, target: str, *, composite: bool, parallel: bool,
        table: str = "dw.dim", state: str | None = None,
        relation: str = 'table = "src.s"') -> JobSpec:  # fmt: skip
    """Type 2 with deletes expired, 200-row chunks, parallel from 0 rows (or sequential)."""
    key = '["k", "n"]' if composite else '["k"]'
    state_part = f'\n[state]\nurl = "{state}"\n' if state else ""
    return spec_of(f"""
name = "{name}"
[source]
url = "{source}"
{relation}
key = {key}
[target]
url = "{target}"
table = "{table}"
[scd]
type = 2
deletes = "expire"
[parallel]
enabled = {"true" if parallel else "false"}
max_workers = 4
chunk_size = 200
min_rows_for_parallel = 0
{state_part}""")


def written(result: JobResult) -> tuple[int, int, int, int]:
    """(inserted, updated, expired, deleted) of a run."""
    return (result.inserted, result.updated, result.expired, result.deleted)


async def check_run_twice(spec: JobSpec, rows: int) -> None:
    """A first run reads every row once and inserts it; an unchanged re-run writes nothing."""
    first = await run_job(spec, options=JobOptions(as_of=at(0)))
    assert first.status == "SUCCEEDED", first.error
    assert first.chunks_total > 1
    assert first.rows_read == rows
    assert written(first) == (rows, 0, 0, 0)
    again = await run_job(spec, options=JobOptions(as_of=at(1)))
    assert again.status == "SUCCEEDED", again.error
    assert again.rows_read == rows
    assert written(again) == (0, 0, 0, 0)


@pytest.mark.parametrize("parallel", [True, False], ids=["parallel", "sequential"])
@pytest.mark.parametrize("collation", COLLATIONS)
async def test_mixed_case_text_key_read_once_and_rerun_writes_nothing(
    pg_dsn: str, collation: str, parallel: bool
) -> None:
    """The issue's m/M keys: 2,000 rows read for 2,000, the unchanged re-run writes nothing."""
    await _need(pg_dsn, collation)
    await load(pg_dsn, collation, case_rows(), composite=False)
    spec = job("case", pg_dsn, pg_dsn, composite=False, parallel=parallel)
    await check_run_twice(spec, 2000)
    current = await fetchval(pg_dsn, "SELECT count(DISTINCT k) FROM dw.dim WHERE is_current")
    assert current == 2000


@pytest.mark.parametrize("parallel", [True, False], ids=["parallel", "sequential"])
@pytest.mark.parametrize("collation", ["sv-x-icu", "de-x-icu", "C"])
async def test_composite_non_ascii_keys_match_the_model_over_changes(
    pg_dsn: str, collation: str, parallel: bool
) -> None:
    """(text, int) keys with umlauts, ß and case pairs: after changes, target == pure model."""
    await _need(pg_dsn, collation)
    first = composite_rows(seed=1)
    rnd = random.Random(7)
    second = [{**r, "v": r["v"] + 1} if rnd.random() < 0.1 else r
              for r in first if rnd.random() >= 0.1]  # fmt: skip
    second += [{"k": w, "n": 500 + i, "v": 0} for i, w in enumerate(WORDS)]
    spec = job("comp", pg_dsn, pg_dsn, composite=True, parallel=parallel)
    cols = spec.scd.resolve(["k", "n", "v"])
    for day, rows in enumerate([first, second, second]):
        await load(pg_dsn, collation, rows, composite=True)
        result = await run_job(spec, options=JobOptions(as_of=at(day)))
        assert result.status == "SUCCEEDED", result.error
        assert result.rows_read == len(rows)
        if day == 2:
            assert written(result) == (0, 0, 0, 0)
    got = await table_rows(pg_dsn, "dw.dim")
    assert norm(got, cols) == norm(reference([first, second, second], cols), cols)
    assert history_problems(got, cols) == []


ICU_DB = "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en' LOCALE 'C.UTF-8'"


@pytest.mark.parametrize(
    ("collation", "source_db", "target_db"),
    [("en-x-icu", "", ""), ("default", "", ""), ("default", "", ICU_DB), ("default", ICU_DB, "")],
    ids=["icu-column", "default", "into-icu-database", "from-icu-database"],
)
async def test_into_another_database_keeps_the_source_order(
    pg_dsn: str, collation: str, source_db: str, target_db: str
) -> None:
    """Source and target in different databases (defaults may differ): same ranges, idle re-run."""
    await _need(pg_dsn, collation)
    async with AsyncExitStack() as stack:
        try:
            source = await stack.enter_async_context(fresh_database(pg_dsn, source_db))
            target = await stack.enter_async_context(fresh_database(pg_dsn, target_db))
        except asyncpg.PostgresError as exc:
            pytest.skip(f"this server cannot create an ICU database: {exc}")
        await load(source, collation, case_rows(), composite=False)
        spec = job("xdb", source, target, composite=False, parallel=True, state=pg_dsn)
        await check_run_twice(spec, 2000)
        got = await fetchval(target, "SELECT count(DISTINCT k) FROM dw.dim WHERE is_current")
    assert got == 2000


async def test_crate_target_from_an_icu_source(pg_dsn: str) -> None:
    """CrateDB compares bytes: an ICU-keyed source still gives 2,000 reads and an idle re-run."""
    await _need(pg_dsn, "en-x-icu")
    await load(pg_dsn, "en-x-icu", case_rows(), composite=False)
    async with CrateStandIn(StandInConfig(seed=3)) as crate:
        spec = job("crate", pg_dsn, crate.url, composite=False, parallel=True, state=pg_dsn)
        await check_run_twice(spec, 2000)
        rows = await crate_rows(crate.url, "dw.dim")
    assert sorted(r["k"] for r in rows if r["is_current"]) == sorted(r["k"] for r in case_rows())


async def test_crate_target_composite_icu_keys(pg_dsn: str) -> None:
    """A (text, int) ICU key into CrateDB: changes land as the pure model says."""
    await _need(pg_dsn, "sv-x-icu")
    first = composite_rows(seed=2)
    second = [{**r, "v": r["v"] + 1} if r["n"] % 7 == 0 else r for r in first if r["n"] % 5]
    async with CrateStandIn(StandInConfig(seed=4)) as crate:
        spec = job("cratec", pg_dsn, crate.url, composite=True, parallel=True, state=pg_dsn)
        cols = spec.scd.resolve(["k", "n", "v"])
        for day, rows in enumerate([first, second, second]):
            await load(pg_dsn, "sv-x-icu", rows, composite=True)
            result = await run_job(spec, options=JobOptions(as_of=at(day)))
            assert result.status == "SUCCEEDED", result.error
            assert result.rows_read == len(rows)
        assert written(result) == (0, 0, 0, 0)
        got = await crate_rows(crate.url, "dw.dim")
    assert norm(got, cols) == norm(reference([first, second, second], cols), cols)


async def test_resumed_run_keeps_the_plan_collation(pg_dsn: str) -> None:
    """A run failing mid-way resumes with its stored ICU plan and lands the model; re-run idle."""
    await _need(pg_dsn, "en-x-icu")
    first = case_rows()
    second = [{**r, "v": -r["v"]} for r in first]
    spec = job("resume", pg_dsn, pg_dsn, composite=False, parallel=False)
    cols = spec.scd.resolve(["k", "v"])
    await load(pg_dsn, "en-x-icu", first, composite=False)
    assert (await run_job(spec, options=JobOptions(as_of=at(0)))).status == "SUCCEEDED"
    await load(pg_dsn, "en-x-icu", second, composite=False)
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("CREATE TABLE public.trap (armed bool)")
        await conn.execute("INSERT INTO public.trap VALUES (true)")
        await conn.execute(
            "CREATE FUNCTION public.spring() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.k = 'm00700' AND EXISTS (SELECT 1 FROM public.trap WHERE armed) THEN "
            "RAISE EXCEPTION 'trap' USING ERRCODE = '22023'; END IF; RETURN NEW; END $$"
        )
        await conn.execute(
            "CREATE TRIGGER spring BEFORE INSERT ON dw.dim FOR EACH ROW "
            "EXECUTE FUNCTION public.spring()"
        )
        failed = await run_job(spec, options=JobOptions(as_of=at(1)))
        assert failed.status == "FAILED"
        assert 0 < failed.chunks_done < failed.chunks_total
        await conn.execute("UPDATE public.trap SET armed = false")
    finally:
        await conn.close()
    resumed = await run_job(spec)
    assert resumed.status == "SUCCEEDED", resumed.error
    assert resumed.resumed and resumed.run_id == failed.run_id
    assert resumed.rows_read == 2000
    assert (resumed.inserted, resumed.expired) == (2000, 2000)
    again = await run_job(spec, options=JobOptions(as_of=at(2)))
    assert written(again) == (0, 0, 0, 0)
    got = await table_rows(pg_dsn, "dw.dim")
    assert norm(got, cols) == norm(reference([first, second], cols), cols)
    assert history_problems(got, cols) == []


@pytest.mark.parametrize("existing", ["C", "default"])
async def test_target_created_beforehand_in_another_collation(pg_dsn: str, existing: str) -> None:
    """A target whose key is in C (or default) under an ICU source: same ranges, idle re-run."""
    await _need(pg_dsn, "en-x-icu")
    await load(pg_dsn, "en-x-icu", case_rows(), composite=False)
    await fetchval(pg_dsn, "CREATE SCHEMA dw")
    await fetchval(pg_dsn, f"CREATE TABLE dw.dim (k text{_collate(existing)} NOT NULL, v int, "
                           "valid_from timestamptz NOT NULL, valid_to timestamptz, "
                           "is_current boolean NOT NULL DEFAULT true)")  # fmt: skip
    spec = job("pre", pg_dsn, pg_dsn, composite=False, parallel=True)
    await check_run_twice(spec, 2000)
    current = await fetchval(pg_dsn, "SELECT count(DISTINCT k) FROM dw.dim WHERE is_current")
    assert current == 2000


async def test_query_source_keeps_the_key_collation(pg_dsn: str) -> None:
    """A ``query`` source (a CTE): its key column's ICU collation is found and used too."""
    await _need(pg_dsn, "en-x-icu")
    await load(pg_dsn, "en-x-icu", case_rows(), composite=False)
    query = 'query = "WITH x AS (SELECT k, v FROM src.s) SELECT k, v FROM x"'
    spec = job("query", pg_dsn, pg_dsn, composite=False, parallel=True, relation=query)
    await check_run_twice(spec, 2000)
