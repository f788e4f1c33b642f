"""core.run_identity: which stored run a job may resume, and the words when it may not."""

from __future__ import annotations

from async_etl.core.run_identity import (
    identity_problem,
    pg_database_identity,
    source_identity,
    target_identity,
)

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


def test_a_target_is_compared_as_its_database_resolves_it() -> None:
    """Stored as dim via 127.0.0.1, now public.dim via localhost, resolved alike: it resumes."""
    db = pg_database_identity("7714", "16384", "postgresql://127.0.0.1:5432/db")
    was = target_identity("postgresql://127.0.0.1:5432/db", "dim", db, "public.dim")
    now = target_identity("postgresql://localhost:5432/db", "public.dim", db, "public.dim")
    assert identity_problem(was, now, SOURCE, SOURCE) is None


def test_the_same_names_in_another_database_are_another_target() -> None:
    """The same URL and table resolved in another database (or cluster): refused, said so."""
    key = "postgresql://h:5432/db"
    was = target_identity(key, "dim", pg_database_identity("1", "16384", key), "public.dim")
    now = target_identity(key, "dim", pg_database_identity("1", "16999", key), "public.dim")
    problem = identity_problem(was, now, SOURCE, SOURCE)
    assert problem is not None
    assert "into target public.dim (postgresql://h:5432/db); " in problem
    assert "not in public.dim (postgresql://h:5432/db), another database:" in problem
    other = target_identity(key, "dim", pg_database_identity("2", "16384", key), "public.dim")
    assert identity_problem(was, other, SOURCE, SOURCE) is not None


def test_a_plan_stored_with_the_written_target_compares_as_written() -> None:
    """A plan stored as [database key, table] is compared with the names as written."""
    key = "postgresql://h:5432/db"
    now = target_identity(key, "dw.t", pg_database_identity(None, "1", key), "dw.t")
    assert identity_problem([key, "dw.t"], now, SOURCE, SOURCE) is None
    assert identity_problem([key, "t"], now, SOURCE, SOURCE) is not None


def test_a_database_without_its_cluster_id_stands_by_its_server_url() -> None:
    """No cluster identifier readable: the URL's host and port stand for the server."""
    assert pg_database_identity(None, "5", "postgresql://h:5432/db") == (
        "postgresql postgresql://h:5432 database 5"
    )
    assert pg_database_identity("77", "5", "postgresql://h:5432/db") == (
        "postgresql cluster 77 database 5"
    )


def test_a_source_is_compared_as_its_database_resolves_it() -> None:
    """Stored as s via one host name, now public.s via another, resolved alike: it resumes."""
    columns = [("id", "int4"), ("v", "text")]
    db = pg_database_identity("7", "5", "postgresql://127.0.0.1:5432/src")
    was = source_identity("postgresql://127.0.0.1:5432/src", "s", None, ["id"], columns,
                          [db, "public.s"])  # fmt: skip
    now = source_identity("postgresql://localhost:5432/src", "public.s", None, ["id"], columns,
                          [db, "public.s"])  # fmt: skip
    assert identity_problem(TARGET, TARGET, was, now) is None
    moved = source_identity("postgresql://127.0.0.1:5432/src", "s", None, ["id"], columns,
                            [pg_database_identity("7", "6", "x"), "public.s"])  # fmt: skip
    problem = identity_problem(TARGET, TARGET, was, moved)
    assert problem is not None and "another database)" in problem
    assert identity_problem(TARGET, TARGET, SOURCE, now) is not None  # stored as written
