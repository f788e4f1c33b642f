"""Loads into a fresh PostgreSQL table whose unique indexes are built after the load.

A full refresh with ``on_bad_row = "fail"`` COPYs every chunk straight into its new table,
which has no unique index yet, and builds the indexes in the swap's transaction; so does the
initial load of a merge / SCD2 job whose target does not exist yet.  These tests hold that path
to the path with the indexes in place from the start: the same rows, the same indexes, a
duplicated key refused with the old table kept, SIGKILL mid-load resumed with no half-loaded
target ever visible.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from structlog.testing import capture_logs

from async_etl.core import scd_sql_pg as pg
from async_etl.core.chunks import Chunk
from async_etl.core.modes import new_table
from async_etl.core.specs import ScdColumns
from async_etl.errors import ErrorKind
from async_etl.jobs.api import JobOptions
from async_etl.jobs.runner import run_job
from async_etl.sources.postgres import PgSource
from tests.integration.jobs_helpers import (
    COLUMNS,
    GATE_LOCK,
    at,
    closed_gate,
    cols_of,
    fetchval,
    history,
    job_toml,
    kill_at_gate,
    load_source,
    norm,
    reference,
    run_cli,
    spec_of,
    start_cli,
    table_rows,
    wait_gone,
    wait_held,
    write,
)


def refresh_toml(name: str, dsn: str, table: str, kind: int, on_bad_row: str) -> str:
    """A full refresh job file of SCD ``kind`` shape with ``on_bad_row``."""
    extra = f'mode = "full_refresh"\non_bad_row = "{on_bad_row}"'
    return job_toml(name, dsn, table, kind=kind, extra=extra, chunk_size=70, workers=2)


async def make_target(dsn: str, table: str, cols: ScdColumns, *more: str) -> None:
    """Create ``table`` from the engine's target DDL (``COLUMNS``, ``cols``), then run ``more``."""
    conn = await asyncpg.connect(dsn)
    try:
        for text in [st.text for st in pg.target_ddl(table, COLUMNS, cols)] + list(more):
            await conn.execute(text)
    finally:
        await conn.close()


async def indexes(dsn: str, table: str) -> list[str]:
    """The index definitions of ``schema.table``, sorted."""
    schema, _, name = table.partition(".")
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = $2",
            schema,
            name,
        )
    finally:
        await conn.close()
    return sorted(str(r[0]).replace(f" {table} ", " T ").replace(name, "T") for r in rows)


@pytest.mark.parametrize("kind", [2, 1])
async def test_indexes_after_load_equal_indexes_during_load(pg_dsn: str, kind: int) -> None:
    """Row for row and index for index, the deferred-index path equals the indexed one."""
    old, new = history(seed=31, n_keys=1200, runs=2)
    cols = cols_of(kind)
    got: dict[str, list[tuple[Any, ...]]] = {}
    for mode in ("fail", "reject"):
        table = f"dw.fb_{mode}"
        spec = spec_of(refresh_toml(f"fb_{mode}_{kind}", pg_dsn, table, kind, mode))
        for day, rows in enumerate((old, new)):
            await load_source(pg_dsn, rows)
            result = await run_job(spec, options=JobOptions(as_of=at(day)))
            assert result.status == "SUCCEEDED", result.error
            assert result.inserted == len(rows)
        got[mode] = norm(await table_rows(pg_dsn, table), cols)
        assert await fetchval(pg_dsn, "SELECT to_regclass($1)", new_table(table)) is None
    assert got["fail"] == got["reject"]
    assert len(got["fail"]) == len(new)
    assert await indexes(pg_dsn, "dw.fb_fail") == await indexes(pg_dsn, "dw.fb_reject")
    assert len(await indexes(pg_dsn, "dw.fb_fail")) == (2 if kind == 2 else 1)


