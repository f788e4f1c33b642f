"""A chunk's COMMIT on the target lands but its reply is lost, the state store being in another
database (real PostgreSQL through ``PgProxy``): the retry finds the chunk done, loaded once."""

from __future__ import annotations

import contextlib
import functools
import time
import uuid
from collections.abc import AsyncIterator, Sequence

import anyio
import pytest
from structlog.testing import capture_logs

from async_etl.core import state_sql
from async_etl.core.retry import RetryPolicy
from async_etl.errors import ConfigError
from async_etl.jobs.api import JobOptions
from async_etl.jobs.context import JobContext
from async_etl.jobs.pg_checkpoint import in_schema_of
from async_etl.jobs.pg_driver import PgTarget
from async_etl.jobs.runner import FORGET_S, run_job
from async_etl.testing.databases import fresh_database
from async_etl.testing.pgproxy import Faults, PgProxy
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
    table_rows,
)
from tests.integration.test_jobs_modes import refresh_toml

FAST = RetryPolicy(max_retries=6, base=0.01, cap=0.1)

CASES = {
    "scd2": (job_toml, r"^COPY"),
    "refresh": (refresh_toml, r"^COPY"),
    "reject": (functools.partial(job_toml, extra='on_bad_row = "reject"'), r"^COPY"),
}
"""Job file maker, and a statement the chunk's target session sends before its COMMIT.

The first two load a new table with no unique index (the initial load of a type-2 target
that does not exist yet, a full refresh): a chunk loaded twice there used to fail the swap,
naming a key "twice in the source".  ``reject``: a bad row's reject is recorded once.  Append
is refused with the state elsewhere (``tests/core/test_modes``)."""


def apart(case: str, source: str, target: str) -> str:
    """The ``case`` job reading ``source`` into ``target``, its state store beside the source."""
    make, _ = CASES[case]
    text = make(f"lost_{case}", source, "dw.t", workers=1, chunk_size=40)
    text = text.replace(f'[target]\nurl = "{source}"', f'[target]\nurl = "{target}"', 1)
    return text + f'[state]\nurl = "{source}"\n'


@pytest.mark.parametrize("case", list(CASES))
async def test_a_lost_commit_reply_with_the_state_elsewhere_loads_the_chunk_once(
    pg_dsn: str, pg_server_dsn: str, case: str
) -> None:
    """Target's COMMIT lands, its reply is lost, state in the source's database: no row twice."""
    states = history(seed=7, n_keys=300, runs=1)
    null_key = {"a": None, "b": "x", "name": "n1", "city": "p", "tier": 1}
    rows = [*states[0], null_key] if case == "reject" else states[0]
    await load_source(pg_dsn, rows)
    async with fresh_database(pg_server_dsn) as target:
        faults = Faults()
        faults.lose_reply(r"^COMMIT", after=CASES[case][1])
        async with PgProxy(target, faults) as proxy:
            spec = spec_of(apart(case, pg_dsn, proxy.url))
            result = await run_job(spec, options=JobOptions(as_of=at(0), retry=FAST))
        assert faults.kills == 1
        assert result.status == "SUCCEEDED", result.error
        assert result.chunks_done == result.chunks_total > 1
        assert result.rows_read == len(rows)
        assert result.inserted == len(states[0]) and result.rejected == (case == "reject")
        rejects = "SELECT count(*) FROM async_etl_rejects"
        assert await fetchval(pg_dsn, rejects) == result.rejected
        cols = cols_of(1 if case == "refresh" else 2)
        want = norm(reference(states, cols), cols)
        assert norm(await table_rows(target, "dw.t"), cols) == want
        landed = "SELECT count(*) FROM dw.async_etl_landed"  # beside the target: deleted
        assert await fetchval(target, landed) == 0  # once the run is recorded SUCCEEDED


