"""The generated PostgreSQL SQL, executed on a real database, equals the in-memory SCD model."""

from __future__ import annotations

import io
import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from asyncpg.utils import _mogrify

from async_etl.core import scd_sql_crate as crate
from async_etl.core import scd_sql_pg as pg
from async_etl.core import state_sql
from async_etl.core.chunks import ChunkPlan, plan_chunks, row_in_chunk, sample_percent
from async_etl.core.scd import Row, apply_plan, diff, history_problems
from async_etl.core.scd_sql_common import chunk_values
from async_etl.core.scd_sql_pg_latest import latest_merge_statements
from async_etl.core.specs import ScdColumns, ScdSpec
from async_etl.core.sqltext import inline_integers
from async_etl.jobs.state import STOP_DDL
from async_etl.sources.postgres import PgSource

COLUMNS = [("a", "bigint"), ("b", "text"), ("name", "text"), ("city", "text"), ("tier", "integer")]
NAMES = [n for n, _ in COLUMNS]
KEY = ("a", "b")
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def spec(kind: int) -> ScdColumns:
    if kind == 2:
        s = ScdSpec(
            type=2,
            business_key=KEY,
            tracked=("name", "city"),
            overwrite=("tier",),
            deletes="expire",
            valid_from="vf",
            valid_to="vt",
            is_current="cur",
        )
    else:
        s = ScdSpec(type=1, business_key=KEY, deletes="delete")
    return s.resolve(NAMES)


def random_history(seed: int, runs: int = 5) -> list[list[Row]]:
    rnd = random.Random(seed)
    keys = [(a, b) for a in range(6) for b in ("x", "y", "Y")]
    history = []
    for _ in range(runs):
        present = rnd.sample(keys, rnd.randint(0, len(keys)))
        history.append(
            [
                {
                    "a": a,
                    "b": b,
                    "name": rnd.choice([None, "n1", "n2"]),
                    "city": rnd.choice([None, "p", "q"]),
                    "tier": rnd.choice([None, 1, 2]),
                }
                for a, b in present
            ]
        )
    return history


def norm(rows: list[Any], cols: ScdColumns) -> list[tuple[Any, ...]]:
    return sorted((tuple(dict(r)[c] for c in cols.target) for r in rows), key=repr)


async def merge_chunked(
    conn: asyncpg.Connection,
    cols: ScdColumns,
    plan: ChunkPlan,
    source: list[Row],
    as_of: datetime,
    model: list[Row],
    after_all: bool = False,
    latest: bool = False,
) -> list[Row]:
    """Run one job run chunk by chunk, checking each chunk's counts against the model.

    ``latest``: merge each chunk with ``latest_merge_statements`` (a run after every version).
    """
    for chunk in plan.chunks:
        rows = [r for r in source if row_in_chunk((r["a"], r["b"]), chunk)]
        inside = [r for r in model if row_in_chunk((r["a"], r["b"]), chunk)]
        mplan = diff(cols, inside, rows, as_of)
        model = apply_plan(model, mplan)
        totals = dict.fromkeys(("inserted", "updated", "expired", "deleted"), 0)
        values = chunk_values(chunk, as_of)
        async with conn.transaction():
            await conn.copy_records_to_table(
                "stg", records=[tuple(r[c] for c in NAMES) for r in rows], columns=NAMES
            )
            statements = None
            if latest:
                statements = latest_merge_statements("dw.dim", "stg", cols, KEY, chunk)
            for st in statements or pg.merge_statements(
                "dw.dim", "stg", cols, KEY, chunk, after_all=after_all
            ):
                if st.counts == "rows":
                    got = await conn.fetchrow(st.text, *st.args(values))
                    for k in totals:
                        totals[k] += got[k]
                else:
                    await conn.execute(st.text, *st.args(values))
        assert totals == mplan.counts(), (chunk, totals, mplan.counts())
    return model


async def dim_and_staging(dsn: str, cols: ScdColumns) -> asyncpg.Connection:
    """A connection on which the target dw.dim and the staging table stg exist."""
    conn = await asyncpg.connect(dsn)
    for st in pg.target_ddl("dw.dim", COLUMNS, cols):
        await conn.execute(st.text)
    await conn.execute(pg.staging_ddl("stg", COLUMNS).text)
    return conn