async def test_key_loaded_twice_fails_the_swap_and_keeps_the_old_table(pg_dsn: str) -> None:
    """A duplicated key fails the index build in one line naming it; the old table is kept."""
    old, new = history(seed=32, n_keys=600, runs=2)
    spec = spec_of(refresh_toml("fbd", pg_dsn, "dw.fbd", 2, "fail"))
    await load_source(pg_dsn, old)
    assert (await run_job(spec, options=JobOptions(as_of=at(0)))).status == "SUCCEEDED"
    before = await table_rows(pg_dsn, "dw.fbd")
    twice = dict(new[len(new) // 2])
    await load_source(pg_dsn, [*new, {**twice, "name": "other"}])
    result = await run_job(spec, options=JobOptions(as_of=at(1)))
    assert result.status == "FAILED"
    assert result.error_kind is ErrorKind.DATA
    assert result.error is not None and "\n" not in result.error
    assert f"business key (a={twice['a']!r}, b={twice['b']!r}) appears 2 times" in result.error
    assert "nothing was swapped in" in result.error
    assert norm(await table_rows(pg_dsn, "dw.fbd"), cols_of(2)) == norm(before, cols_of(2))
    assert len(await indexes(pg_dsn, "dw.fbd")) == 2
    await load_source(pg_dsn, new)  # the source fixed, a fresh run swaps the new rows in
    again = await run_job(spec, options=JobOptions(as_of=at(1), fresh=True))
    assert again.status == "SUCCEEDED", again.error
    assert len(await table_rows(pg_dsn, "dw.fbd")) == len(new)


@pytest.mark.parametrize("kind", [2, 1])
async def test_initial_load_into_an_absent_target_equals_the_indexed_path(
    pg_dsn: str, kind: int
) -> None:
    """A merge / SCD2 job whose target is absent builds it; rows and indexes as if it existed."""
    states = history(seed=33, n_keys=1500, runs=2)
    cols = cols_of(kind)
    # the indexed path: the same job into a target created (empty) beforehand
    await make_target(pg_dsn, "dw.ib_made", cols)
    specs = {t: spec_of(job_toml(f"ib_{t}_{kind}", pg_dsn, f"dw.ib_{t}", kind=kind,
                                 chunk_size=80)) for t in ("new", "made")}  # fmt: skip
    for day, rows in enumerate(states):
        await load_source(pg_dsn, rows)
        for t, spec in specs.items():
            with capture_logs() as logs:
                result = await run_job(spec, options=JobOptions(as_of=at(day)))
            assert result.status == "SUCCEEDED", result.error
            built = any(e["event"] == "initial_load_into_new_table" for e in logs)
            assert built == (t == "new" and day == 0)
        new = norm(await table_rows(pg_dsn, "dw.ib_new"), cols)
        made = norm(await table_rows(pg_dsn, "dw.ib_made"), cols)
        assert new == made == norm(reference(states[: day + 1], cols), cols)
        assert await fetchval(pg_dsn, "SELECT to_regclass($1)", new_table("dw.ib_new")) is None
    assert await indexes(pg_dsn, "dw.ib_new") == await indexes(pg_dsn, "dw.ib_made")


async def test_initial_build_sigkill_shows_no_target_and_resumes(
    pg_dsn: str, tmp_path: Path
) -> None:
    """SIGKILL mid initial build: no half-loaded target is visible; the re-run resumes it."""
    rows = history(seed=34, n_keys=1500, runs=1)[0]
    cols = cols_of(2)
    path = write(tmp_path, "ibk.toml", job_toml("ibk", pg_dsn, "dw.ibk", chunk_size=10,
                                                workers=1, parallel=False))  # fmt: skip
    await load_source(pg_dsn, rows)

    async def no_target() -> None:
        assert await fetchval(pg_dsn, "SELECT to_regclass('dw.ibk')") is None  # readers: no table

    await kill_at_gate(pg_dsn, "ibk", 5, str(path), "--as-of", at(0).isoformat(),
                       "--log-format", "json", held=no_target)  # fmt: skip
    assert await fetchval(pg_dsn, "SELECT to_regclass('dw.ibk')") is None
    assert await fetchval(pg_dsn, "SELECT to_regclass($1)", new_table("dw.ibk")) is not None
    code, out, err = await run_cli("run", str(path), "--log-format", "json")
    assert code == 0, err
    assert "(resumed)" in out
    assert norm(await table_rows(pg_dsn, "dw.ibk"), cols) == norm(reference([rows], cols), cols)
    assert len(await indexes(pg_dsn, "dw.ibk")) == 2


async def column_defaults(dsn: str, table: str) -> dict[str, str | None]:
    """Column name -> its default expression (None: no default) of ``table``."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT a.attname, pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a "
            "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            "WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped",
            table,
        )
    finally:
        await conn.close()
    return {str(r[0]): r[1] for r in rows}


async def test_a_new_type2_table_fills_the_initial_version_from_its_defaults(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Into an absent SCD2 target the source sends no bookkeeping columns; no default is left."""
    rows = history(seed=35, n_keys=900, runs=1)[0]
    cols = cols_of(2)
    tails: list[tuple[str, ...]] = []
    extract = PgSource.extract

    def spy(self: PgSource, chunk: Chunk, tail: Sequence[str] = (), select: str = "*") -> Any:
        tails.append(tuple(tail))
        return extract(self, chunk, tail, select)

    monkeypatch.setattr(PgSource, "extract", spy)
    # what the target's own DDL gives: the defaults the built table must end with
    await make_target(pg_dsn, "dw.ibd_made", cols)
    await load_source(pg_dsn, rows)
    spec = spec_of(job_toml("ibd", pg_dsn, "dw.ibd", chunk_size=100))
    result = await run_job(spec, options=JobOptions(as_of=at(0)))
    assert result.status == "SUCCEEDED", result.error
    assert len(tails) > 1 and set(tails) == {()}
    assert norm(await table_rows(pg_dsn, "dw.ibd"), cols) == norm(reference([rows], cols), cols)
    made = await column_defaults(pg_dsn, "dw.ibd_made")
    assert await column_defaults(pg_dsn, "dw.ibd") == made
    assert made[cols.valid_from] is None and made[cols.is_current] == "true"
    tails.clear()  # a full refresh of the existing target keeps its definition: tail sent
    again = spec_of(refresh_toml("ibd_fr", pg_dsn, "dw.ibd", 2, "fail"))
    result = await run_job(again, options=JobOptions(as_of=at(1)))
    assert result.status == "SUCCEEDED", result.error
    assert tails and set(tails) == {pg.initial_version_tail(cols, at(1))}
    assert await column_defaults(pg_dsn, "dw.ibd") == made
    assert {str(r[cols.valid_from]) for r in await table_rows(pg_dsn, "dw.ibd")} == {str(at(1))}


NOTE_BUILDS = """
CREATE TABLE public.builds (object text, workers text, memory text);
CREATE FUNCTION public.note_build() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.builds SELECT object_identity,
        current_setting('max_parallel_maintenance_workers'), current_setting('maintenance_work_mem')
    FROM pg_event_trigger_ddl_commands();
END $$;
CREATE EVENT TRIGGER note_build ON ddl_command_end WHEN TAG IN ('CREATE INDEX')
    EXECUTE FUNCTION public.note_build();
"""


@pytest.mark.parametrize("kind", [2, 1])
async def test_index_builds_side_by_side_get_no_parallel_workers(pg_dsn: str, kind: int) -> None:
    """The two SCD2 builds run with no parallel workers each; a lone type-1 build may have some."""
    conn = await asyncpg.connect(pg_dsn)
    try:  # every CREATE INDEX notes the settings it ran under, in its own transaction
        await conn.execute(NOTE_BUILDS)
        default = await conn.fetchval("SHOW max_parallel_maintenance_workers")
    finally:
        await conn.close()
    await load_source(pg_dsn, history(seed=36, n_keys=600, runs=1)[0])
    spec = spec_of(job_toml(f"ibw{kind}", pg_dsn, f"dw.ibw{kind}", kind=kind))
    result = await run_job(spec, options=JobOptions(as_of=at(0)))
    assert result.status == "SUCCEEDED", result.error
    conn = await asyncpg.connect(pg_dsn)
    try:
        rows = await conn.fetch(
            "SELECT workers, memory FROM public.builds WHERE object LIKE $1", f"dw.ibw{kind}%"
        )
    finally:
        await conn.close()
    expected = [("0", "128MB")] * 2 if kind == 2 else [(default, "256MB")]
    assert [tuple(r) for r in rows] == expected


async def test_resumed_refresh_drops_its_as_of_default_when_the_target_appeared(
    pg_dsn: str, tmp_path: Path
) -> None:
    """A target created while a refresh was stopped: the swapped-in table has no as-of default."""
    rows = history(seed=37, n_keys=1500, runs=1)[0]
    cols = cols_of(2)
    # what the target's own DDL gives: the defaults the swapped-in table must end with
    await make_target(pg_dsn, "dw.ibr_made", cols)
    made = await column_defaults(pg_dsn, "dw.ibr_made")
    extra = 'mode = "full_refresh"\non_bad_row = "fail"'
    text = job_toml("ibr", pg_dsn, "dw.ibr", chunk_size=10, workers=1, parallel=False, extra=extra)
    path = write(tmp_path, "ibr.toml", text)
    await load_source(pg_dsn, rows)
    await kill_at_gate(pg_dsn, "ibr", 5, str(path), "--as-of", at(0).isoformat())
    assert (await column_defaults(pg_dsn, new_table("dw.ibr")))[cols.valid_from] is not None
    # the target appears while the run is stopped
    await make_target(pg_dsn, "dw.ibr", cols)
    code, out, err = await run_cli("run", str(path), "--log-format", "json")
    assert code == 0, err
    assert "(resumed)" in out
    assert norm(await table_rows(pg_dsn, "dw.ibr"), cols) == norm(reference([rows], cols), cols)
    assert await column_defaults(pg_dsn, "dw.ibr") == made
    assert await indexes(pg_dsn, "dw.ibr") == await indexes(pg_dsn, "dw.ibr_made")


async def test_resumed_refresh_keeps_the_copied_definition_when_the_target_was_dropped(
    pg_dsn: str, tmp_path: Path
) -> None:
    """A target dropped while a refresh made LIKE it was stopped: its defaults are kept as made."""
    rows = history(seed=38, n_keys=1500, runs=1)[0]
    cols = cols_of(2)
    await make_target(  # the user's own definition: defaults the engine's DDL does not give
        pg_dsn, "dw.ibu", cols, f"ALTER TABLE dw.ibu ALTER COLUMN {cols.valid_to} SET DEFAULT "
        f"'infinity', ALTER COLUMN {cols.is_current} DROP DEFAULT"
    )  # fmt: skip
    made = await column_defaults(pg_dsn, "dw.ibu")
    assert made[cols.valid_to] is not None and made[cols.is_current] is None
    extra = 'mode = "full_refresh"\non_bad_row = "fail"'
    text = job_toml("ibu", pg_dsn, "dw.ibu", chunk_size=10, workers=1, parallel=False, extra=extra)
    path = write(tmp_path, "ibu.toml", text)
    await load_source(pg_dsn, rows)
    await kill_at_gate(pg_dsn, "ibu", 5, str(path), "--as-of", at(0).isoformat())
    assert await column_defaults(pg_dsn, new_table("dw.ibu")) == made
    conn = await asyncpg.connect(pg_dsn)
    try:  # the target is dropped while the run is stopped
        await conn.execute("DROP TABLE dw.ibu")
    finally:
        await conn.close()
    code, out, err = await run_cli("run", str(path), "--log-format", "json")
    assert code == 0, err
    assert "(resumed)" in out
    assert norm(await table_rows(pg_dsn, "dw.ibu"), cols) == norm(reference([rows], cols), cols)
    assert await column_defaults(pg_dsn, "dw.ibu") == made


def defaults_gate(job: str) -> str:
    """An event trigger holding ``job``'s ``ALTER TABLE ... SET DEFAULT`` at a closed gate.

    It fires before the statement runs, inside its transaction: the new table's CREATE has
    committed, its defaults are not set.
    """
    return f"""
CREATE FUNCTION public.aetl_defaults_gate() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('application_name') LIKE 'async-etl:{job}:%'
            AND current_query() ILIKE '%SET DEFAULT%' THEN
        PERFORM pg_advisory_lock_shared({GATE_LOCK});
        PERFORM pg_advisory_unlock_shared({GATE_LOCK});
    END IF;
END $$;
CREATE EVENT TRIGGER aetl_defaults_gate ON ddl_command_start WHEN TAG IN ('ALTER TABLE')
    EXECUTE FUNCTION public.aetl_defaults_gate();
"""


@pytest.mark.parametrize("refresh", [False, True])
async def test_killed_between_the_new_tables_create_and_its_defaults_the_rerun_loads_it_right(
    pg_dsn: str, tmp_path: Path, refresh: bool
) -> None:
    """SIGKILL after the new SCD2 table's CREATE, before its defaults: the re-run is exact."""
    rows = history(seed=39, n_keys=600, runs=1)[0]
    cols = cols_of(2)
    await make_target(pg_dsn, "dw.ikd_made", cols)  # the defaults the built table must end with
    made = await column_defaults(pg_dsn, "dw.ikd_made")
    extra = 'mode = "full_refresh"\non_bad_row = "fail"' if refresh else ""
    text = job_toml("ikd", pg_dsn, "dw.ikd", chunk_size=100, workers=2, extra=extra)
    path = write(tmp_path, "ikd.toml", text)
    await load_source(pg_dsn, rows)
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(defaults_gate("ikd"))
        async with closed_gate(pg_dsn):
            proc = start_cli("run", str(path), "--as-of", at(0).isoformat())
            try:
                await wait_held(pg_dsn, "ikd")
                held = await column_defaults(pg_dsn, new_table("dw.ikd"))  # in the window
                assert held[cols.valid_from] is None and held[cols.is_current] == "true"
            finally:
                proc.send_signal(signal.SIGKILL)
                await asyncio.to_thread(proc.wait)
            await conn.execute(  # the held ALTER must not commit once the gate opens
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name LIKE 'async-etl:ikd:%'"
            )
        await wait_gone(pg_dsn, "ikd")
        await conn.execute("DROP EVENT TRIGGER aetl_defaults_gate")
        held = await column_defaults(pg_dsn, new_table("dw.ikd"))
        assert held[cols.valid_from] is None and await conn.fetchval(
            "SELECT to_regclass('dw.ikd')"
        ) is None  # fmt: skip
    finally:
        await conn.close()
    # the run is recorded only once its target is prepared: the re-run starts afresh, its new
    # table dropped and made again, with its defaults
    code, out, err = await run_cli("run", str(path), "--as-of", at(0).isoformat())
    assert code == 0, err
    assert "SUCCEEDED" in out
    assert norm(await table_rows(pg_dsn, "dw.ikd"), cols) == norm(reference([rows], cols), cols)
    assert {str(r[cols.valid_from]) for r in await table_rows(pg_dsn, "dw.ikd")} == {str(at(0))}
    assert await column_defaults(pg_dsn, "dw.ikd") == made
    assert await indexes(pg_dsn, "dw.ikd") == await indexes(pg_dsn, "dw.ikd_made")
    assert await fetchval(pg_dsn, "SELECT to_regclass($1)", new_table("dw.ikd")) is None