async def test_the_ledger_goes_beside_the_target_where_the_job_may_create(
    pg_dsn: str, pg_server_dsn: str
) -> None:
    """A target role that may create in the target's schema only (not in public): it succeeds."""
    states = history(seed=8, n_keys=120, runs=1)
    await load_source(pg_dsn, states[0])
    role = f"aetl_ledger_{uuid.uuid4().hex[:8]}"
    try:
        async with fresh_database(pg_server_dsn) as target:
            db = target.rsplit("/", 1)[1]
            for sql in (f'CREATE ROLE "{role}" LOGIN', "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
                        f'GRANT CREATE, TEMPORARY ON DATABASE "{db}" TO "{role}"',
                        f'CREATE SCHEMA dw AUTHORIZATION "{role}"'):  # fmt: skip
                await fetchval(target, sql)
            as_role = target.replace("postgresql://postgres@", f"postgresql://{role}@", 1)
            assert as_role != target
            spec = spec_of(apart("scd2", pg_dsn, as_role))
            result = await run_job(spec, options=JobOptions(as_of=at(0), retry=FAST))
            assert result.status == "SUCCEEDED", result.error
            assert result.inserted == len(states[0])
            landed = "SELECT count(*) FROM dw.async_etl_landed"  # made there, emptied at the end
            assert await fetchval(target, landed) == 0
    finally:
        await fetchval(pg_server_dsn, f'DROP ROLE IF EXISTS "{role}"')


FAIL_CHECKPOINT = (
    "CREATE FUNCTION fail_chunk() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "IF NEW.chunk_index = 2 AND NEW.status = 'COMMITTED' THEN "
    "RAISE EXCEPTION 'checkpoint refused by the test'; END IF; "
    "RETURN NEW; END $$",
    "CREATE TRIGGER fail_chunk BEFORE INSERT OR UPDATE ON async_etl_chunks "
    "FOR EACH ROW EXECUTE FUNCTION fail_chunk()",
)
"""The state store refuses chunk 2's checkpoint: its target COMMIT stands, unrecorded there."""


async def test_a_finished_runs_ledger_rows_go_and_a_crashed_runs_stay_for_its_resumption(
    pg_dsn: str, pg_server_dsn: str
) -> None:
    """Ledger rows: gone once a run succeeds; kept by one that failed, and used when resumed."""
    states = history(seed=9, n_keys=300, runs=1)
    await load_source(pg_dsn, states[0])
    rows_of = "(SELECT run_id, count(*) AS n FROM dw.async_etl_landed GROUP BY run_id) g"
    async with fresh_database(pg_server_dsn) as target:
        spec = spec_of(apart("refresh", pg_dsn, target))
        first = await run_job(spec, options=JobOptions(as_of=at(0), retry=FAST))
        assert first.status == "SUCCEEDED", first.error
        assert first.chunks_total > 3
        assert await table_rows(target, rows_of) == []  # its rows went once it was recorded
        for sql in FAIL_CHECKPOINT:
            await fetchval(pg_dsn, sql)
        crashed = await run_job(spec, options=JobOptions(as_of=at(1), retry=FAST))
        assert crashed.status == "FAILED" and crashed.chunks_done == 2, crashed.error
        # chunks 0, 1 recorded in both; chunk 2 committed on the target, not in the state store
        assert await table_rows(target, rows_of) == [{"run_id": crashed.run_id, "n": 3}]
        await fetchval(pg_dsn, "DROP TRIGGER fail_chunk ON async_etl_chunks")
        with capture_logs() as logs:
            resumed = await run_job(spec, options=JobOptions(retry=FAST))
        assert resumed.status == "SUCCEEDED", resumed.error
        assert resumed.run_id == crashed.run_id and resumed.resumed
        assert [e["chunk"] for e in logs if e["event"] == "chunk_landed_before"] == [2]
        assert resumed.rows_read == first.rows_read == len(states[0])  # chunk 2 counted once
        cols = cols_of(1)
        assert norm(await table_rows(target, "dw.t"), cols) == norm(
            reference(states, cols), cols
        )  # the swap found no key twice: chunk 2 was not loaded again
        assert await table_rows(target, rows_of) == []


SLOW_FORGET = (
    "CREATE SCHEMA IF NOT EXISTS dw",
    in_schema_of("dw.t", state_sql.LANDED_DDL.text),
    "CREATE FUNCTION slow_forget() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "PERFORM pg_sleep(30); RETURN NULL; END $$",
    "CREATE TRIGGER slow_forget BEFORE DELETE ON dw.async_etl_landed "
    "FOR EACH STATEMENT EXECUTE FUNCTION slow_forget()",
)
"""The target's ledger, made ahead, whose DELETE (the forget after SUCCEEDED) takes 30 s."""


