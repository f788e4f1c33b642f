"""The pure SCD model: idempotence, invariants, crash-prefix convergence, chunk independence."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from async_etl.core.chunks import plan_chunks, row_in_chunk
from async_etl.core.scd import (
    DeleteVersion,
    ExpireVersion,
    InsertVersion,
    Row,
    UpdateVersion,
    apply_plan,
    diff,
    history_problems,
    same,
)
from async_etl.core.specs import ScdColumns, ScdSpec
from async_etl.errors import ConfigError, DataError

COLUMNS = ("a", "b", "name", "city", "tier")


def cols_for(kind: int = 2, deletes: str = "expire") -> ScdColumns:
    two = kind == 2
    spec = ScdSpec(
        type=kind,  # type: ignore[arg-type]
        business_key=("a", "b"),
        tracked=("name", "city") if two else None,
        overwrite=("tier",) if two else (),
        deletes=deletes,  # type: ignore[arg-type]
    )
    return spec.resolve(COLUMNS)


source_row = st.fixed_dictionaries(
    {
        "a": st.integers(0, 3),
        "b": st.sampled_from(["x", "y"]),
        "name": st.sampled_from([None, "n1", "n2"]),
        "city": st.sampled_from([None, "p", "q"]),
        "tier": st.sampled_from([None, 1, 2]),
    }
)


def dedupe(rows: list[Row]) -> list[Row]:
    return list({(r["a"], r["b"]): r for r in rows}.values())


histories = st.lists(st.lists(source_row, max_size=8).map(dedupe), min_size=1, max_size=5)


def run_history(cols: ScdColumns, history: list[list[Row]]) -> list[Row]:
    target: list[Row] = []
    for t, source in enumerate(history, start=1):
        target = apply_plan(target, diff(cols, target, source, t))
    return target


def current(rows: list[Row], cols: ScdColumns) -> dict[tuple[Any, ...], Row]:
    return {(r["a"], r["b"]): r for r in rows if cols.type == 1 or r[cols.is_current]}


@pytest.mark.parametrize("deletes", ["expire", "ignore"])
@given(history=histories)
def test_type2_history_invariants_and_idempotence(deletes: str, history: list[list[Row]]):
    """After each run: invariants hold, current rows mirror the source, a re-run is a no-op."""
    cols = cols_for(2, deletes)
    target: list[Row] = []
    for t, source in enumerate(history, start=1):
        before = current(target, cols)
        target = apply_plan(target, diff(cols, target, source, t))
        assert history_problems(target, cols, contiguous=deletes == "ignore") == []
        again = diff(cols, target, source, t)
        assert again.actions == () and apply_plan(target, again) == target
        now = current(target, cols)
        for row in source:
            assert all(same(now[(row["a"], row["b"])][c], row[c]) for c in COLUMNS)
        gone = set(before) - {(r["a"], r["b"]) for r in source}
        for key in gone:
            assert (key in now) == (deletes == "ignore")


@given(history=histories, cut=st.integers(0, 50))
def test_crash_after_any_prefix_converges(history: list[list[Row]], cut: int):
    """Applying a prefix of a plan, then the whole plan (or a fresh diff), gives the same state."""
    cols = cols_for(2, "expire")
    target = run_history(cols, history[:-1])
    plan = diff(cols, target, history[-1], len(history))
    want = apply_plan(target, plan)
    partial = apply_plan(target, type(plan)(plan.cols, plan.as_of, plan.actions[:cut]))
    assert history_problems(partial, cols) == []  # expiries run before inserts
    assert apply_plan(partial, plan) == want
    assert apply_plan(partial, diff(cols, partial, history[-1], len(history))) == want


@given(history=histories, bounds=st.lists(st.tuples(st.integers(0, 3), st.sampled_from("xy"))))
def test_chunked_diff_equals_whole_diff(history: list[list[Row]], bounds: list[tuple[int, str]]):
    """Diffing chunk by chunk (rows filtered by key range) equals diffing everything at once."""
    cols = cols_for(2, "expire")
    target = run_history(cols, history[:-1])
    source, t = history[-1], len(history)
    whole = apply_plan(target, diff(cols, target, source, t))
    chunked = target
    for chunk in plan_chunks(bounds).chunks:

        def inside(r: Row, chunk: Any = chunk) -> bool:
            return row_in_chunk((r["a"], r["b"]), chunk)

        plan = diff(cols, [r for r in chunked if inside(r)], [r for r in source if inside(r)], t)
        chunked = apply_plan(chunked, plan)
    assert chunked == whole


@settings(max_examples=50)
@given(history=histories)
def test_type1_upsert_and_delete(history: list[list[Row]]):
    """Type 1 mirrors the latest source exactly; unchanged rows produce no action."""
    cols = cols_for(1, "delete")
    target = run_history(cols, history)
    assert sorted(target, key=lambda r: (r["a"], r["b"])) == sorted(
        history[-1], key=lambda r: (r["a"], r["b"])
    )
    assert diff(cols, target, history[-1], 99).actions == ()


def test_change_kinds():
    """Tracked change expires + inserts; overwrite-only change updates in place; NULL rules."""
    cols = cols_for()
    row = {"a": 1, "b": "x", "name": None, "city": "p", "tier": 1}
    v1 = apply_plan([], diff(cols, [], [row], 10))
    assert diff(cols, v1, [dict(row)], 20).actions == ()  # NULL -> NULL is no change
    plan = diff(cols, v1, [{**row, "tier": 2}], 20)
    assert plan.actions == (UpdateVersion((1, "x"), 10, {"name": None, "city": "p", "tier": 2}),)
    plan = diff(cols, v1, [{**row, "name": "n"}], 20)  # NULL -> value is a change
    assert isinstance(plan.actions[0], ExpireVersion) and isinstance(plan.actions[1], InsertVersion)
    v2 = apply_plan(v1, plan)
    assert [(r["valid_from"], r["valid_to"], r["is_current"]) for r in v2] == [
        (10, 20, False),
        (20, None, True),
    ]
    assert plan.counts() == {"inserted": 1, "updated": 0, "expired": 1, "deleted": 0}


def test_composite_keys_compare_column_by_column():
    """Keys (1, '2x') and (12, 'x') stay distinct: no concatenation."""
    cols = cols_for()
    rows = [
        {"a": 1, "b": "2x", "name": "p", "city": None, "tier": None},
        {"a": 12, "b": "x", "name": "q", "city": None, "tier": None},
    ]
    assert len(apply_plan([], diff(cols, [], rows, 1))) == 2


def test_expire_then_resurrect_makes_new_version():
    """A key absent at T2 is expired; back at T3 it gets a new version from T3."""
    cols = cols_for()
    row = {"a": 1, "b": "x", "name": "n", "city": "p", "tier": 1}
    target = run_history(cols, [[row], [], [row]])
    assert [(r["valid_from"], r["valid_to"], r["is_current"]) for r in target] == [
        (1, 2, False),
        (3, None, True),
    ]


def test_same_as_of_rewrites_instead_of_zero_length_versions():
    """Re-running T with a changed source updates or deletes the version written at T."""
    cols = cols_for()
    row = {"a": 1, "b": "x", "name": "n", "city": "p", "tier": 1}
    base = run_history(cols, [[row], [{**row, "name": "m"}]])
    plan = diff(cols, base, [{**row, "name": "z"}], 2)
    assert plan.actions == (UpdateVersion((1, "x"), 2, {"name": "z", "city": "p", "tier": 1}),)
    plan = diff(cols, base, [], 2)
    assert plan.actions == (DeleteVersion((1, "x"), 2),)
    after = apply_plan(base, plan)
    assert history_problems(after, cols) == [] and not any(r["is_current"] for r in after)


def test_errors():
    """NULL and duplicate business keys raise DataError; an as-of in the past raises ConfigError."""
    cols = cols_for()
    row = {"a": 1, "b": "x", "name": "n", "city": "p", "tier": 1}
    with pytest.raises(DataError, match="NULL"):
        diff(cols, [], [{**row, "b": None}], 1)
    with pytest.raises(DataError, match="twice"):
        diff(cols, [], [row, dict(row)], 1)
    with pytest.raises(ConfigError, match="rewrite history"):
        diff(cols, apply_plan([], diff(cols, [], [row], 5)), [row], 4)


def test_resolve_checks_columns():
    """ScdSpec.resolve defaults tracked to the non-key columns and refuses unknown ones."""
    spec = ScdSpec(business_key=("a", "b"), overwrite=("tier",))
    assert spec.resolve(COLUMNS).tracked == ("name", "city")
    with pytest.raises(ConfigError, match="not among the source columns"):
        ScdSpec(business_key=("zz",)).resolve(COLUMNS)
    with pytest.raises(ConfigError, match="already has column"):
        ScdSpec(business_key=("a",)).resolve((*COLUMNS, "valid_from"))