@pytest.mark.parametrize("kind", [2, 1])
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_merge_matches_model_over_history(pg_dsn: str, kind: int, seed: int):
    """Several runs (updates, deletes, resurrections, NULLs, composite keys): table == model."""
    cols = spec(kind)
    plan = plan_chunks([(2, "x"), (3, "Y"), (5, "y")])
    conn = await dim_and_staging(pg_dsn, cols)
    try:
        model: list[Row] = []
        history = random_history(seed)
        for i, source in enumerate(history):
            model = await merge_chunked(conn, cols, plan, source, T0 + timedelta(days=i), model)
            table = await conn.fetch('SELECT * FROM "dw"."dim"')
            assert norm(table, cols) == norm(model, cols)
            if kind == 2:
                assert history_problems([dict(r) for r in table], cols) == []
        # the same source and the same T again changes nothing
        again = await merge_chunked(
            conn, cols, plan, history[-1], T0 + timedelta(days=len(history) - 1), model
        )
        assert norm(await conn.fetch('SELECT * FROM "dw"."dim"'), cols) == norm(again, cols)
        # the same T with a different source (a rerun of a half-done chunk) still agrees
        model = await merge_chunked(
            conn, cols, plan, history[0], T0 + timedelta(days=len(history) - 1), model
        )
        assert norm(await conn.fetch('SELECT * FROM "dw"."dim"'), cols) == norm(model, cols)
    finally:
        await conn.close()


@pytest.mark.parametrize("seed", [4, 5, 6])
async def test_after_all_merge_matches_model(pg_dsn: str, seed: int):
    """Runs later than every version merged without the same-as-of statements equal the model."""
    cols = ScdSpec(type=2, business_key=KEY, deletes="expire").resolve(NAMES)
    plan = plan_chunks([(2, "x"), (3, "Y"), (5, "y")])
    conn = await dim_and_staging(pg_dsn, cols)
    try:
        model: list[Row] = []
        for i, source in enumerate(random_history(seed)):
            as_of = T0 + timedelta(days=i)
            model = await merge_chunked(conn, cols, plan, source, as_of, model, after_all=True)
            table = await conn.fetch('SELECT * FROM "dw"."dim"')
            assert norm(table, cols) == norm(model, cols)
            assert history_problems([dict(r) for r in table], cols) == []
            # a re-run at the same as-of (not after all) with another source still agrees
            other = random_history(seed + 10 + i, runs=1)[0]
            model = await merge_chunked(conn, cols, plan, other, as_of, model)
            assert norm(await conn.fetch('SELECT * FROM "dw"."dim"'), cols) == norm(model, cols)
    finally:
        await conn.close()


@pytest.mark.parametrize("deletes", ["expire", "ignore"])
@pytest.mark.parametrize("seed", [4, 5, 6, 7])
async def test_latest_merge_matches_model(pg_dsn: str, seed: int, deletes: str):
    """The one-statement merge of runs later than every version equals the model, counts too."""
    cols = ScdSpec(type=2, business_key=KEY, deletes=deletes).resolve(NAMES)  # type: ignore[arg-type]
    assert latest_merge_statements("dw.dim", "stg", cols, KEY, plan_chunks([]).chunks[0])
    plan = plan_chunks([(2, "x"), (3, "Y"), (5, "y")])
    conn = await dim_and_staging(pg_dsn, cols)
    try:
        model: list[Row] = []
        for i, source in enumerate(random_history(seed, runs=7)):
            as_of = T0 + timedelta(days=i)
            model = await merge_chunked(conn, cols, plan, source, as_of, model, latest=True)
            table = await conn.fetch('SELECT * FROM "dw"."dim"')
            assert norm(table, cols) == norm(model, cols)
            assert history_problems([dict(r) for r in table], cols) == []
    finally:
        await conn.close()


