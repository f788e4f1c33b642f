"""The dry run's statements per target and mode are the ones the drivers run."""

from __future__ import annotations

import dataclasses

import pytest

from async_etl.core import scd_sql_crate as crate
from async_etl.core import scd_sql_oracle as ora
from async_etl.core import scd_sql_pg as pg
from async_etl.core.chunks import Chunk
from async_etl.core.dryrun import ChunkRead, JobFacts, finish_statements, report, target_statements
from async_etl.core.specs import ScdSpec

COLS1 = ScdSpec(type=1, business_key=("id",)).resolve(["id", "v"])
CHUNK = Chunk(0, None, (10,))


def facts(dialect: str, mode: str) -> JobFacts:
    """A one-chunk job into ``dw.t``."""
    read = ChunkRead(CHUNK, 'SELECT *\nFROM "src"."t"', (10,))
    return JobFacts(job="j", mode=mode, dialect=dialect, table="dw.t", source="s", target="t",
                    as_of="T", run="new", estimate=5, workers=1, cols=COLS1, key=("id",),
                    names=("id", "v"), chunks=(read,))  # fmt: skip


def test_pg_merge_lists_the_drivers_merge_statements() -> None:
    """PostgreSQL merge: the emptiness probe, the direct COPY, staging and the merge."""
    got = target_statements(facts("postgresql", "merge"), CHUNK)
    merge = [st.text for st in pg.merge_statements("dw.t", pg.STAGING, COLS1, ("id",), CHUNK)]
    assert got[0].startswith("SELECT NOT EXISTS") and got[-len(merge) :] == merge
    assert 'COPY "dw"."t" ("id", "v") FROM STDIN' in got[2]


def test_pg_append_copies_straight_into_the_target() -> None:
    """PostgreSQL append: one COPY into the target, nothing else."""
    assert target_statements(facts("postgresql", "append"), CHUNK) == [
        'COPY "dw"."t" ("id", "v") FROM STDIN (FORMAT binary)'
    ]


@pytest.mark.parametrize("dialect", ["postgresql", "cratedb", "oracle"])
def test_full_refresh_writes_the_new_table_and_ends_with_a_swap(dialect: str) -> None:
    """Every dialect's full refresh loads the new table; the report ends with the swap."""
    f = facts(dialect, "full_refresh")
    body = " ".join(target_statements(f, CHUNK)).upper()
    assert "T_ETL_NEW" in body
    lines = report(f)
    assert lines[-len(finish_statements(f)) - 1] == "  after the last chunk:"
    assert any("SWAP" in s or "RENAME" in s for s in finish_statements(f))


def test_crate_and_oracle_statements_come_from_their_sql_modules() -> None:
    """CrateDB reads current rows with the driver's query; Oracle merges with its MERGE."""
    cr = target_statements(facts("cratedb", "merge"), CHUNK)
    assert crate.current_rows_sql("dw.t", COLS1, ("id",), CHUNK).text in cr
    orac = target_statements(facts("oracle", "merge"), CHUNK)
    assert orac[1:] == [st.text for st in ora.merge_statements("dw.t", "t_stg", COLS1, ("id",),
                                                               CHUNK)]  # fmt: skip


def test_report_indents_multi_line_queries() -> None:
    """A multi-line source query stays under its chunk line; no mode writes after a merge."""
    lines = "\n".join(report(facts("postgresql", "merge"))).splitlines()
    assert "  chunk 0 [-inf, (10,)): SELECT *" in lines
    assert '      FROM "src"."t"' in lines
    assert finish_statements(facts("postgresql", "merge")) == []


def test_pg_full_refresh_copies_without_index_and_builds_it_before_the_swap() -> None:
    """PostgreSQL full refresh: COPY into the index-less new table; indexes built, then swap."""
    f = facts("postgresql", "full_refresh")
    got = target_statements(f, CHUNK)
    assert got[-1] == 'COPY "dw"."t_etl_new" ("id", "v") FROM STDIN (FORMAT binary)'
    assert not any(s.startswith("SELECT NOT EXISTS") for s in got)
    done = finish_statements(f)
    assert done[0] == pg.index_ddl("dw.t_etl_new", COLS1)[0].text
    assert done[1].startswith("-- when the target exists") and "core.refresh_pg" in done[1]
    assert done[2].startswith("DROP TABLE")


def test_pg_type2_full_refresh_copies_the_source_columns_and_drops_the_default() -> None:
    """Type 2 full refresh: the COPY names the source's columns; the swap drops the default."""
    cols2 = ScdSpec(type=2, business_key=("id",)).resolve(["id", "v"])
    f = dataclasses.replace(facts("postgresql", "full_refresh"), cols=cols2)
    got = target_statements(f, CHUNK)
    assert got[-1] == 'COPY "dw"."t_etl_new" ("id", "v") FROM STDIN (FORMAT binary)'
    assert got[-2].startswith(f"-- {cols2.valid_from} / {cols2.valid_to} / {cols2.is_current}:")
    done = finish_statements(f)
    drop = pg.drop_initial_default_sql("dw.t_etl_new", cols2).text
    assert done[done.index(drop) + 1].startswith("DROP TABLE")
