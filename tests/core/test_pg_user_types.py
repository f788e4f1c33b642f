"""core.pg_user_types: a source's user types against a target's, by definition."""

from __future__ import annotations

import pytest

from async_etl.core.pg_user_types import UserType, user_type_problem, user_types_from_rows

SOURCE = {
    "mood": UserType("mood", "e", ("a", "b", "c")),
    "pair": UserType("pair", "c", ('"My x" integer', "m mood")),
    "posint": UserType("posint", "d", ("integer", "CHECK ((VALUE > 0))")),
    "ext": UserType("ext", "b"),
}
"""The source's types: an enum, a composite holding it, a domain, an extension's type."""


@pytest.mark.parametrize(
    ("column", "target", "needle"),
    [
        (("m", "mood"), {"mood": UserType("mood", "e", ("a", "b"))},
         "column m has type mood: enum mood in the target lacks label 'c'"),
        (("m", "mood"), {"mood": UserType("mood", None)},
         "column m has type mood, which the target database does not have"),
        (("m", "mood"), {"mood": UserType("mood", "c", ("x integer",))},
         "mood: an enum in the source, a composite in the target"),
        (("p", "pair[]"), {"pair": SOURCE["pair"], "mood": UserType("mood", "e", ("c",))},
         "column p has type pair[]: enum mood in the target lacks label 'a'"),
        (("p", "pair"), {"pair": UserType("pair", "c", ("m mood", '"My x" integer'))},
         "composite pair is (m mood, \"My x\" integer) in the target"),
        (("d", "posint"), {"posint": UserType("posint", "d", ("bigint",))},
         "domain posint is over bigint in the target, integer in the source"),
        (("d", "posint"), {"posint": UserType("posint", "d", ("integer", "NOT NULL"))},
         "domain posint in the target has NOT NULL, which the source's lacks"),
        (("k", "mood"), {"mood": UserType("mood", "e", ("b", "a", "c"))},
         "enum mood orders its labels (a, b, c) otherwise in the target"),
    ],
)  # fmt: skip
def test_an_unlike_type_is_named_with_its_difference(
    column: tuple[str, str], target: dict[str, UserType], needle: str
) -> None:
    """Each difference that would fail or change a value comes back as one clause."""
    problem = user_type_problem([column], SOURCE, target, ordered=("k",))
    assert problem is not None and needle in problem, problem


def test_alike_types_pass() -> None:
    """More or reordered labels off the key, equal fields, a weaker domain, other kinds: None."""
    target = {
        "mood": UserType("mood", "e", ("c", "z", "a", "b")),
        "pair": SOURCE["pair"],
        "posint": UserType("posint", "d", ("integer",)),
        "ext": UserType("ext", "b"),
    }
    columns = [("m", "mood"), ("p", "pair[]"), ("d", "posint"), ("e", "ext"), ("k", "mood")]
    assert user_type_problem(columns[:4], SOURCE, target, ordered=("k",)) is None
    ordered = {**target, "mood": UserType("mood", "e", ("a", "z", "b", "c"))}
    assert user_type_problem(columns, SOURCE, ordered, ordered=("k",)) is None
    assert user_type_problem(columns, {}, target) is None  # a source not read: presence only


def test_rows_become_types_by_name() -> None:
    """``user_types_sql``'s rows: a missing name (kind NULL), an enum with its labels."""
    got = user_types_from_rows([("x", None, None), ("mood", "e", ["a", "b"])])
    assert got == {"x": UserType("x", None), "mood": UserType("mood", "e", ("a", "b"))}