async def test_source_unique_on_only_plain_unique_indexes_on_uncollated_key_columns(pg_dsn: str):
    """unique_on: a PK / unique index on non-text key columns only; never partial, text, views."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(
            "CREATE SCHEMA src; "
            "CREATE TABLE src.pk (a bigint PRIMARY KEY, b text, v int); "
            "CREATE TABLE src.pair (a bigint, b text, v int, UNIQUE (a, v)); "
            "CREATE TABLE src.txt (a bigint, b text UNIQUE, v int); "
            "CREATE TABLE src.part (a bigint, b text, v int); "
            "CREATE UNIQUE INDEX ON src.part (a) WHERE v > 0; "
            "CREATE TABLE src.expr (a bigint, b text, v int); "
            "CREATE UNIQUE INDEX ON src.expr ((a + 1)); "
            "CREATE TABLE src.none (a bigint, b text, v int); "
            'CREATE TABLE src."Mixed" (a bigint PRIMARY KEY, b text); '
            "CREATE VIEW src.pk_v AS SELECT * FROM src.pk"
        )
        expect = {
            "src.pk": True,
            "src.Mixed": True,
            "src.pair": False,
            "src.txt": False,
            "src.part": False,
            "src.expr": False,
            "src.none": False,
            "src.pk_v": False,
        }
        for table, unique in expect.items():
            got = await PgSource(pg_dsn, KEY, None, table).unique_on(conn, KEY)
            assert got is unique, table
        assert await PgSource(pg_dsn, KEY, None, "src.pair").unique_on(conn, ("a", "v"))
        assert not await PgSource(pg_dsn, KEY, None, "src.txt").unique_on(conn, ("a", "b"))
        query = PgSource(pg_dsn, KEY, "SELECT * FROM src.pk", None)
        assert not await query.unique_on(conn, KEY)
    finally:
        await conn.close()


async def test_sampled_boundaries_cover_every_row_once(pg_dsn: str):
    """Cuts from a block sample of a large table plan chunks that read every row exactly once."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(
            "CREATE SCHEMA src; CREATE TABLE src.big (a bigint, b text, v int); "
            "INSERT INTO src.big SELECT g / 3, md5(g::text), g FROM generate_series(1, 300000) g; "
            "ANALYZE src.big"
        )
        estimate = await conn.fetchval(pg.estimate_table_sql().text, "src.big")
        pct = sample_percent(estimate, 12)
        assert pct is not None and pct < 20
        st = pg.boundaries_sql(None, "src.big", KEY, sample=pct)
        assert "TABLESAMPLE SYSTEM" in st.text
        plan = plan_chunks([tuple(r) for r in await conn.fetch(st.text, 12)])
        assert 6 <= len(plan) <= 12
        total = 0
        for chunk in plan.chunks:
            ex = pg.extract_sql(None, "src.big", KEY, chunk)
            total += await conn.fetchval(
                f"SELECT count(DISTINCT v) FROM ({ex.text}) AS c", *ex.args(chunk_values(chunk))
            )
        assert total == 300_000
        assert "TABLESAMPLE" not in pg.boundaries_sql("SELECT * FROM src.big", None, KEY,
                                                      sample=pct).text  # fmt: skip
        await conn.execute("CREATE VIEW src.big_v AS SELECT * FROM src.big")
        for table, sampled in (("src.big", True), ("src.big_v", False)):
            st = pg.SAMPLEABLE_SQL
            assert await conn.fetchval(st.text, *st.args({"table": table})) is sampled
            cuts = await PgSource(pg_dsn, KEY, None, table).boundaries(conn, 12, (), 300_000)
            assert 6 <= len(plan_chunks(cuts.values)) <= 12  # a view: cut exactly, no error
    finally:
        await conn.close()


