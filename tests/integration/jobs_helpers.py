"""Shared helpers of the mapper-job integration tests: sources, job files, the reference model."""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from async_etl.core import scd_sql_pg as pg
from async_etl.core.scd import Row, apply_plan, diff
from async_etl.core.specs import ScdColumns, ScdSpec
from async_etl.core.state_sql import STATE_DDL
from async_etl.drivers.cratedb import CrateDBClient
from async_etl.jobs.spec import JobSpec, parse_job

COLUMNS = [("a", "bigint"), ("b", "text"), ("name", "text"), ("city", "text"), ("tier", "integer")]
NAMES = [n for n, _ in COLUMNS]
KEY = ("a", "b")
T0 = datetime(2024, 1, 1, tzinfo=UTC)
SCD2 = ScdSpec(type=2, business_key=KEY, tracked=("name", "city"), overwrite=("tier",),
               deletes="expire")  # fmt: skip


def at(day: int) -> datetime:
    """The as-of time of run number ``day``."""
    return T0 + timedelta(days=day)


def job_toml(name: str, dsn: str, table: str, *, kind: int = 2, workers: int = 3,
             chunk_size: int = 100, parallel: bool = True, extra: str = "") -> str:  # fmt: skip
    """A job file over ``src.t`` (composite key a, b) into ``table``.

    A full refresh (``extra`` sets ``mode = "full_refresh"`` / ``"replace"``) compares nothing,
    so its ``[scd]`` has only the ``type`` (the loader refuses deletes / tracked / overwrite).
    """
    if re.search(r'^mode = "(full_refresh|replace)"', extra, re.MULTILINE):
        scd = f"type = {kind}"
    elif kind == 2:
        scd = 'type = 2\ntracked = ["name", "city"]\noverwrite = ["tier"]\ndeletes = "expire"'
    else:
        scd = 'type = 1\ndeletes = "delete"'
    return f"""
name = "{name}"
{extra}
[source]
url = "{dsn}"
query = "SELECT a, b, name, city, tier FROM src.t"
key = ["a", "b"]
[target]
url = "{dsn}"
table = "{table}"
[scd]
{scd}
[parallel]
enabled = {"true" if parallel else "false"}
max_workers = {workers}
chunk_size = {chunk_size}
min_rows_for_parallel = 10
"""


def spec_of(text: str) -> JobSpec:
    """Parse a job file text (no environment)."""
    return parse_job(text, env={})


def cols_of(kind: int = 2) -> ScdColumns:
    """The resolved SCD columns of the test jobs."""
    spec = SCD2 if kind == 2 else ScdSpec(type=1, business_key=KEY, deletes="delete")
    return spec.resolve(NAMES)


def generation(rnd: random.Random, keys: Sequence[tuple[int, str]], share: float) -> list[Row]:
    """One source state: a random subset of ``keys`` with random (often NULL) values."""
    rows = []
    for a, b in keys:
        if rnd.random() < share:
            rows.append({"a": a, "b": b, "name": rnd.choice([None, "n1", "n2", "n3"]),
                         "city": rnd.choice([None, "p", "q"]),
                         "tier": rnd.choice([None, 1, 2])})  # fmt: skip
    return rows


