"""core.run_identity: which stored run a job may resume, and the words when it may not."""

from __future__ import annotations

from async_etl.core.run_identity import identity_problem, source_identity

TARGET = ["postgresql://h:5432/db", "dw.t"]
SOURCE = source_identity(
    "postgresql://h:5432/src", "s", None, ["id"], [("id", "int4"), ("v", "text")]
)


def test_the_same_identity_resumes() -> None:
    """Stored target and source equal to this run's: no problem."""
    assert identity_problem(list(TARGET), TARGET, dict(SOURCE), SOURCE) is None


def test_a_plan_stored_before_identities_resumes_as_before() -> None:
    """A plan without target / source (None, or another shape) is no problem."""
    assert identity_problem(None, TARGET, None, SOURCE) is None
    assert identity_problem("x", TARGET, ["x"], SOURCE) is None


def test_another_target_names_both() -> None:
    """Another target table: the stored one and this run's, with their databases."""
    problem = identity_problem(["postgresql://h:5432/db", "dw.u"], TARGET, SOURCE, SOURCE)
    assert problem is not None and problem.startswith("is unfinished into target dw.u (")
    assert "not in dw.t (postgresql://h:5432/db)" in problem


def test_another_source_database() -> None:
    """Another source database is named, stored one first."""
    now = source_identity(
        "postgresql://h:5432/other", "s", None, ["id"], [("id", "int4"), ("v", "text")]
    )
    problem = identity_problem(TARGET, TARGET, SOURCE, now)
    assert (
        problem is not None
        and "(database postgresql://h:5432/src, now postgresql://h:5432/other)" in problem
    )


def test_a_table_then_a_query() -> None:
    """A table read before, a query now: both sides in words, the query's text not repeated."""
    now = source_identity(
        "postgresql://h:5432/src", None, "SELECT 1", ["id"], [("id", "int4"), ("v", "text")]
    )
    problem = identity_problem(TARGET, TARGET, SOURCE, now)
    assert problem is not None and "([source] table s, now a query)" in problem
    assert "SELECT" not in problem


def test_a_dropped_and_a_retyped_column() -> None:
    """A column gone, a column of another type: each named."""
    dropped = source_identity("postgresql://h:5432/src", "s", None, ["id"], [("id", "int4")])
    retyped = source_identity(
        "postgresql://h:5432/src", "s", None, ["id"], [("id", "int4"), ("v", "int8")]
    )
    gone = identity_problem(TARGET, TARGET, SOURCE, dropped)
    assert gone is not None and "(column v was among its columns, now not)" in gone
    other = identity_problem(TARGET, TARGET, SOURCE, retyped)
    assert other is not None and "(column v was text, now int8)" in other