async def test_extraction_boundaries_estimates_and_state(pg_dsn: str):
    """Boundary sampling + chunk extraction read every row once; estimates and state SQL run."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("CREATE SCHEMA src; CREATE TABLE src.t (a bigint, b text, v int)")
        rows = [(a, b, a) for a in range(50) for b in ("x", "y")] + [(None, "z", 0)]
        await conn.copy_records_to_table("t", schema_name="src", records=rows)
        await conn.execute("ANALYZE src.t")
        cuts = await conn.fetch(pg.boundaries_sql(None, "src.t", KEY).text, 7)
        plan = plan_chunks([tuple(r) for r in cuts])
        assert len(plan) == 7
        seen: list[tuple[Any, ...]] = []
        query = "SELECT a, b, v FROM src.t"
        for chunk in plan.chunks:
            st = pg.extract_sql(query, None, KEY, chunk)
            got = await conn.fetch(st.text, *st.args(chunk_values(chunk)))
            assert all(row_in_chunk((r["a"], r["b"]), chunk) for r in got)
            seen += [tuple(r) for r in got]
        assert sorted(seen) == sorted(r for r in rows if r[0] is not None)
        assert await conn.fetchval(pg.null_keys_sql(query, None, KEY).text) == 1
        assert await conn.fetchval(pg.estimate_table_sql().text, "src.t") == 101
        doc = await conn.fetchval(pg.estimate_query_sql(query).text)
        assert pg.parse_explain_rows(doc) > 0
        for st in (*state_sql.STATE_DDL, STOP_DDL):  # a run's record clears its stop request
            await conn.execute(st.text)
        bounds = [json.dumps(c.to_json()) for c in plan.chunks]
        run = {"run_id": "r1", "job": "j", "as_of": T0, "plan": json.dumps(plan.to_json())}
        await conn.execute(
            state_sql.START_RUN.text, *state_sql.START_RUN.args(run | {"bounds": bounds})
        )
        args = {
            "run_id": "r1",
            "chunk_index": 2,
            "bounds": json.dumps(plan.chunks[2].to_json()),
            "rows": 10,
            "cursor": None,
            "counts": state_sql.chunk_counts({"inserted": 10}, 0),
            "loader": "first",
        }
        await conn.execute(state_sql.CHECKPOINT_CHUNK.text, *state_sql.CHECKPOINT_CHUNK.args(args))
        done = await conn.fetch(state_sql.COMMITTED_CHUNKS.text, "r1")
        assert [r[0] for r in done] == [2]
        again = args | {"rows": 99, "counts": state_sql.chunk_counts({"inserted": 99}, 0)}
        status = await conn.execute(
            state_sql.CHECKPOINT_CHUNK.text, *state_sql.CHECKPOINT_CHUNK.args(again)
        )
        assert status == "INSERT 0 0"  # a chunk commits once: its loader rolls a second back
        kept = "SELECT rows FROM async_etl_chunks WHERE run_id = 'r1' AND chunk_index = 2"
        assert await conn.fetchval(kept) == 10
        found = tuple(await conn.fetchrow(state_sql.CHECKPOINT_OF.text, "r1", 2))
        own = state_sql.landed_before(found, again["bounds"], "first")
        assert own == (10, {"inserted": 10, "updated": 0, "expired": 0, "deleted": 0,
                            "rejected": 0})  # fmt: skip
        assert state_sql.landed_before(found, again["bounds"], "second") is None
        back = await conn.fetchrow(state_sql.UNFINISHED_RUN.text, "j")
        assert ChunkPlan.from_json(json.loads(back["plan"])) == plan and back["as_of"] == T0
        upd = dict.fromkeys(state_sql.UPDATE_RUN.params, 0) | {
            "run_id": "r1",
            "status": "SUCCEEDED",
            "error": None,
            "cursor": None,
        }
        await conn.execute(state_sql.UPDATE_RUN.text, *state_sql.UPDATE_RUN.args(upd))
        assert await conn.fetchrow(state_sql.UNFINISHED_RUN.text, "j") is None
    finally:
        await conn.close()


def dollar(stmt: str) -> str:
    """CrateDB ``?`` placeholders as PostgreSQL ``$n`` (the rendered SQL is otherwise portable)."""
    parts = stmt.split("?")
    return "".join(p + (f"${i + 1}" if i < len(parts) - 1 else "") for i, p in enumerate(parts))


@pytest.mark.parametrize("seed", [4, 5])
async def test_crate_bulks_converge_after_crash_at_any_prefix(pg_dsn: str, seed: int):
    """Rendered CrateDB bulks, cut after any item then re-run via re-read + re-diff, converge."""
    cols = spec(2)
    conn = await asyncpg.connect(pg_dsn)
    try:
        for st in pg.target_ddl("dim", COLUMNS, cols):
            await conn.execute(st.text)
        history = random_history(seed, runs=3)
        whole = plan_chunks([]).chunks[0]
        model: list[Row] = []
        for i, source in enumerate(history[:-1]):
            model = apply_plan(model, diff(cols, model, source, T0 + timedelta(days=i)))
        as_of = T0 + timedelta(days=len(history))
        final = apply_plan(model, diff(cols, model, history[-1], as_of))
        items = [
            (b.stmt, args)
            for b in crate.render("dim", diff(cols, model, history[-1], as_of))
            for args in b.bulk_args
        ]
        for cut in range(len(items) + 1):
            await conn.execute('TRUNCATE "dim"')
            await conn.copy_records_to_table(
                "dim",
                records=[tuple(r[c] for c in cols.target) for r in model],
                columns=list(cols.target),
            )
            for stmt, args in items[:cut]:  # the crash happens after item `cut`
                await conn.execute(dollar(stmt), *args)
            st = crate.current_rows_sql("dim", cols, KEY, whole)  # the re-run re-reads
            current = [dict(r) for r in await conn.fetch(dollar(st.text), *st.args({}))]
            for bulk in crate.render("dim", diff(cols, current, history[-1], as_of)):
                await conn.executemany(dollar(bulk.stmt), bulk.bulk_args)
            assert norm(await conn.fetch('SELECT * FROM "dim"'), cols) == norm(final, cols)
    finally:
        await conn.close()


async def test_the_as_of_default_is_told_apart_whatever_the_session_settings(pg_dsn: str):
    """Only the run's own as-of default on valid_from reads as held, in any DateStyle / TimeZone."""
    cols = spec(2)
    as_of = datetime(2024, 3, 5, 6, 7, 8, 123456, tzinfo=UTC)
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("SET DateStyle = 'German'; SET TimeZone = 'America/New_York'")
        for st in pg.target_ddl("dw.hd", COLUMNS, cols):
            await conn.execute(st.text)
        st = pg.holds_initial_default_sql(cols)

        async def holds(when: datetime) -> bool:
            values = {"relation": "dw.hd", "column": "vf", "as_of": when}
            return bool(await conn.fetchval(st.text, *st.args(values)))

        assert not await holds(as_of)  # the target's own DDL: no default
        await conn.execute(pg.initial_defaults_sql("dw.hd", cols, as_of).text)
        assert await holds(as_of)
        assert not await holds(as_of + timedelta(microseconds=1))
        await conn.execute(pg.drop_initial_default_sql("dw.hd", cols).text)
        assert not await holds(as_of)
    finally:
        await conn.close()