def history(seed: int, n_keys: int, runs: int) -> list[list[Row]]:
    """Source states over ``runs`` runs: updates, deletes, resurrections, NULLs."""
    rnd = random.Random(seed)
    keys = [(a, b) for a in range(n_keys // 3) for b in ("x", "y", "Y")]
    return [generation(rnd, keys, rnd.choice([0.6, 0.8, 0.95])) for _ in range(runs)]


async def load_source(dsn: str, rows: Sequence[Row]) -> None:
    """Replace ``src.t`` with ``rows``."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE SCHEMA IF NOT EXISTS src")
        await conn.execute("DROP TABLE IF EXISTS src.t")
        await conn.execute(f"CREATE TABLE src.t ({', '.join(f'{n} {t}' for n, t in COLUMNS)})")
        await conn.copy_records_to_table(
            "t", schema_name="src", records=[tuple(r[c] for c in NAMES) for r in rows]
        )
        await conn.execute("ANALYZE src.t")
    finally:
        await conn.close()


async def slow_target(dsn: str, table: str, kind: int = 2, sleep_s: float = 0.02) -> None:
    """Pre-create ``table`` with a per-INSERT-statement sleep, so a run lasts long enough."""
    conn = await asyncpg.connect(dsn)
    try:
        for st in pg.target_ddl(table, COLUMNS, cols_of(kind)):
            await conn.execute(st.text)
        await conn.execute(
            "CREATE OR REPLACE FUNCTION public.aetl_nap() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN PERFORM pg_sleep({sleep_s}); RETURN NULL; END $$"
        )
        await conn.execute(
            f"CREATE TRIGGER nap BEFORE INSERT ON {table} FOR EACH STATEMENT "
            "EXECUTE FUNCTION public.aetl_nap()"
        )
    finally:
        await conn.close()


GATE_LOCK = 0x6A57_6A7E  # arbitrary: the advisory lock a closed gate (``closed_gate``) holds


async def gate_target(dsn: str, table: str, job: str, after: int) -> None:
    """Make each INSERT into ``table`` wait while a gate is closed (``closed_gate``), once the
    RUNNING run of ``job`` has ``after`` committed chunks: that run cannot end meanwhile.

    A statement-level trigger reads the committed chunks (visible to its snapshot) and then
    waits for a shared hold of ``GATE_LOCK``; a statement that started before the count was
    reached goes through, so a few more chunks may commit.
    """
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE OR REPLACE FUNCTION public.aetl_gate() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN IF (SELECT count(*) FROM async_etl_chunks c JOIN async_etl_runs r "
            "USING (run_id) WHERE r.job = TG_ARGV[0] AND r.status = 'RUNNING' "
            "AND c.status = 'COMMITTED') >= TG_ARGV[1]::int THEN "
            f"PERFORM pg_advisory_lock_shared({GATE_LOCK}); "
            f"PERFORM pg_advisory_unlock_shared({GATE_LOCK}); END IF; RETURN NULL; END $$"
        )
        await conn.execute(
            f"CREATE TRIGGER gate BEFORE INSERT ON {table} FOR EACH STATEMENT "
            f"EXECUTE FUNCTION public.aetl_gate('{job}', '{after}')"
        )
    finally:
        await conn.close()


def _checkpoint_gate_sql(name: str, job: str, gate: str) -> list[str]:
    """Function ``public.<name>`` and trigger ``<name>_<job>`` holding ``job``'s checkpoints.

    ``gate``: a relation of one row ``(n, lock_key)``, read in one statement each time: once
    the RUNNING run of ``job`` has ``n`` committed chunks, an INSERT or UPDATE on
    ``async_etl_chunks`` by a session of ``job`` waits for a shared hold of advisory lock
    ``lock_key`` (statement-level, inside the chunk's transaction).
    """
    return [
        f"CREATE OR REPLACE FUNCTION public.{name}() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"DECLARE g record; BEGIN SELECT n, lock_key INTO g FROM {gate}; "
        "IF current_setting('application_name') LIKE 'async-etl:' || TG_ARGV[0] || ':%' "
        "AND (SELECT count(*) FROM async_etl_chunks c JOIN async_etl_runs r "
        "USING (run_id) WHERE r.job = TG_ARGV[0] AND r.status = 'RUNNING' "
        "AND c.status = 'COMMITTED') >= g.n THEN "
        "PERFORM pg_advisory_lock_shared(g.lock_key); "
        "PERFORM pg_advisory_unlock_shared(g.lock_key); END IF; RETURN NULL; END $$",
        f"CREATE TRIGGER {name}_{job} BEFORE INSERT OR UPDATE ON async_etl_chunks "
        f"FOR EACH STATEMENT EXECUTE FUNCTION public.{name}('{job}')",
    ]


async def gate_checkpoints(dsn: str, job: str, after: int) -> None:
    """Make each chunk checkpoint of ``job`` wait while a gate is closed (``closed_gate``), once
    its RUNNING run has ``after`` committed chunks: that run can then commit no chunk, nor end.

    Unlike ``gate_target`` it needs no particular target table (a full refresh loads a table
    of its own): a statement-level trigger on ``async_etl_chunks`` (the state tables are
    created here if missing) holds the statements of ``job``'s sessions (by application
    name), inside the chunk's transaction; a checkpoint that started before the count was
    reached goes through, so a few more chunks may commit.
    """
    gate = f"(VALUES ({int(after)}, {GATE_LOCK}::bigint)) AS v(n, lock_key)"
    conn = await asyncpg.connect(dsn)
    try:
        for st in STATE_DDL:
            await conn.execute(st.text)
        for text in _checkpoint_gate_sql("aetl_checkpoint_gate", job, gate):
            await conn.execute(text)
    finally:
        await conn.close()


ROUND_LOCKS = tuple(GATE_LOCK + i for i in (1, 2, 3))
"""Advisory locks for up to three rounds of ``gate_checkpoint_rounds`` (one per round)."""


async def gate_checkpoint_rounds(conn: Any, job: str) -> None:
    """``gate_checkpoints`` with a gate moved on round by round (``next_round``), on ``conn``.

    One row of ``public.aetl_round`` ``(n, lock_key)`` says after how many committed chunks
    the checkpoints of ``job``'s RUNNING run wait, and for which advisory lock: the test holds
    the locks of the rounds to come, sets the next round before it lets the held sessions go,
    so the run cannot commit past a round, nor end, before the test is done with it.  No
    round at first: nothing waits.
    """
    for st in STATE_DDL:
        await conn.execute(st.text)
    await conn.execute(
        "CREATE TABLE public.aetl_round (n bigint, lock_key bigint); "
        "INSERT INTO public.aetl_round VALUES (9223372036854775807, 0)"
    )
    for text in _checkpoint_gate_sql("round_gate", job, "public.aetl_round"):
        await conn.execute(text)


async def next_round(conn: Any, after: int | None, lock_key: int = 0) -> None:
    """Make ``gate_checkpoint_rounds``' gate hold at ``lock_key`` after ``after`` committed
    chunks (None: no more rounds)."""
    n = 9223372036854775807 if after is None else after
    await conn.execute("UPDATE public.aetl_round SET n = $1, lock_key = $2", n, lock_key)


async def wait_held_at(conn: Any, job: str, lock_key: int, timeout: float = 30) -> int:
    """Wait until a session of ``job`` waits for advisory lock ``lock_key``; how many do."""
    sql = (
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
        "WHERE l.locktype = 'advisory' AND NOT l.granted AND a.application_name LIKE $1 "
        "AND l.classid::bigint << 32 | l.objid::bigint = $2"
    )
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        n = int(await conn.fetchval(sql, f"async-etl:{job}:%", lock_key))
        if n:
            return n
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"{job}: no session waits for lock {lock_key}")
        await asyncio.sleep(0.005)


async def kill_at_gate(
    dsn: str, job: str, after: int, *args: str, held: Callable[[], Awaitable[None]] | None = None
) -> None:
    """Start ``async-etl run *args`` (a run of ``job``) and SIGKILL it once ``after`` chunks
    committed and one of its chunks waits at a closed checkpoint gate (``gate_checkpoints``):
    it cannot finish before the kill, which lands with that chunk in flight.  ``held``, if
    given, is awaited while the run is held there, before the kill (a look at what readers
    see mid-run).  Returns once the process and every server session of ``job`` are gone (the
    held ones end once the gate opens; none can commit: their client never sends the COMMIT).
    """
    await gate_checkpoints(dsn, job, after)
    async with closed_gate(dsn):
        proc = start_cli("run", *args)
        try:
            await wait_committed(dsn, job, after)
            await wait_held(dsn, job)
            if held is not None:
                await held()
        finally:
            proc.send_signal(signal.SIGKILL)
            await asyncio.to_thread(proc.wait)
    await wait_gone(dsn, job)


@asynccontextmanager
async def closed_gate(dsn: str) -> AsyncIterator[None]:
    """Hold the gates of ``gate_target`` closed inside the block; they open when it ends."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"SELECT pg_advisory_lock({GATE_LOCK})")
        yield
    finally:
        await conn.close()  # the session lock goes with it


def reference(states: Sequence[Sequence[Row]], cols: ScdColumns) -> list[Row]:
    """The pure model after one run per state (run i at as-of ``at(i)``)."""
    model: list[Row] = []
    for i, rows in enumerate(states):
        model = apply_plan(model, diff(cols, model, rows, at(i)))
    return model


def _norm_value(v: Any) -> Any:
    return v.astimezone(UTC).isoformat() if isinstance(v, datetime) else v


def norm(rows: Sequence[Any], cols: ScdColumns) -> list[tuple[Any, ...]]:
    """Rows as sorted tuples of the target columns (timestamps in UTC ISO form)."""
    return sorted((tuple(_norm_value(dict(r)[c]) for c in cols.target) for r in rows), key=repr)


async def table_rows(dsn: str, table: str) -> list[dict[str, Any]]:
    """Every row of ``table``."""
    conn = await asyncpg.connect(dsn)
    try:
        return [dict(r) for r in await conn.fetch(f"SELECT * FROM {table}")]
    finally:
        await conn.close()


async def crate_rows(url: str, table: str, where: str = "") -> dict[Any, dict[str, Any]]:
    """The rows of CrateDB ``table`` (refreshed first) by their ``id``; ``where``: a filter."""
    async with CrateDBClient(url) as client:
        await client.execute(f"REFRESH TABLE {table}")
        resp = await client.execute(f"SELECT * FROM {table} {where}")
    return {row["id"]: row for row in (dict(zip(resp.cols, r, strict=True)) for r in resp.rows)}


async def fetchval(dsn: str, sql: str, *args: Any) -> Any:
    """One value from a fresh connection."""
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


def cli(*args: str) -> list[str]:
    """The argv of ``async-etl`` run from this interpreter."""
    return [sys.executable, "-m", "async_etl.cli", *args]


def start_cli(*args: str) -> subprocess.Popen[str]:
    """Start ``async-etl`` as a subprocess (JSON logs, stdout/stderr captured)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        cli(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


async def run_cli(*args: str, timeout: float = 60) -> tuple[int, str, str]:
    """Run ``async-etl`` to the end: (exit status, stdout, stderr)."""
    proc = start_cli(*args)
    out, err = await asyncio.to_thread(proc.communicate, timeout=timeout)
    return proc.returncode, out, err


async def _wait_count(
    dsn: str, sql: str, arg: str, done: Callable[[int], bool], timeout: float, late: str
) -> int:
    """Poll the count ``sql`` gives for ``arg`` (0 while its table is missing) until ``done``
    says it is; raise ``TimeoutError(late)`` (``{n}``: the count) after ``timeout`` seconds.
    """
    conn = await asyncpg.connect(dsn)
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                n = int(await conn.fetchval(sql, arg))
            except asyncpg.UndefinedTableError:
                n = 0
            if done(n):
                return n
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(late.format(n=n))
            await asyncio.sleep(0.005)
    finally:
        await conn.close()


async def wait_committed(dsn: str, job: str, at_least: int, timeout: float = 30) -> int:
    """Wait until a RUNNING run of ``job`` has ``at_least`` committed chunks; their number."""
    sql = (
        "SELECT count(*) FROM async_etl_chunks c JOIN async_etl_runs r USING (run_id) "
        "WHERE r.job = $1 AND c.status = 'COMMITTED' AND r.status = 'RUNNING'"
    )
    return await _wait_count(dsn, sql, job, lambda n: n >= at_least, timeout,
                             f"{job}: only {{n}} chunks committed")  # fmt: skip


async def wait_gone(dsn: str, job: str, timeout: float = 30) -> None:
    """Wait until no server session of ``job``'s processes is left (a killed run's included)."""
    sql = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name LIKE $1"
    )
    await _wait_count(dsn, sql, f"async-etl:{job}:%", lambda n: n == 0, timeout,
                      f"{job}: {{n}} sessions still open")  # fmt: skip


async def wait_held(dsn: str, job: str, timeout: float = 30) -> int:
    """Wait until a session of ``job`` waits at a closed gate (an advisory lock); how many do."""
    sql = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name LIKE $1 AND wait_event = 'advisory'"
    )
    return await _wait_count(dsn, sql, f"async-etl:{job}:%", lambda n: n >= 1, timeout,
                             f"{job}: no session held at the gate")  # fmt: skip


def write(tmp: Path, name: str, text: str) -> Path:
    """Write a job file."""
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return path


async def killed_run(
    dsn: str, tmp: Path, job: str, *, seed: int, n_keys: int, sleep_s: float, committed: int
) -> tuple[Path, list[Row]]:
    """A type-2 ``async-etl run`` of ``job`` into a slow ``dw.dim``, SIGKILLed once at least
    ``committed`` chunks committed, held at a closed gate (``kill_at_gate``): its job file and
    the source rows.
    """
    rows = history(seed=seed, n_keys=n_keys, runs=1)[0]
    await load_source(dsn, rows)
    await slow_target(dsn, "dw.dim", sleep_s=sleep_s)
    path = write(tmp, f"{job}.toml", job_toml(job, dsn, "dw.dim", chunk_size=40))
    await kill_at_gate(dsn, job, committed, str(path), "--as-of", at(0).isoformat(),
                       "--log-format", "json")  # fmt: skip
    return path, rows


@asynccontextmanager
async def dml_role(dsn: str, server_dsn: str, schema: str = "public") -> AsyncIterator[str]:
    """A new role's DSN with only DML on ``schema``'s tables in ``dsn`` (no CREATE); dropped after.

    CREATE on public is revoked from PUBLIC in that database; another ``schema`` gets USAGE.
    """
    role = f"aetl_dml_{uuid.uuid4().hex[:8]}"
    await fetchval(server_dsn, f'CREATE ROLE "{role}" LOGIN')
    try:
        grants = ["REVOKE CREATE ON SCHEMA public FROM PUBLIC",
                  f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} '
                  f'TO "{role}"']  # fmt: skip
        if schema != "public":
            grants.append(f'GRANT USAGE ON SCHEMA {schema} TO "{role}"')
        for sql in grants:
            await fetchval(dsn, sql)
        as_role = dsn.replace("postgresql://postgres@", f"postgresql://{role}@", 1)
        assert as_role != dsn
        yield as_role
    finally:
        await fetchval(dsn, f'DROP OWNED BY "{role}"')
        await fetchval(server_dsn, f'DROP ROLE IF EXISTS "{role}"')
