from __future__ import annotations

import pytest

from async_etl.errors import ConfigError
from async_etl.jobs.budget import database_key
from async_etl.jobs.spec import parse_job
from async_etl.orchestrator.admission import Admission, minimum_connections
from async_etl.orchestrator.plan import PlanJob, SyntheticJob


def job(name: str, connections: int, target: str = "postgresql://h/db") -> PlanJob:
    return PlanJob(name=name, target=target, synthetic=SyntheticJob(connections=connections))


def test_jobs_are_admitted_only_while_their_minimums_fit() -> None:
    """Reserved minimums never exceed a database's budget; releasing admits the next job."""
    jobs = {"a": job("a", 2), "b": job("b", 2), "c": job("c", 0, "synthetic://x")}
    adm = Admission(jobs, key=str, limit=lambda url: 3)
    assert adm.fits("a")
    adm.reserve("a")
    assert not adm.fits("b") and adm.fits("c")
    adm.release("a")
    assert adm.fits("b")


def test_a_job_needing_more_than_the_budget_is_a_config_error() -> None:
    """A job whose minimum exceeds its database's budget could never start: ConfigError."""
    with pytest.raises(ConfigError, match="cannot run job 'big', which needs 4 at once"):
        Admission({"big": job("big", 4)}, key=str, limit=lambda url: 3)


def test_free_is_each_budget_less_the_reserved_minimums() -> None:
    """free(): every database's budget minus the running jobs' reservations."""
    jobs = {"a": job("a", 2), "b": job("b", 1, "postgresql://h/other")}
    adm = Admission(jobs, key=str, limit=lambda url: 3)
    adm.reserve("a")
    assert adm.free() == {"postgresql://h/db": 1, "postgresql://h/other": 3}


def test_reserved_counts_running_minimums_less_one_job() -> None:
    """reserved(db): the running jobs' minimums there; ``without`` leaves one job's out."""
    jobs = {"a": job("a", 2), "b": job("b", 2), "c": job("c", 1, "postgresql://h/other")}
    adm = Admission(jobs, key=str, limit=lambda url: 4)
    adm.reserve("a")
    adm.reserve("b")
    adm.reserve("c")
    assert adm.reserved("postgresql://h/db") == 4
    assert adm.reserved("postgresql://h/db", without="a") == 2
    assert adm.reserved("postgresql://h/db", without="c") == 4


def test_admission_compares_against_the_live_limit() -> None:
    """A limit lowered after construction (degradation) is the one fits() and free() use."""
    limits = {"postgresql://h/db": 4}
    adm = Admission({"a": job("a", 2), "b": job("b", 2)}, key=str, limit=limits.__getitem__)
    adm.reserve("a")
    assert adm.fits("b")
    limits["postgresql://h/db"] = 3
    assert not adm.fits("b") and adm.free() == {"postgresql://h/db": 1}


def mapper(source: str, target: str, state: str = "") -> PlanJob:
    """A mapper job over ``source`` into ``target`` (state store: the target unless given)."""
    extra = f'[state]\nurl = "{state}"\n' if state else ""
    spec = parse_job(
        f'name = "m"\n[source]\nurl = "{source}"\ntable = "s.t"\nkey = ["id"]\n'
        f'[target]\nurl = "{target}"\ntable = "d.t"\n[scd]\ntype = 1\n{extra}',
        env={},
    )
    return PlanJob(name="m", target=target, spec=spec)


def test_a_mapper_jobs_minimum_is_the_rule_run_job_checks() -> None:
    """Cross-database: 2 on the target (state + chunk), 1 on the source; one database: 2, not 3."""
    cross = minimum_connections(mapper("postgresql://h/s", "postgresql://h/t"), database_key)
    assert cross == {"postgresql://h:5432/t": 2, "postgresql://h:5432/s": 1}
    one = minimum_connections(mapper("postgresql://h/d", "postgresql://h/d"), database_key)
    assert one == {"postgresql://h:5432/d": 2}
    apart = mapper("postgresql://h/s", "postgresql://h/t", state="postgresql://h/x")
    assert minimum_connections(apart, database_key) == {
        "postgresql://h:5432/x": 1, "postgresql://h:5432/t": 1, "postgresql://h:5432/s": 1
    }  # fmt: skip


def test_a_ray_jobs_grant_waits_for_the_same_minimum() -> None:
    """RayJobs' minimum grant is admission's: 2 in one database (3 would wait on a budget of 2)."""
    from async_etl.jobs.ray_jobs import connection_needs

    one = mapper("postgresql://h/d", "postgresql://h/d")
    assert one.spec is not None
    assert connection_needs(one.spec) == ({"postgresql://h/d": 2}, {"postgresql://h/d": 9})
    cross = mapper("postgresql://h/s", "postgresql://h/t")
    assert cross.spec is not None
    need, _ = connection_needs(cross.spec)
    assert need == {"postgresql://h/t": 2, "postgresql://h/s": 1}