@contextlib.asynccontextmanager
async def _slow_forget_target(pg_dsn: str, pg_server_dsn: str) -> AsyncIterator[str]:
    """A fresh target database with ``SLOW_FORGET`` made; the source holds one state of 60 keys."""
    await load_source(pg_dsn, history(seed=13, n_keys=60, runs=1)[0])
    async with fresh_database(pg_server_dsn) as target:
        for sql in SLOW_FORGET:
            await fetchval(target, sql)
        yield target


async def test_a_cancel_while_the_ledger_is_forgotten_keeps_the_run_succeeded(
    pg_dsn: str, pg_server_dsn: str
) -> None:
    """Cancelled after SUCCEEDED is recorded (deleting its ledger rows): it stays SUCCEEDED."""
    states = history(seed=10, n_keys=120, runs=1)
    await load_source(pg_dsn, states[0])
    async with fresh_database(pg_server_dsn) as target:
        for sql in SLOW_FORGET:
            await fetchval(target, sql)
        spec = spec_of(apart("scd2", pg_dsn, target))
        status = "SELECT status FROM async_etl_runs WHERE job = 'lost_scd2'"
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(functools.partial(run_job, spec, options=JobOptions(as_of=at(0))))
                made = "SELECT to_regclass('async_etl_runs') IS NOT NULL"
                while not await fetchval(pg_dsn, made) or await fetchval(pg_dsn, status) != (
                    "SUCCEEDED"
                ):
                    await anyio.sleep(0.05)
                await anyio.sleep(0.3)  # the forget's DELETE is waiting in its trigger
                tg.cancel_scope.cancel()
        assert await fetchval(pg_dsn, status) == "SUCCEEDED"
        landed = "SELECT count(*) FROM dw.async_etl_landed"  # the cancelled forget: kept
        assert await fetchval(target, landed) > 0


