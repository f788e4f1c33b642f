"""CrateDB per-item refusals without error detail are resolved into rejects with their reason."""

from __future__ import annotations

from typing import Any

import anyio
import asyncpg
import pytest

from async_etl.core.specs import ScdSpec
from async_etl.drivers.cratedb import CrateDBClient
from async_etl.errors import ConfigError, TransientLoadError
from async_etl.jobs.api import JobOptions
from async_etl.jobs.budget import LimiterBudget
from async_etl.jobs.context import BudgetHolder, ConnectionMeter, JobContext
from async_etl.jobs.crate_driver import CrateTarget
from async_etl.jobs.runner import run_job
from async_etl.testing.crate import CrateStandIn, StandInConfig
from tests.integration.jobs_helpers import at, crate_rows, fetchval, spec_of, table_rows

ROWS = 2000


async def _source(dsn: str, bad: str = "NULL") -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TABLE s (id int PRIMARY KEY, note text)")
        await conn.execute(
            f"INSERT INTO s SELECT i, CASE WHEN i % 2 = 0 THEN {bad} ELSE 'n' || i END "
            f"FROM generate_series(1, {ROWS}) i"
        )
        await conn.execute("ANALYZE s")
    finally:
        await conn.close()


def _job(dsn: str, crate_url: str, on_bad_row: str) -> str:
    return f"""
name = "notes"
on_bad_row = "{on_bad_row}"
[source]
url = "{dsn}"
query = "SELECT id, note FROM s"
key = ["id"]
[target]
url = "{crate_url}"
table = "dw.notes"
[scd]
type = 2
[parallel]
enabled = false
chunk_size = 5000
[state]
url = "{dsn}"
"""


async def _target(url: str, note: str = "note TEXT NOT NULL") -> None:
    ddl = (
        f"CREATE TABLE dw.notes (id INTEGER, {note}, "
        "valid_from TIMESTAMP WITH TIME ZONE, valid_to TIMESTAMP WITH TIME ZONE, "
        "is_current BOOLEAN, PRIMARY KEY (id, valid_from)) CLUSTERED INTO 4 SHARDS"
    )
    async with CrateDBClient(url) as client:
        await client.execute(ddl)


@pytest.mark.parametrize("version", ["5.10.11", "5.9.0", "5.4.0"])
async def test_not_null_refusals_become_rejects_with_reason(pg_dsn: str, version: str) -> None:
    """Every second row NULL into NOT NULL, 4 shards: SUCCEEDED, 1000 rejects with the reason."""
    await _source(pg_dsn)
    async with CrateStandIn(StandInConfig(version=version)) as crate:
        await _target(crate.url)
        result = await run_job(spec_of(_job(pg_dsn, crate.url, "reject")),
                               options=JobOptions(as_of=at(0)))  # fmt: skip
        assert result.status == "SUCCEEDED", result.error
        assert crate.counters.requests < 3 * ROWS // 2
    rejects = await fetchval(pg_dsn, "SELECT count(*) FROM async_etl_rejects")
    assert rejects == ROWS // 2
    with_reason = await fetchval(
        pg_dsn, "SELECT count(*) FROM async_etl_rejects WHERE reason LIKE '%null%note%'"
    )
    assert with_reason == ROWS // 2


async def test_check_refusals_become_rejects_with_reason(pg_dsn: str) -> None:
    """Every second note empty into CHECK (note <> ''), 4 shards: 1000 rejects naming the check."""
    await _source(pg_dsn, bad="''")
    async with CrateStandIn(StandInConfig()) as crate:
        await _target(crate.url, "note TEXT CONSTRAINT note_set CHECK (note <> '')")
        result = await run_job(spec_of(_job(pg_dsn, crate.url, "reject")),
                               options=JobOptions(as_of=at(0)))  # fmt: skip
        assert result.status == "SUCCEEDED", result.error
    assert result.rejected == ROWS // 2
    with_reason = await fetchval(
        pg_dsn, "SELECT count(*) FROM async_etl_rejects WHERE reason LIKE '%CONSTRAINT note_set%'"
    )
    assert with_reason == ROWS // 2


