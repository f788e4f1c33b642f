"""A CrateDB-target SCD2 job against the stand-in (with faults) converges to the pure model."""

from __future__ import annotations

from typing import Any

from async_etl.core.scd import history_problems
from async_etl.drivers.cratedb import CrateDBClient
from async_etl.jobs.api import JobOptions
from async_etl.jobs.coltypes import from_epoch_ms
from async_etl.jobs.runner import run_job
from async_etl.testing.crate import CrateStandIn, StandInConfig
from tests.integration.jobs_helpers import (
    at,
    cols_of,
    fetchval,
    history,
    job_toml,
    load_source,
    norm,
    reference,
    spec_of,
)


async def crate_rows(url: str, table: str) -> list[dict[str, Any]]:
    """Every row of a stand-in table, timestamps back as datetimes."""
    async with CrateDBClient(url) as client:
        await client.execute(f"REFRESH TABLE {table}")
        resp = await client.execute(f"SELECT * FROM {table}")
    rows = [dict(zip(resp.cols, r, strict=True)) for r in resp.rows]
    for row in rows:
        for col in ("valid_from", "valid_to"):
            if row[col] is not None:
                row[col] = from_epoch_ms(row[col])
    return rows


KINDS = ("item_fail", "busy", "drop_before", "drop_after")


async def test_crate_target_with_faults_converges_to_reference(pg_dsn: str) -> None:
    """Dropped connections and per-item 5002s on every run: the CrateDB table equals the model."""
    cols = cols_of(2)
    states = history(seed=21, n_keys=600, runs=3)
    config = StandInConfig(seed=5, item_fail_rate=0.05, drop_rate=0.05, busy_rate=0.02)
    async with CrateStandIn(config) as crate:
        text = job_toml("crate", pg_dsn, "dw.dim", chunk_size=60)
        text = text.replace(f'url = "{pg_dsn}"\ntable', f'url = "{crate.url}"\ntable')
        text += f'\n[state]\nurl = "{pg_dsn}"\n'
        # the default attempts, with short delays: the faults, not the backoff, are tested here
        text += "[retry]\nbase_delay = 0.01\nmax_delay = 0.05\n"
        spec = spec_of(text)
        for i, rows in enumerate(states):
            await load_source(pg_dsn, rows)
            crate.schedule_faults(*KINDS)  # each kind surely occurs on this run
            result = await run_job(spec, options=JobOptions(as_of=at(i)))
            assert result.status == "SUCCEEDED", result.error
            crate.item_fail_rate = crate.drop_rate = crate.busy_rate = 0.0  # the check reads
            got = await crate_rows(crate.url, "dw.dim")
            crate.item_fail_rate, crate.drop_rate = config.item_fail_rate, config.drop_rate
            crate.busy_rate = config.busy_rate
            assert norm(got, cols) == norm(reference(states[: i + 1], cols), cols)
            assert history_problems(got, cols) == []
        faults = crate.counters.faults
        assert all(faults[kind] >= len(states) for kind in KINDS), faults
    done = await fetchval(pg_dsn, "SELECT count(*) FROM async_etl_runs WHERE status = 'SUCCEEDED'")
    assert done == len(states)
