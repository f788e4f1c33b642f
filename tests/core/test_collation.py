"""The chunk collation: which one a run compares keys in, and that every dialect's SQL uses it."""

from __future__ import annotations

import re

from async_etl.core import scd_sql_crate as crate
from async_etl.core import scd_sql_oracle as ora
from async_etl.core import scd_sql_pg as pg
from async_etl.core.chunks import plan_chunks
from async_etl.core.collation import BINARY, KeyCollation, collated, is_text_type, key_order
from async_etl.core.specs import ScdSpec

ICU = KeyCollation("en-x-icu", "en-x-icu")
DEFAULT = KeyCollation("default", "en_US.utf8")
UNRESOLVED = KeyCollation("default", None)
COLS2 = ScdSpec(type=2, business_key=("k", "n"), deletes="expire").resolve(["k", "n", "v"])
COLS1 = ScdSpec(type=1, business_key=("k", "n"), deletes="delete").resolve(["k", "n", "v"])
KEY = ("k", "n")
MIDDLE = plan_chunks([("m", 1), ("M", 1)], collate=("en-x-icu", None)).chunks[1]


def test_same_database_uses_each_columns_own_collation():
    """Same PostgreSQL database: the column's own collation, so its index serves the range."""
    got = key_order([ICU, None], target=frozenset({"C"}), same_database=True)
    assert got == ("en-x-icu", None)
    assert key_order([DEFAULT], target=frozenset(), same_database=True) == ("default",)


def test_other_database_uses_the_portable_name_when_the_target_has_it():
    """Another database: ``default`` resolved to the real name, if the target knows it."""
    target = frozenset({"C", "en_US.utf8", "en-x-icu"})
    assert key_order([DEFAULT, None], target=target, same_database=False) == ("en_US.utf8", None)
    assert key_order([ICU], target=target, same_database=False) == ("en-x-icu",)


def test_falls_back_to_code_point_order_everywhere_else():
    """Binary-only targets, unresolved defaults and missing collations all give ``C``."""
    assert key_order([ICU, None], target=None, same_database=False) == (BINARY, None)
    assert key_order([UNRESOLVED], target=frozenset({"C"}), same_database=False) == (BINARY,)
    partly = key_order([ICU, DEFAULT], target=frozenset({"C", "en-x-icu"}), same_database=False)
    assert partly == (BINARY, BINARY)
    assert key_order([None, None], target=None, same_database=False) == (None, None)


def test_text_types_and_quoting():
    """String type names are recognised; collation names are quoted (a quote doubled)."""
    assert all(map(is_text_type, ["text", "character varying(20)", "character(3)", "name"]))
    assert not any(map(is_text_type, ["integer", "bigint", "timestamp with time zone", "uuid"]))
    assert collated("t.k", 'we"ird') == 't.k COLLATE "we""ird"'
    assert collated("t.k", None) == "t.k"


def _ranges(text: str) -> list[str]:
    """Every range comparison of the key in a statement."""
    return re.findall(r"\([^()]*\) (?:>=|<) \(\$\d+, \$\d+\)", text)


def test_pg_merge_target_bounds_compare_in_the_chunk_collation():
    """Every target-side range of the type 2 merge (incl. delete detection) says COLLATE."""
    sts = pg.merge_statements("dw.dim", "stg", COLS2, KEY, MIDDLE)
    ranged = [st.text for st in sts if "lo0" in st.params]
    assert len(ranged) >= 4  # update, expire, expire absent, delete absent, insert
    for text in ranged:
        found = _ranges(text)
        assert found and all('COLLATE "en-x-icu"' in r for r in found), text
    for st in pg.merge_statements("dw.dim", "stg", COLS1, KEY, MIDDLE):
        assert all('COLLATE "en-x-icu"' in r for r in _ranges(st.text))
    empty = pg.range_is_empty_sql("dw.dim", KEY, MIDDLE).text
    assert '(t."k" COLLATE "en-x-icu", t."n") >= ($1, $2)' in empty
    assert '(t."k" COLLATE "en-x-icu", t."n") < ($3, $4)' in empty
    assert 'COLLATE "en-x-icu"' in pg.current_rows_sql("dw.dim", COLS2, KEY, MIDDLE).text


def test_pg_source_sql_sorts_and_reads_in_the_chunk_collation():
    """ntile, row_number, the chunk read and its ORDER BY all name the collation."""
    cuts = pg.boundaries_sql(None, "src.s", KEY, ("en-x-icu", None)).text
    assert 'ORDER BY "k" COLLATE "en-x-icu", "n")' in cuts
    assert 'ORDER BY q."k" COLLATE "en-x-icu", q."n")' in cuts
    read = pg.extract_sql(None, "src.s", KEY, MIDDLE).text
    assert read.endswith('ORDER BY q."k" COLLATE "en-x-icu", q."n"')
    assert '(q."k" COLLATE "en-x-icu", q."n") >= ($1, $2)' in read
    assert "COLLATE" not in pg.boundaries_sql(None, "src.s", KEY).text


def test_pg_ddl_gives_key_columns_the_chunk_collation():
    """Target and staging key columns carry the collation; ``default`` and others add none."""
    columns = [("k", "text"), ("n", "integer"), ("v", "text")]
    collate = {"k": "en-x-icu", "n": None}
    table = pg.target_ddl("dw.dim", columns, COLS2, collate)[1].text
    assert '"k" text COLLATE "en-x-icu" NOT NULL' in table
    assert '"v" text,' in table and '"n" integer NOT NULL' in table
    stage = pg.staging_ddl("stg", columns, collate=collate).text
    assert '"k" text COLLATE "en-x-icu"' in stage and '"v" text' in stage
    plain = pg.target_ddl("dw.dim", columns, COLS2, {"k": "default"})[1].text
    assert "COLLATE" not in plain


def test_legacy_plans_without_collations_add_no_collate():
    """A plan stored before collations were recorded compares in the columns' own ones."""
    chunk = plan_chunks([("m", 1), ("M", 1)]).chunks[1]
    assert all("COLLATE" not in st.text for st in pg.merge_statements("t", "s", COLS2, KEY, chunk))


def test_oracle_sessions_sort_and_compare_in_binary():
    """Oracle job sessions use code-point order for both ORDER BY and comparisons."""
    text = ora.SESSION_SQL.text
    assert "NLS_SORT = 'BINARY'" in text and "NLS_COMP = 'BINARY'" in text
    assert "TIME_ZONE = 'UTC'" in text
    binary = plan_chunks([("m", 1), ("n", 1)], collate=(BINARY, None)).chunks[1]
    for st in ora.merge_statements("dw.dim", "stg", COLS2, KEY, binary):
        assert "COLLATE" not in st.text
    assert "COLLATE" not in ora.extract_sql(None, "src.s", KEY, binary).text


def test_crate_bounds_compare_in_its_own_byte_order():
    """CrateDB SQL carries no COLLATE: it compares strings by UTF-8 bytes, i.e. code points."""
    binary = plan_chunks([("m",), ("n",)], collate=(BINARY,)).chunks[1]
    text = crate.current_rows_sql("dw.dim", COLS2, ("k",), binary).text
    assert '"k" >= ?' in text and '"k" < ?' in text and "COLLATE" not in text
