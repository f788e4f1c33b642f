"""The connections a mapper job needs at once per database (core.job_budget), over its layouts."""

from __future__ import annotations

import pytest

from async_etl.core.job_budget import needed_connections, refusal
from async_etl.jobs.budget import database_key

PG_A = "postgresql://u:secret@h/a"
PG_B = "postgresql://h/b"
PG_C = "postgresql://h/c"
ORA = "oracle://h:1521/svc"
CRATE = "http://crate:4200"
A = "postgresql://h:5432/a"


def counts(state: str, source: str, target: str, *, apart: bool = False) -> dict[str, int]:
    needs = needed_connections(state, source, target, database_key, apart=apart)
    return {db: len(why) for db, why in needs.items()}


@pytest.mark.parametrize(
    ("state", "source", "target", "expected"),
    [
        # the tester's case: state in the target's database, source elsewhere
        (PG_B, PG_A, PG_B, {"postgresql://h:5432/b": 2, "postgresql://h:5432/a": 1}),
        # one database for everything: the chunk's one connection and the state store's
        (PG_A, PG_A, PG_A, {"postgresql://h:5432/a": 2}),
        # the same database under another spelling and user is still one database
        (PG_A, "postgres://other@H/a", PG_A, {"postgresql://h:5432/a": 2}),
        # state store in a third database: one each
        (PG_C, PG_A, PG_B, {"postgresql://h:5432/c": 1, "postgresql://h:5432/b": 1, A: 1}),
        # state store in the source's database
        (PG_A, PG_A, PG_B, {"postgresql://h:5432/a": 2, "postgresql://h:5432/b": 1}),
        # a CrateDB target, state beside the source
        (PG_A, PG_A, CRATE, {"postgresql://h:5432/a": 2, "cratedb://crate:4200/": 1}),
        # an Oracle source into PostgreSQL holding the state
        (PG_B, ORA, PG_B, {"postgresql://h:5432/b": 2, "oracle://h:1521/svc": 1}),
        # Oracle to Oracle in one database: two connections (no INSERT ... SELECT across them)
        (PG_C, ORA, ORA, {"postgresql://h:5432/c": 1, "oracle://h:1521/svc": 2}),
    ],
)
def test_minimum_per_database_follows_the_jobs_layout(
    state: str, source: str, target: str, expected: dict[str, int]
) -> None:
    """State store 1 plus one chunk's connections (one when PostgreSQL source = target database)."""
    assert counts(state, source, target) == expected


def test_an_executor_holding_tokens_apart_needs_both_in_one_database() -> None:
    """apart: a chunk takes a source and a target token even in one database (3 with the state)."""
    assert counts(PG_A, PG_A, PG_A, apart=True) == {"postgresql://h:5432/a": 3}


def test_the_refusal_is_one_line_naming_database_limit_minimum_and_why() -> None:
    """One line: the job, the database (no credentials), its limit, the minimum and the reasons."""
    needs = needed_connections(PG_A, PG_B, PG_A, database_key)
    db = database_key(PG_A)
    line = refusal("copy", db, 1, needs[db])
    assert "\n" not in line and "secret" not in line
    assert line.startswith(
        "job copy: the connection budget for postgresql://h:5432/a is 1; this job needs at "
        "least 2 connections there at once (its state store's"
    )
    assert "a chunk's target connection" in line


@pytest.mark.parametrize(
    ("state", "source", "target", "expected"),
    [
        (PG_A, PG_A, PG_A, {"postgresql://h:5432/a": 2}),  # one database
        (PG_B, PG_A, PG_B, {"postgresql://h:5432/b": 2, A: 1}),  # two databases
        (PG_A, PG_A, CRATE, {A: 2, "cratedb://crate:4200/": 1}),  # a CrateDB target
        (PG_C, ORA, ORA, {"postgresql://h:5432/c": 1, "oracle://h:1521/svc": 2}),  # Oracle
    ],
)
def test_run_job_admission_and_ray_jobs_take_one_minimum(
    state: str, source: str, target: str, expected: dict[str, int]
) -> None:
    """runner.job_minimum, admission.minimum_connections, connection_needs: one number each."""
    from async_etl.jobs.ray_jobs import connection_needs
    from async_etl.jobs.runner import job_minimum
    from async_etl.jobs.spec import parse_job
    from async_etl.orchestrator.admission import minimum_connections
    from async_etl.orchestrator.plan import PlanJob

    spec = parse_job(
        f'name = "m"\n[source]\nurl = "{source}"\ntable = "s.t"\nkey = ["id"]\n'
        f'[target]\nurl = "{target}"\ntable = "d.t"\n[scd]\ntype = 1\n[state]\nurl = "{state}"\n',
        env={},
    )

    def by_key(need: dict[str, int]) -> dict[str, int]:
        return {database_key(url): n for url, n in need.items()}

    run = by_key(job_minimum(spec)[0])
    admitted = minimum_connections(PlanJob(name="m", target=target, spec=spec), database_key)
    ray = by_key(connection_needs(spec)[0])
    assert run == admitted == ray == expected
