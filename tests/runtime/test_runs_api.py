"""``async_etl.run_job`` / ``run_plan`` called from code: a bad argument is named as passed."""

from __future__ import annotations

import pytest

from async_etl import ConfigError, run_job, run_plan
from async_etl.core.retry import RetryPolicy
from async_etl.jobs.dryrun import check_job
from async_etl.jobs.spec import JobSpec, ScdSpec, SourceSpec, StateSpec, TargetSpec

URL = "postgresql://u@127.0.0.1:1/db"
JOB = {"name": "j", "source": {"url": URL, "table": "s", "key": ["id"]},
       "target": {"url": URL, "table": "t"}}  # fmt: skip
PLAN = {"name": "p", "state": URL, "jobs": [{"kind": "sleep", "name": "nap", "seconds": 0.1}]}


async def test_run_job_names_ray_actors_not_the_cli_flag() -> None:
    """run_job(ray=..., ray_actors=0): ConfigError naming ray_actors, before Ray is touched."""
    with pytest.raises(ConfigError) as caught:
        await run_job(JOB, ray="local", ray_actors=0)
    assert caught.value.message == "ray_actors: must be >= 1, got 0"


async def test_run_plan_names_ray_actors_not_the_cli_flag() -> None:
    """run_plan(ray=..., ray_actors=0): ConfigError naming ray_actors, before Ray is touched."""
    with pytest.raises(ConfigError) as caught:
        await run_plan(PLAN, ray="local", ray_actors=0)
    assert caught.value.message == "ray_actors: must be >= 1, got 0"


def _built_refresh(**scd: object) -> JobSpec:
    """A full-refresh JobSpec built in code (no loader) over an address nothing listens on."""
    return JobSpec(name="j", source=SourceSpec(url=URL, key=("id",), table="s"),
                   target=TargetSpec(url=URL, table="t"), state=StateSpec(url=URL),
                   mode="full_refresh", retry=RetryPolicy(max_retries=0),
                   scd=ScdSpec(type=2, business_key=("id",), **scd))  # type: ignore[arg-type]  # fmt: skip


@pytest.mark.parametrize("scd", [{"deletes": "expire"}, {"tracked": ("v",)},
                                 {"overwrite": ("v",)}])  # fmt: skip
async def test_a_full_refresh_built_in_code_refuses_what_only_a_merge_compares(
    scd: dict[str, object],
) -> None:
    """run_job / check_job of a full_refresh JobSpec with deletes / tracked / overwrite: refused."""
    expected = f"job j: [scd] {next(iter(scd))}: not with mode full_refresh"
    with pytest.raises(ConfigError) as ran:
        await run_job(_built_refresh(**scd))
    with pytest.raises(ConfigError) as checked:
        await check_job(_built_refresh(**scd))
    assert ran.value.message.startswith(expected)
    assert checked.value.message.startswith(expected)
