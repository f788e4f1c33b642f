"""The statements that rebuild an existing PostgreSQL target's indexes on its new table."""

from __future__ import annotations

import pytest

from async_etl.core.refresh_pg import (
    TargetIndex,
    blockers_problem,
    index_statements,
    like_sql,
    rename_statements,
)

PKEY = TargetIndex("dr_pkey", "CREATE UNIQUE INDEX dr_pkey ON dw.dr USING btree (id)", True,
                   "p", "dw.dr", "dr_pkey")  # fmt: skip
ODD = TargetIndex("My Idx", 'CREATE INDEX "My Idx" ON ONLY dw.dr USING btree (b) WHERE (c > 0)',
                  False, "", "dw.dr", '"My Idx"')  # fmt: skip
ENGINE = TargetIndex("dr_bk", "CREATE UNIQUE INDEX dr_bk ON dw.dr USING btree (id)", True, "",
                     "dw.dr", "dr_bk")  # fmt: skip


def test_index_statements_rebuild_each_index_on_the_new_table_under_a_temporary_name() -> None:
    """Each index is built on the new table; a primary key is attached; the engine's skipped."""
    out = [s.text for s in index_statements("dw.dr_etl_new", [PKEY, ODD, ENGINE], ["dr_bk"])]
    assert len(out) == 2
    assert out[0].startswith('CREATE UNIQUE INDEX IF NOT EXISTS "dr_pkey_etl_new" ON '
                             '"dw"."dr_etl_new" USING btree (id); DO $etl$')  # fmt: skip
    assert 'ADD CONSTRAINT "dr_pkey_etl_new" PRIMARY KEY USING INDEX "dr_pkey_etl_new"' in out[0]
    assert out[1] == ('CREATE INDEX IF NOT EXISTS "My Idx_etl_new" ON "dw"."dr_etl_new" '
                      "USING btree (b) WHERE (c > 0)")  # fmt: skip
    renames = [s.text for s in rename_statements("dw.dr", [PKEY, ODD, ENGINE], ["dr_bk"])]
    assert renames == [
        'ALTER INDEX IF EXISTS "dw"."dr_pkey_etl_new" RENAME TO "dr_pkey"',
        'ALTER INDEX IF EXISTS "dw"."My Idx_etl_new" RENAME TO "My Idx"',
    ]


def test_a_deferrable_constraint_is_attached_deferrable() -> None:
    """A DEFERRABLE INITIALLY DEFERRED unique constraint is attached to its index as it was."""
    unique = TargetIndex("dr_b", "CREATE UNIQUE INDEX dr_b ON dw.dr USING btree (b)", True, "u",
                         "dw.dr", "dr_b", deferrable=True, deferred=True)  # fmt: skip
    (out,) = [s.text for s in index_statements("dw.dr_etl_new", [unique], [])]
    assert ('ADD CONSTRAINT "dr_b_etl_new" UNIQUE USING INDEX "dr_b_etl_new" DEFERRABLE '
            "INITIALLY DEFERRED; END IF") in out  # fmt: skip
    (out,) = [s.text for s in index_statements("dw.dr_etl_new", [PKEY], [])]
    assert 'PRIMARY KEY USING INDEX "dr_pkey_etl_new"; END IF' in out


def test_an_index_definition_it_cannot_read_is_refused() -> None:
    """A definition not in pg_get_indexdef's shape raises instead of building something else."""
    bad = TargetIndex("x", "CREATE INDEX x ON other.t USING btree (a)", False, "", "dw.dr", "x")
    with pytest.raises(ValueError, match="cannot rebuild index x"):
        index_statements("dw.dr_etl_new", [bad], [])


def test_like_sql_copies_all_but_the_indexes() -> None:
    """The new table is made from the target's definition, without its indexes."""
    assert like_sql("dw.dr_etl_new", "dw.dr").text == (
        'CREATE TABLE "dw"."dr_etl_new" (LIKE "dw"."dr" INCLUDING ALL EXCLUDING INDEXES)'
    )


def test_blockers_problem_names_everything_lost_in_one_line() -> None:
    """Nothing lost: None; else one line naming each thing and the modes that keep them."""
    assert blockers_problem([]) is None
    line = blockers_problem(["rule r", "trigger t"])
    assert line is not None and "\n" not in line
    assert "would not keep: rule r; trigger t;" in line and 'mode = "merge"' in line
