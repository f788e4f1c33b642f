"""Duplicated business keys in a chunk's source: detection and holding the key as it is."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from async_etl.core import scd_sql_oracle as ora
from async_etl.core import scd_sql_pg as pg
from async_etl.core.duplicates import (
    duplicate_keys,
    duplicate_message,
    duplicate_reason,
    hold_duplicates,
)
from async_etl.core.scd import Row, apply_plan, diff
from async_etl.core.specs import ScdColumns, ScdSpec


def _cols(kind: int) -> ScdColumns:
    deletes = "expire" if kind == 2 else "delete"
    spec = ScdSpec(type=kind, business_key=("id",), deletes=deletes)  # type: ignore[arg-type]
    return spec.resolve(["id", "val"])


def test_duplicate_keys_counts_in_first_occurrence_order() -> None:
    """Only keys seen more than once, with their counts, first seen first."""
    assert duplicate_keys([(3,), (1,), (3,), (2,), (1,), (3,)]) == {(3,): 3, (1,): 2}
    assert list(duplicate_keys([(3,), (1,), (3,), (1,)])) == [(3,), (1,)]
    assert duplicate_keys([(1,), (2,)]) == {}


def test_messages_name_the_key_and_count() -> None:
    """The fail message names each key column and the count; the reason gives the count."""
    assert duplicate_message({"id": 1, "b": "x"}, 2) == (
        "business key (id=1, b='x') appears 2 times in the source"
    )
    assert duplicate_reason(3).startswith("duplicate business key: 3 source rows have it")


@pytest.mark.parametrize("kind", [2, 1])
@pytest.mark.parametrize("order", [["b2", "b3"], ["b3", "b2"]])
def test_issue_case_keeps_the_current_version(kind: int, order: list[str]) -> None:
    """Key 1 = 'a' then (1, b2), (1, b3): nothing changes for key 1, whatever the order."""
    cols = _cols(kind)
    target = apply_plan([], diff(cols, [], [{"id": 1, "val": "a"}, {"id": 2, "val": "x"}], 1))
    source = [{"id": 1, "val": v} for v in order] + [{"id": 2, "val": "y"}, {"id": 5, "val": "n"},
                                                     {"id": 5, "val": "m"}]  # fmt: skip
    rows, held = hold_duplicates(cols, source, target)
    assert held == {(1,): 2, (5,): 2}
    assert sorted((r["id"], r["val"]) for r in rows) == [(1, "a"), (2, "y")]
    after = apply_plan(target, diff(cols, target, rows, 2))
    assert [r for r in after if r["id"] == 1] == [r for r in target if r["id"] == 1]
    assert not any(r["id"] == 5 for r in after)


def test_without_duplicates_rows_pass_through() -> None:
    """No duplicated key: the same rows, nothing held."""
    rows = [{"id": 1, "val": "a"}, {"id": 2, "val": None}]
    assert hold_duplicates(_cols(2), rows, []) == (rows, {})


source_rows = st.lists(
    st.fixed_dictionaries({"id": st.integers(0, 5), "val": st.sampled_from([None, "p", "q"])}),
    max_size=12,
)


@given(first=source_rows, second=source_rows, kind=st.sampled_from([1, 2]))
def test_held_keys_never_change(first: list[Row], second: list[Row], kind: int) -> None:
    """Any history: after holding, a duplicated key's rows are exactly what they were."""
    cols = _cols(kind)
    start, _ = hold_duplicates(cols, first, [])
    target = apply_plan([], diff(cols, [], start, 1))
    rows, held = hold_duplicates(cols, second, target)
    after = apply_plan(target, diff(cols, target, rows, 2))
    for key in held:
        assert [r for r in after if (r["id"],) == key] == [r for r in target if (r["id"],) == key]
    assert duplicate_keys((r["id"],) for r in rows) == {}


def test_oracle_unstages_every_row_of_a_key() -> None:
    """Oracle: one DELETE per duplicated key, bound by the key columns in order."""
    cols = ScdSpec(business_key=("a", "b")).resolve(["a", "b", "v"])
    st = ora.unstage_keys_sql("dw.t_stg", cols)
    assert st.text == 'DELETE FROM "DW"."T_STG" WHERE "A" = :1 AND "B" = :2'
    assert st.args({"a": 1, "b": "x"}) == [1, "x"]


@pytest.mark.parametrize("kind", [2, 1])
def test_pg_holds_duplicates_as_the_current_row(kind: int) -> None:
    """PostgreSQL: duplicated keys found by GROUP BY; their rows replaced by the current row."""
    cols = ScdSpec(type=kind, business_key=("a", "b")).resolve(["a", "b", "v"])  # type: ignore[arg-type]
    assert pg.duplicate_keys_sql("stg", cols).text == (
        'SELECT "a", "b", count(*) AS _async_etl_rows FROM "stg" GROUP BY "a", "b" '
        "HAVING count(*) > 1 "
        'ORDER BY "a", "b"'
    )
    hold = pg.hold_duplicates_sql("dw.t", "stg", cols).text
    assert 'DELETE FROM "stg" AS s WHERE (s."a", s."b") IN (SELECT "a", "b" FROM "stg" ' in hold
    assert 'INSERT INTO "stg" ("a", "b", "v") SELECT t."a", t."b", t."v" FROM "dw"."t" AS t' in hold
    assert ('t."is_current" AND' in hold) == (kind == 2)