@pytest.mark.parametrize("version", ["5.10.11", "5.9.0"])
async def test_not_null_refusal_fails_the_run_with_reason(pg_dsn: str, version: str) -> None:
    """The same case with on_bad_row = "fail": FAILED, and the error names the NOT NULL reason."""
    await _source(pg_dsn)
    async with CrateStandIn(StandInConfig(version=version)) as crate:
        await _target(crate.url)
        result = await run_job(spec_of(_job(pg_dsn, crate.url, "fail")),
                               options=JobOptions(as_of=at(0)))  # fmt: skip
    assert result.status == "FAILED"
    assert "Cannot insert null into 'note'" in (result.error or "")


async def test_refusals_found_before_a_chunk_retry_are_kept_not_resent(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk retried after its writes: the refusals it found are rejected again, not resent."""
    await _source(pg_dsn)
    original = CrateTarget._write
    sent_by_first: list[int] = []

    async def flaky_write(self: CrateTarget, ctx: Any, client: Any, plan: Any, known: Any) -> Any:
        rejects = await original(self, ctx, client, plan, known)
        if not sent_by_first:  # the chunk's end fails once after every write was made
            sent_by_first.append(crate.counters.bulk_items)
            raise TransientLoadError("injected: connection dropped after the writes")
        return rejects

    monkeypatch.setattr(CrateTarget, "_write", flaky_write)
    async with CrateStandIn(StandInConfig()) as crate:
        await _target(crate.url)
        result = await run_job(spec_of(_job(pg_dsn, crate.url, "reject")),
                               options=JobOptions(as_of=at(0)))  # fmt: skip
        assert result.status == "SUCCEEDED", result.error
        assert sent_by_first and crate.counters.bulk_items == sent_by_first[0]
    reasons = await fetchval(pg_dsn, "SELECT count(DISTINCT key) FROM async_etl_rejects "
                                     "WHERE reason LIKE '%null%note%'")  # fmt: skip
    assert reasons == ROWS // 2
    assert await fetchval(pg_dsn, "SELECT count(*) FROM async_etl_rejects") == ROWS // 2


async def test_split_of_a_refused_bulk_judges_the_items_of_each_half() -> None:
    """A bulk refused whole is bisected; NOT NULL items in accepted halves are rejects, not lost."""
    spec = spec_of(_job("postgresql://u@127.0.0.1/db", "http://127.0.0.1:4200", "reject"))
    cols = ScdSpec(type=1, business_key=("id",)).resolve(["id", "note", "v"])
    ctx = JobContext(spec=spec, run_id="r", as_of=at(0), columns=(("id", "integer"),
                     ("note", "text"), ("v", "integer")), cols=cols,
                     hold=BudgetHolder(LimiterBudget(2), ConnectionMeter()), stop=anyio.Event(),
                     state_url="postgresql://u@127.0.0.1/db")  # fmt: skip
    stmt = "INSERT INTO t (id, note, v) VALUES (?, ?, ?)"
    args = [[i, None if i % 2 else "x", "abc" if i == 7 else i] for i in range(40)]
    async with CrateStandIn(StandInConfig()) as crate, CrateDBClient(crate.url) as client:
        await client.execute(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, note TEXT NOT NULL, v INTEGER) "
            "CLUSTERED INTO 4 SHARDS"
        )
        target = CrateTarget(crate.url, "t")
        refused = dict(await target._bulk(ctx, client, stmt, args))
        await client.execute("REFRESH TABLE t")
        written = (await client.execute("SELECT id FROM t ORDER BY id")).rows
    assert sorted(refused) == [i for i in range(40) if i % 2]
    assert "Cannot cast" in refused[7]
    assert all("Cannot insert null into 'note'" in refused[i] for i in refused if i != 7)
    assert [r[0] for r in written] == [i for i in range(40) if i % 2 == 0]


async def test_a_bulk_refused_whole_fails_the_run_naming_the_row(pg_dsn: str) -> None:
    """on_bad_row = "fail", one value CrateDB cannot cast in a chunk: the error names its key."""
    conn = await asyncpg.connect(pg_dsn)
    try:  # int[] holds a 2-D value too; the target's ARRAY(INTEGER) cannot cast [[1, 2], ...]
        await conn.execute("CREATE TABLE s (id int PRIMARY KEY, note int[])")
        await conn.execute("INSERT INTO s SELECT i, ARRAY[i] FROM generate_series(1, 40) i")
        await conn.execute("UPDATE s SET note = '{{1,2},{3,4}}' WHERE id = 7")
    finally:
        await conn.close()
    async with CrateStandIn(StandInConfig()) as crate:
        result = await run_job(spec_of(_job(pg_dsn, crate.url, "fail")),
                               options=JobOptions(as_of=at(0)))  # fmt: skip
    assert result.status == "FAILED"
    assert 'row {"id": 7} refused: ' in (result.error or ""), result.error
    assert "Cannot cast" in (result.error or "")


@pytest.mark.parametrize(
    ("query", "scd", "named", "hint"),
    [
        ("SELECT id, note AS _note FROM s", "", "_note", "rename it in [source] query"),
        ("SELECT id, note FROM s", 'valid_from = "_from"', "_from", "set [scd] valid_from"),
    ],
)
async def test_a_column_crate_reserves_is_refused_in_preflight(
    pg_dsn: str, query: str, scd: str, named: str, hint: str
) -> None:
    """A column starting with _ (CrateDB's system column pattern) is one line before any run."""
    await _source(pg_dsn)
    async with CrateStandIn() as crate:
        text = _job(pg_dsn, crate.url, "reject").replace("SELECT id, note FROM s", query)
        text = text.replace("type = 2\n", f"type = 2\n{scd}\n")
        with pytest.raises(ConfigError) as err:
            await run_job(spec_of(text), options=JobOptions(as_of=at(0)))
        tables = crate.catalog.tables
    line = err.value.message
    assert "\n" not in line and f"column '{named}'" in line and hint in line
    assert "system columns" in line and "Naming restrictions" in line
    assert await fetchval(pg_dsn, "SELECT to_regclass('async_etl_runs')") is None  # no run
    assert not tables  # nothing created in the target


async def _load_notes_twice(
    pg_dsn: str, note: str, rejected: int, more: str = ""
) -> tuple[dict[Any, Any], set[str]]:
    """Run the type-2 job twice into dw.notes (``note``) from five (+ ``more``) texts.

    Asserts both runs SUCCEEDED, the first inserting 3 and both rejecting ``rejected`` (the
    second: nothing stored changed); gives the current notes by id and the rejects' reasons.
    """
    await fetchval(pg_dsn, "CREATE TABLE s (id int PRIMARY KEY, note text)")
    await fetchval(pg_dsn, "INSERT INTO s VALUES (1, 'abc'), (2, 'abc  '), (3, 'abcd'), "
                           f"(4, NULL), (5, 'ab '){more}")  # fmt: skip
    async with CrateStandIn() as crate:
        await _target(crate.url, note=note)
        for run in range(2):
            result = await run_job(spec_of(_job(pg_dsn, crate.url, "reject")),
                                   options=JobOptions(as_of=at(run)))  # fmt: skip
            assert result.status == "SUCCEEDED", result.error
            assert (result.inserted, result.rejected) == (3 if run == 0 else 0, rejected)
        stored = await crate_rows(crate.url, "dw.notes", "WHERE is_current = true")
    reasons = {r["reason"] for r in await table_rows(pg_dsn, "async_etl_rejects")}
    return {k: r["note"] for k, r in stored.items()}, reasons


async def test_a_value_longer_than_a_varchar_target_is_rejected_never_cut(pg_dsn: str) -> None:
    """Into VARCHAR(3): 'abcd' and 'abc  ' (CrateDB cuts blank excess) are rejects naming it."""
    stored, reasons = await _load_notes_twice(pg_dsn, "note VARCHAR(3)", rejected=2)
    assert stored == {1: "abc", 4: None, 5: "ab "}
    assert reasons == {
        "column note: text of 5 characters is longer than the target's VARCHAR(3); CrateDB "
        "would store it cut to its first 3 (its excess is blanks)",
        "column note: text of 4 characters is longer than the target's VARCHAR(3); CrateDB "
        "would refuse it",
    }


@pytest.mark.parametrize(
    ("table", "named", "why"),
    [
        ("dw._notes", "table name '_notes'", "starts with '_'"),
        ("_dw.notes", "schema name '_dw'", "starts with '_'"),
        ("dw.Notes", "table name 'Notes'", "upper case"),
        ("DW.notes", "schema name 'DW'", "upper case"),
        ("sys.notes", "schema name 'sys'", "reserved"),
    ],
)
async def test_a_table_name_crate_refuses_is_refused_in_preflight(
    pg_dsn: str, table: str, named: str, why: str
) -> None:
    """A target table or schema CrateDB refuses (_x, upper case, sys) is one line, no run."""
    await _source(pg_dsn)
    async with CrateStandIn() as crate:
        text = _job(pg_dsn, crate.url, "reject").replace('"dw.notes"', f'"{table}"')
        with pytest.raises(ConfigError) as err:
            await run_job(spec_of(text), options=JobOptions(as_of=at(0)))
        tables = crate.catalog.tables
    line = err.value.message
    assert "\n" not in line and line.startswith(f"job notes: target {table}: {named}"), line
    assert why in line and "docs: CREATE TABLE, " in line
    assert await fetchval(pg_dsn, "SELECT to_regclass('async_etl_runs')") is None  # no run
    assert not tables  # nothing created in the target


async def test_a_value_crate_would_pad_or_cut_into_a_char_target_is_rejected(pg_dsn: str) -> None:
    """Into CHAR(3): 'abcd', 'abc  ' (cut) and 'ab' (CrateDB pads it) are rejects naming it."""
    stored, reasons = await _load_notes_twice(
        pg_dsn, "note CHAR(3)", rejected=3, more=", (6, 'ab')"
    )
    assert stored == {1: "abc", 4: None, 5: "ab "}
    assert reasons == {
        "column note: text of 5 characters is longer than the target's CHARACTER(3); CrateDB "
        "would store it cut to its first 3 (its excess is blanks)",
        "column note: text of 4 characters is longer than the target's CHARACTER(3); CrateDB "
        "would refuse it",
        "column note: text of 2 characters is shorter than the target's CHARACTER(3); CrateDB "
        "would store it padded with blanks (pass exactly 3 characters, or use varchar or "
        "text)",
    }


@pytest.mark.parametrize("element", ["VARCHAR(3)", "CHAR(3)"])
async def test_an_array_of_bounded_text_target_is_refused_in_preflight(
    pg_dsn: str, element: str
) -> None:
    """ARRAY(VARCHAR(3)) / ARRAY(CHAR(3)) (n read by SHOW CREATE TABLE) is one line, no run."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("CREATE TABLE s (id int PRIMARY KEY, note text[])")
        await conn.execute("INSERT INTO s VALUES (1, '{abc}'), (2, '{\"abc  \"}'), (3, '{ab}')")
    finally:
        await conn.close()
    async with CrateStandIn() as crate:
        await _target(crate.url, note=f"note ARRAY({element})")
        with pytest.raises(ConfigError) as err:
            await run_job(spec_of(_job(pg_dsn, crate.url, "reject")),
                          options=JobOptions(as_of=at(0)))  # fmt: skip
        stored = await crate_rows(crate.url, "dw.notes")
    line = err.value.message
    listed = "character varying(3)[]" if element == "VARCHAR(3)" else "character(3)[]"
    assert "\n" not in line and line.startswith("job notes: schema drift: "), line
    assert "note" in line and listed in line, line
    assert await fetchval(pg_dsn, "SELECT to_regclass('async_etl_runs')") is None  # no run
    assert stored == {}  # nothing written
