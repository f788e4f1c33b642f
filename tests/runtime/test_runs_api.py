"""``async_etl.run_job`` / ``run_plan`` called from code: a bad argument is named as passed."""

from __future__ import annotations

import pytest

from async_etl import ConfigError, run_job, run_plan

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