async def test_a_success_forgets_the_ledgers_runs_not_the_jobs_whole_history(
    pg_dsn: str, pg_server_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The forget asks for the ledger's runs of the job only, however many runs came before."""
    states = history(seed=11, n_keys=120, runs=1)
    await load_source(pg_dsn, states[0])
    asked: list[list[str]] = []
    forget = PgTarget.forget_landed

    async def recorded(self: PgTarget, ctx: JobContext, run_ids: Sequence[str]) -> None:
        asked.append(sorted(run_ids))
        await forget(self, ctx, run_ids)

    monkeypatch.setattr(PgTarget, "forget_landed", recorded)
    async with fresh_database(pg_server_dsn) as target:
        spec = spec_of(apart("refresh", pg_dsn, target))
        first = await run_job(spec, options=JobOptions(as_of=at(0), retry=FAST))
        assert first.status == "SUCCEEDED", first.error
        assert asked == [[first.run_id]]
        old = (  # a long history of the job: runs the ledger holds nothing of
            "INSERT INTO async_etl_runs (run_id, job, status, as_of, started_at) "
            "SELECT 'lost_refresh-old-' || g, 'lost_refresh', 'SUCCEEDED', now(), "
            "now() - interval '1 day' FROM generate_series(1, 2000) g"
        )
        await fetchval(pg_dsn, old)
        second = await run_job(spec, options=JobOptions(as_of=at(1), retry=FAST))
        assert second.status == "SUCCEEDED", second.error
        assert asked[1:] == [[second.run_id]]
        assert await fetchval(target, "SELECT count(*) FROM dw.async_etl_landed") == 0


async def test_a_target_named_as_the_ledger_is_refused_in_one_line(
    pg_dsn: str, pg_server_dsn: str
) -> None:
    """A target table named async_etl_landed, state elsewhere: a clear refusal, nothing made."""
    await load_source(pg_dsn, history(seed=3, n_keys=20, runs=1)[0])
    async with fresh_database(pg_server_dsn) as target:
        text = apart("scd2", pg_dsn, target).replace('"dw.t"', '"dw.async_etl_landed"')
        with pytest.raises(ConfigError, match="async_etl_landed beside the target is the chunk"):
            await run_job(spec_of(text), options=JobOptions(as_of=at(0), retry=FAST))
        made = "SELECT to_regclass('dw.async_etl_landed')"
        assert await fetchval(target, made) is None


LEDGER_QUERY = r"^SELECT DISTINCT run_id FROM .*async_etl_landed"
"""The first statement of the forget after SUCCEEDED (``Target.landed_runs``)."""


class _DownAtTheLedger(Faults):
    """The target goes down at the forget's first query: its session dies, new ones are refused."""

    def check(self, sql: str) -> bool:
        """Kill the session at ``LEDGER_QUERY``, then refuse every new connection."""
        hit = super().check(sql)
        if hit:
            self.refuse(1000)
        return hit


async def test_a_target_gone_after_success_is_given_up_soon_and_forgotten_next_time(
    pg_dsn: str, pg_server_dsn: str
) -> None:
    """Target down once SUCCEEDED is recorded: one quick retry, a warning, still SUCCEEDED."""
    states = history(seed=12, n_keys=120, runs=2)
    await load_source(pg_dsn, states[0])
    async with fresh_database(pg_server_dsn) as target:
        faults = _DownAtTheLedger()
        faults.arm(LEDGER_QUERY)
        async with PgProxy(target, faults) as proxy:
            spec = spec_of(apart("scd2", pg_dsn, proxy.url))
            with capture_logs() as logs:
                started = time.monotonic()
                first = await run_job(spec, options=JobOptions(as_of=at(0)))  # default retries
                took = time.monotonic() - started
        assert first.status == "SUCCEEDED", first.error
        status = "SELECT status FROM async_etl_runs WHERE run_id = $1"
        assert await fetchval(pg_dsn, status, first.run_id) == "SUCCEEDED"
        (warned,) = [e for e in logs if e["event"] == "landed_not_forgotten"]
        assert "connection" in warned["error"]
        assert faults.kills == 2  # the killed query and one refused retry (before: 1 + 6 retries)
        assert took < 10, took
        landed = "SELECT count(*) FROM dw.async_etl_landed"
        assert await fetchval(target, landed) == first.chunks_total  # kept for now
        await load_source(pg_dsn, states[1])
        second = await run_job(spec_of(apart("scd2", pg_dsn, target)),
                               options=JobOptions(as_of=at(1), retry=FAST))  # fmt: skip
        assert second.status == "SUCCEEDED", second.error
        assert await fetchval(target, landed) == 0  # the first run's rows went with it


async def test_a_forget_that_never_ends_is_given_up_after_its_bound(
    pg_dsn: str, pg_server_dsn: str
) -> None:
    """The ledger's DELETE takes 30 s: the run returns SUCCEEDED after FORGET_S, warned."""
    async with _slow_forget_target(pg_dsn, pg_server_dsn) as target:
        spec = spec_of(apart("scd2", pg_dsn, target))
        with capture_logs() as logs:
            started = time.monotonic()
            result = await run_job(spec, options=JobOptions(as_of=at(0), retry=FAST))
            took = time.monotonic() - started
        assert result.status == "SUCCEEDED", result.error
        (warned,) = [e for e in logs if e["event"] == "landed_not_forgotten"]
        assert warned["error"] == f"no answer within {FORGET_S:g} s"
        assert FORGET_S <= took < FORGET_S + 10, took  # before: the DELETE's 30 s
        assert await fetchval(target, "SELECT count(*) FROM dw.async_etl_landed") > 0


async def test_state_forget_timeout_sets_how_long_the_forget_may_take(
    pg_dsn: str, pg_server_dsn: str
) -> None:
    """``[state] forget_timeout = 0.5``: the never-ending forget is given up at 0.5 s, warned so."""
    async with _slow_forget_target(pg_dsn, pg_server_dsn) as target:
        spec = spec_of(apart("scd2", pg_dsn, target) + "forget_timeout = 0.5\n")
        assert spec.state.forget_timeout == 0.5
        with capture_logs() as logs:
            result = await run_job(spec, options=JobOptions(as_of=at(0), retry=FAST))
        assert result.status == "SUCCEEDED", result.error
        (warned,) = [e for e in logs if e["event"] == "landed_not_forgotten"]
        assert warned["error"] == "no answer within 0.5 s"  # not FORGET_S's 5 s
        assert await fetchval(target, "SELECT count(*) FROM dw.async_etl_landed") > 0
