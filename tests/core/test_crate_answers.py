from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from async_etl.core.crate_answers import count_of, next_id, query_rows, scalar
from async_etl.core.crate_protocol import Response, parse_response
from async_etl.errors import LoadError

STMT = 'SELECT count(*) FROM "t" WHERE "id" >= ? AND "id" < ?'
WHERE = "CrateDB http://h:4200"

values = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5))
rows = st.lists(st.lists(values, max_size=3).map(tuple), max_size=3).map(tuple)
cols = st.lists(st.sampled_from(["count(*)", "a", "b"]), max_size=3).map(tuple)


def _answer(doc: dict[str, Any]) -> Response:
    return parse_response(200, orjson.dumps(doc))


def test_issue_case_empty_answer_to_a_count_is_a_one_line_load_error() -> None:
    """{"cols": [], "rows": []} to the reconcile count: LoadError naming the statement."""
    with pytest.raises(LoadError) as info:
        count_of(_answer({"cols": [], "rows": []}), WHERE, STMT)
    message = info.value.message
    assert "\n" not in message and STMT in message and '"rows":[]' in message


@given(cols, rows, st.one_of(st.none(), st.integers(-2, 3)))
def test_count_of_any_shape_is_a_count_or_a_load_error(
    c: tuple[str, ...], r: tuple[tuple[Any, ...], ...], rowcount: int | None
) -> None:
    """Whatever shape comes back, count_of returns the count or raises one-line LoadError."""
    response = Response(status=200, cols=c, rows=r, rowcount=rowcount)
    well_formed = (
        len(c) == 1
        and len(r) == 1
        and len(r[0]) == 1
        and isinstance(r[0][0], int)
        and not isinstance(r[0][0], bool)
        and r[0][0] >= 0
    )
    try:
        got = count_of(response, WHERE, STMT)
    except LoadError as exc:
        assert not well_formed
        assert "\n" not in exc.message and "odd answer" in exc.message and WHERE in exc.message
    else:
        assert well_formed and got == r[0][0]


@given(cols, rows)
def test_query_rows_accepts_only_rows_as_wide_as_cols(
    c: tuple[str, ...], r: tuple[tuple[Any, ...], ...]
) -> None:
    """query_rows returns rows only when every one is as wide as cols, else LoadError."""
    response = Response(status=200, cols=c, rows=r)
    ok = all(len(row) == len(c) for row in r)
    try:
        assert query_rows(response, WHERE, "SELECT a FROM t") == r
    except LoadError:
        assert not ok
    else:
        assert ok


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"cols": ["max(id)"], "rows": [[None]]}, 1),
        ({"cols": ["max(id)"], "rows": [[41]]}, 42),
        ({"cols": ["max(id)"], "rows": [[41.0]]}, 42),
    ],
)
def test_next_id_from_max_id(doc: dict[str, Any], expected: int) -> None:
    """One past max(id), 1 for an empty table."""
    assert next_id(_answer(doc), WHERE, 'SELECT max("id") FROM "t"') == expected


@pytest.mark.parametrize(
    "doc",
    [
        {"cols": [], "rows": []},
        {"cols": ["max(id)"], "rows": []},
        {"cols": ["max(id)"], "rows": [["41"]]},
        {"cols": ["max(id)"], "rows": [[True]]},
        {"rowcount": 1},
    ],
)
def test_next_id_refuses_odd_answers(doc: dict[str, Any]) -> None:
    """An answer to max(id) that is not one number or null: one-line LoadError."""
    with pytest.raises(LoadError, match="odd answer"):
        next_id(_answer(doc), WHERE, 'SELECT max("id") FROM "t"')


def test_scalar_reads_one_value() -> None:
    """scalar returns the single value of a one-row, one-column answer."""
    assert scalar(_answer({"cols": ["x"], "rows": [["v"]]}), WHERE, "SELECT x") == "v"
