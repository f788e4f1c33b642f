from __future__ import annotations

import pytest

from async_etl.errors import ConfigError
from async_etl.orchestrator.admission import Admission
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