async def id_plan(conn: Any, table: str, more: str, values: str, low: int, parts: int) -> ChunkPlan:
    """Create ``table`` (id bigint, ``more``), ids ``low``..1500; cut it in ``parts`` chunks."""
    await conn.execute(
        f"CREATE SCHEMA src; CREATE TABLE {table} (id bigint, {more}); "
        f"INSERT INTO {table} SELECT g, {values} FROM generate_series({low}, 1500) g"
    )
    cuts = await conn.fetch(pg.boundaries_sql(None, table, ("id",)).text, parts)
    return plan_chunks([tuple(r) for r in cuts])


async def test_integer_bounds_are_inlined_as_asyncpg_would_without_asking(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
):
    """Integer chunk bounds: the COPY text asyncpg's inlining gives, with no prepare sent."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        plan = await id_plan(conn, "src.ik", "v numeric, w text", "g, md5(g::text)", -500, 6)
        assert len(plan) == 6
        source = PgSource(pg_dsn, ("id",), None, "src.ik")
        for chunk in plan.chunks:
            st, args = source.extract(chunk)
            assert inline_integers(st.text, args) == await _mogrify(conn, st.text, args)

        async def no_prepare(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("prepared a statement to inline the bounds")

        monkeypatch.setattr(asyncpg.connection.Connection, "prepare", no_prepare)
        sizes: list[int] = []

        async def out(data: bytes) -> None:
            sizes.append(len(data))

        total = sum([await source.copy_out(conn, chunk, out) for chunk in plan.chunks])
        assert total == 2001 and sum(sizes) > 0
    finally:
        await conn.close()


async def copy_chunks(conn: Any, source: PgSource, plan: ChunkPlan, table: str) -> None:
    """COPY each chunk of ``plan`` out of ``source`` and into ``src.<table>``, one by one."""
    for chunk in plan.chunks:
        data: list[bytes] = []

        async def out(part: bytes, data: list[bytes] = data) -> None:
            data.append(part)

        await source.copy_out(conn, chunk, out)
        await conn.copy_to_table(
            table, schema_name="src", source=io.BytesIO(b"".join(data)), format="binary"
        )


async def test_a_dollar_number_in_the_source_query_text_is_not_a_bound(pg_dsn: str):
    """A source query with '$1' in a string literal copies out by integer key ranges intact."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        plan = await id_plan(conn, "src.dk", "v int", "g", 1, 4)
        source = PgSource(pg_dsn, ("id",), "SELECT id, '$1 each' AS note FROM src.dk", None)
        await conn.execute("CREATE TABLE src.dk_copy (id bigint, note text)")
        await copy_chunks(conn, source, plan, "dk_copy")
        got = await conn.fetch("SELECT DISTINCT note FROM src.dk_copy")
        assert [r[0] for r in got] == ["$1 each"]
        assert await conn.fetchval("SELECT count(*) FROM src.dk_copy") == 1500
    finally:
        await conn.close()


