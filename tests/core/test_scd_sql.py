"""The generated SQL, checked structurally (no database): binds, quoting, anti-joins, bounds."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from async_etl.core import scd_sql_crate as crate
from async_etl.core import scd_sql_oracle as ora
from async_etl.core import scd_sql_pg as pg
from async_etl.core import state_sql
from async_etl.core.chunks import Chunk, plan_chunks
from async_etl.core.scd import apply_plan, diff
from async_etl.core.scd_sql_common import (
    Binder,
    Sql,
    bounds_predicate,
    chunk_values,
    quote,
    rowcount_from_status,
)
from async_etl.core.specs import ScdColumns, ScdSpec

NAMES = ("a", "b", "name", "city", "tier")
KEY = ("a", "b")
CHUNKS = plan_chunks([(1, "x"), (5, "y")]).chunks  # open below, closed, open above


def cols(kind: int, deletes: str) -> ScdColumns:
    over = ("tier",) if kind == 2 else ()
    return ScdSpec(type=kind, business_key=KEY, overwrite=over, deletes=deletes).resolve(NAMES)  # type: ignore[arg-type]


CASES = [(2, "expire"), (2, "ignore"), (1, "delete"), (1, "ignore")]


def all_statements() -> list[tuple[str, Chunk, Sql]]:
    out = []
    for kind, deletes in CASES:
        c = cols(kind, deletes)
        for chunk in CHUNKS:
            out += [("pg", chunk, s) for s in pg.merge_statements("dw.dim", "stg", c, KEY, chunk)]
            out += [
                ("oracle", chunk, s) for s in ora.merge_statements("dw.dim", "stg", c, KEY, chunk)
            ]
            out.append(("pg", chunk, pg.extract_sql("SELECT 1", None, KEY, chunk)))
            out.append(("oracle", chunk, ora.extract_sql(None, "src.t", KEY, chunk)))
            out.append(("crate", chunk, crate.current_rows_sql("dw.dim", c, KEY, chunk)))
    return out


@pytest.mark.parametrize(("dialect", "chunk", "st"), all_statements())
def test_binds_match_params(dialect: str, chunk: Chunk, st: Sql):
    """Placeholders match the params: $n distinct, Oracle :1..:n in text order, ? one each."""
    if dialect == "pg":
        used = sorted({int(n) for n in re.findall(r"\$(\d+)", st.text)})
        assert used == list(range(1, len(st.params) + 1))
        assert len(set(st.params)) == len(st.params)
    elif dialect == "oracle":
        assert [int(n) for n in re.findall(r":(\d+)", st.text)] == list(
            range(1, len(st.params) + 1)
        )
    else:
        assert st.text.count("?") == len(st.params)
    values = chunk_values(chunk, datetime(2024, 1, 1, tzinfo=UTC))
    assert len(st.args(values)) == len(st.params)  # every logical name has a value


@pytest.mark.parametrize(("dialect", "chunk", "st"), all_statements())
def test_never_not_in_and_quoted(dialect: str, chunk: Chunk, st: Sql):
    """No NOT IN anywhere; anti-joins are NOT EXISTS; identifiers are quoted."""
    assert re.search(r"\bNOT\s+IN\s*\(", st.text, re.IGNORECASE) is None
    if "INSERT INTO" in st.text and "SELECT" in st.text and "ON CONFLICT" not in st.text:
        assert "NOT EXISTS" in st.text
    for word in ("dim", "stg"):
        assert f" {word} " not in st.text  # always "dim" / "DIM", never bare


def test_pg_type2_merge_shape():
    """PG type 2: update in place, expire, absent expire/delete, insert; bounds as row values."""
    sts = pg.merge_statements("dw.dim", "stg", cols(2, "expire"), KEY, CHUNKS[1])
    texts = [s.text for s in sts]
    assert texts[0] == 'ANALYZE "stg" ("a", "b")'
    for i, alias in ((1, "t"), (2, "t"), (5, "c")):  # the target side is bounded to the chunk
        assert f'({alias}."a", {alias}."b") >= (' in texts[i], texts[i]
        assert f'({alias}."a", {alias}."b") < (' in texts[i], texts[i]
    assert [s.counts for s in sts[1:]] == ["rows"] * 5
    assert "IS DISTINCT FROM" in texts[1] and '"tier" = s."tier"' in texts[1]
    assert 'SET "valid_to" = $1, "is_current" = false' in texts[2]
    assert '(t."a", t."b") >= ($2, $3) AND (t."a", t."b") < ($4, $5)' in texts[3]
    assert sts[3].params == ("as_of", "lo0", "lo1", "hi0", "hi1")
    assert (
        texts[4].startswith('WITH x AS (DELETE FROM "dw"."dim"') and '"valid_from" = $1' in texts[4]
    )
    assert 'NOT EXISTS (SELECT 1 FROM "dw"."dim" AS c WHERE c."is_current"' in texts[5]
    first = pg.merge_statements("dw.dim", "stg", cols(2, "expire"), KEY, CHUNKS[0])[3]
    assert ">=" not in first.text and first.params == ("as_of", "hi0", "hi1")


def test_pg_type1_upsert_shape():
    """PG type 1: ON CONFLICT DO UPDATE only WHERE something is distinct; delete within bounds."""
    sts = pg.merge_statements("dw.dim", "stg", cols(1, "delete"), KEY, CHUNKS[2])
    assert sts[1].text.startswith('WITH x AS (DELETE FROM "dw"."dim" AS t WHERE')
    assert '(t."a", t."b") >= ($1, $2)' in sts[1].text and "<" not in sts[1].text
    up = sts[2].text
    assert 'ON CONFLICT ("a", "b") DO UPDATE SET' in up
    assert 'WHERE ROW(t."name", t."city", t."tier") IS DISTINCT FROM ROW(EXCLUDED' in up


def test_pg_type1_upsert_counts_by_xmax_unless_the_target_is_partitioned():
    """Plain target: inserts told by xmax, no join; partitioned: by a join to the snapshot."""
    plain = pg.merge_statements("dw.dim", "stg", cols(1, "ignore"), KEY, CHUNKS[2])[-1].text
    assert "RETURNING (t.xmax = 0) AS ins" in plain and "JOIN" not in plain
    parted = pg.merge_statements(
        "dw.dim", "stg", cols(1, "ignore"), KEY, CHUNKS[2], partitioned=True
    )[-1].text
    assert "xmax" not in parted and 'RETURNING t."a", t."b")' in parted
    assert 'FROM x LEFT JOIN "dw"."dim" AS o ON' in parted
    assert 'count(*) - count(o."a") AS inserted, count(o."a") AS updated' in parted


def test_oracle_expanded_bounds_and_merge():
    """Oracle: composite bounds expanded into OR form with :n binds; type 1 is one MERGE."""
    b = Binder("oracle")
    text = bounds_predicate(['q."A"', 'q."B"'], CHUNKS[1], b, expand=True)
    assert text == (
        'q."A" IS NOT NULL AND q."B" IS NOT NULL AND (q."A" > :1 OR (q."A" = :2 AND '
        'q."B" >= :3)) AND (q."A" < :4 OR (q."A" = :5 AND q."B" < :6))'
    )
    assert b.params == ["lo0", "lo0", "lo1", "hi0", "hi0", "hi1"]
    sts = ora.merge_statements("dw.dim", "stg", cols(1, "ignore"), KEY, CHUNKS[0])
    assert len(sts) == 1 and sts[0].text.startswith('MERGE INTO "DW"."DIM" t USING "STG" s')
    assert 'DECODE(t."NAME", s."NAME", 0, 1) = 1' in sts[0].text
    t2 = ora.merge_statements("dw.dim", "stg", cols(2, "expire"), KEY, CHUNKS[1])
    assert [s.counts for s in t2] == ["updated", "expired", "expired", "deleted", "inserted"]
    assert t2[1].params == ("as_of", "as_of")


def test_three_column_expansion():
    """Three key columns expand recursively, lower inclusive, upper exclusive."""
    chunk = Chunk(1, (1, 2, 3), None)
    text = bounds_predicate(["a", "b", "c"], chunk, Binder("crate"), expand=True)
    assert text.endswith("(a > ? OR (a = ? AND (b > ? OR (b = ? AND c >= ?))))")


def test_ddl():
    """Target DDL: SCD columns, unique (key, valid_from), unique current partial index."""
    sts = pg.target_ddl(
        "dw.dim",
        [("a", "bigint"), ("b", "text"), ("name", "text"), ("city", "text"), ("tier", "integer")],
        cols(2, "expire"),
    )
    texts = [s.text for s in sts]
    assert texts[0] == 'CREATE SCHEMA IF NOT EXISTS "dw"'
    assert '"a" bigint NOT NULL' in texts[1] and '"valid_from" timestamptz NOT NULL' in texts[1]
    assert texts[3].endswith('ON "dw"."dim" ("a", "b") WHERE "is_current"')
    assert "ON COMMIT DELETE ROWS" in pg.staging_ddl("stg", [("a", "bigint")]).text
    assert "UNLOGGED" in pg.staging_ddl("stg", [("a", "bigint")], temp=False).text
    assert 'PRIMARY KEY ("a", "b", "valid_from")' in crate.target_ddl(
        "dim",
        [("a", "BIGINT"), ("b", "TEXT"), ("name", "TEXT"), ("city", "TEXT"), ("tier", "INTEGER")],
        cols(2, "expire"),
    )
    with pytest.raises(ValueError, match="bad column type"):
        pg.staging_ddl("stg", [("a", "int); DROP TABLE x; --")])
    with pytest.raises(ValueError, match="bad identifier"):
        quote('a"b')


def test_crate_render_groups_by_statement():
    """CrateDB bulks: expire before insert, PK-addressed, never WHERE is_current."""
    c = cols(2, "expire")
    row = {"a": 1, "b": "x", "name": "n", "city": "p", "tier": 1}
    t0 = apply_plan([], diff(c, [], [row, {**row, "a": 2}], 1))
    plan = diff(c, t0, [{**row, "name": "m"}, {**row, "a": 3}], 2)
    bulks = crate.render("dim", plan)
    assert [b.counts for b in bulks] == ["expired", "inserted"]
    assert bulks[0].stmt == (
        'UPDATE "dim" SET "valid_to" = ?, "is_current" = false '
        'WHERE "a" = ? AND "b" = ? AND "valid_from" = ?'
    )
    assert bulks[0].bulk_args == ((2, 1, "x", 1), (2, 2, "x", 1))
    assert bulks[1].stmt.endswith("ON CONFLICT DO NOTHING") and len(bulks[1].bulk_args) == 2
    assert all('WHERE "is_current"' not in b.stmt for b in bulks)


def test_oracle_estimates_and_state_sql():
    """Estimate / explain SQL and state statements have matching bind names."""
    assert ora.estimate_table_sql().params == ("owner", "table")
    explain, read_back = ora.explain_sql("aetl_1", "SELECT 1 FROM dual")
    assert explain.text.startswith("EXPLAIN PLAN SET STATEMENT_ID = 'aetl_1' FOR")
    assert read_back.params == ("statement_id",)
    with pytest.raises(ValueError):
        ora.explain_sql("x'; --", "SELECT 1 FROM dual")
    assert pg.parse_explain_rows('[{"Plan": {"Plan Rows": 42}}]') == 42
    for st in (state_sql.START_RUN, state_sql.CHECKPOINT_CHUNK, state_sql.UPDATE_RUN):
        assert max(int(n) for n in re.findall(r"\$(\d+)", st.text)) == len(st.params)
    assert rowcount_from_status("UPDATE 12") == 12 and rowcount_from_status("INSERT 0 5") == 5


def test_after_all_drops_only_the_statements_of_versions_at_the_as_of():
    """after_all: no same-as-of DELETE; no in-place UPDATE unless an overwrite column needs it."""
    plain = ScdSpec(type=2, business_key=KEY, deletes="expire").resolve(NAMES)
    chunk = CHUNKS[1]
    for c, in_place in ((plain, False), (cols(2, "expire"), True)):
        every = [s.text for s in pg.merge_statements("dw.dim", "stg", c, KEY, chunk)]
        fewer = [s.text for s in pg.merge_statements("dw.dim", "stg", c, KEY, chunk,
                                                     after_all=True)]  # fmt: skip
        assert any(t.startswith("WITH x AS (DELETE") for t in every)
        assert not any(t.startswith("WITH x AS (DELETE") for t in fewer)
        assert set(fewer) < set(every)
        updates = [t for t in fewer if t.startswith("WITH x AS (UPDATE")]
        assert any(' AS t SET "name" = s."name"' in t for t in updates) is in_place
    type1 = cols(1, "delete")
    assert pg.merge_statements("dw.dim", "stg", type1, KEY, chunk, after_all=True) == (
        pg.merge_statements("dw.dim", "stg", type1, KEY, chunk)
    )


def test_landed_before_takes_only_its_own_loaders_checkpoint_with_the_same_bounds():
    """landed_before: own loader + same bounds + counts -> (rows, counts); else None."""
    bounds = '{"index": 3, "lower": [["i", 1]], "upper": null}'
    counts = state_sql.chunk_counts({"inserted": 7, "updated": 2}, 1)
    own = state_sql.landed_before((bounds, 10, counts, "me"), bounds.replace(" ", ""), "me")
    assert own == (10, {"inserted": 7, "updated": 2, "expired": 0, "deleted": 0, "rejected": 1})
    assert state_sql.landed_before((bounds, 10, counts, "other"), bounds, "me") is None
    assert state_sql.landed_before((bounds, 10, counts, None), bounds, "me") is None
    assert state_sql.landed_before((bounds, 10, None, "me"), bounds, "me") is None
    moved = bounds.replace('["i", 1]', '["i", 2]')
    assert state_sql.landed_before((moved, 10, counts, "me"), bounds, "me") is None