async def test_a_backslash_quote_is_read_as_the_session_reads_it_when_bounds_are_inlined(
    pg_dsn: str,
):
    """With standard_conforming_strings off, '\\'$1' is string text: the real bounds are inlined."""
    conn = await asyncpg.connect(pg_dsn, server_settings={"standard_conforming_strings": "off"})
    try:
        plan = await id_plan(conn, "src.dq", "v int", "g", 1, 4)
        query = "SELECT id, 'a\\'$1' AS note FROM src.dq"  # the server reads: a'$1
        source = PgSource(pg_dsn, ("id",), query, None)
        await conn.execute("CREATE TABLE src.dq_copy (id bigint, note text)")
        await copy_chunks(conn, source, plan, "dq_copy")
        got = await conn.fetch("SELECT DISTINCT note FROM src.dq_copy")
        assert [r[0] for r in got] == ["a'$1"]
        assert await conn.fetchval("SELECT count(*) FROM src.dq_copy") == 1500
    finally:
        await conn.close()


KEYED = {  # key type -> (its values from g, the key's collation)
    "text": ("format('%s''\\%s $1', g, md5(g::text))", "C"),
    "timestamp": ("'2024-02-29 23:59:59'::timestamp + g * interval '1.000007 s'", None),
    "timestamptz": ("'2024-03-31 01:30:00+00'::timestamptz + g * interval '1.000007 s'", None),
    "numeric": ("g / 7.0", None),
}


@pytest.mark.parametrize("kind", list(KEYED))
async def test_other_bounds_inline_exactly_past_a_dollar_number_in_the_query(
    pg_dsn: str, kind: str
):
    """Text, timestamp, numeric bounds: a source query with '$1 each' copies out every row once."""
    values, collate = KEYED[kind]
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(
            f"CREATE SCHEMA src; CREATE TABLE src.xk (k {kind}, v int); "
            f"INSERT INTO src.xk SELECT {values}, g FROM generate_series(1, 1500) g; "
            f"CREATE TABLE src.xk_copy (k {kind}, v int, note text)"
        )
        await conn.execute("SET DateStyle = 'SQL, DMY'; SET TimeZone = 'Asia/Kathmandu'")
        cuts = await conn.fetch(pg.boundaries_sql(None, "src.xk", ("k",), (collate,)).text, 5)
        plan = plan_chunks([tuple(r) for r in cuts], (collate,))
        assert len(plan) == 5
        query = "SELECT k, v, '$1 each' AS note FROM src.xk"
        source = PgSource(pg_dsn, ("k",), query, None)
        await copy_chunks(conn, source, plan, "xk_copy")
        assert [r[0] for r in await conn.fetch("SELECT DISTINCT note FROM src.xk_copy")] == [
            "$1 each"
        ]
        missed = "SELECT count(*) FROM (TABLE src.xk EXCEPT ALL SELECT k, v FROM src.xk_copy) d"
        assert await conn.fetchval(missed) == 0
        assert await conn.fetchval("SELECT count(*) FROM src.xk_copy") == 1500
    finally:
        await conn.close()
