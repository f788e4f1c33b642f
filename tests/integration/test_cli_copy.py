"""`async-etl copy` (a job from flags) and `async-etl run -` (a job file from stdin)."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from async_etl.cli import build_parser
from async_etl.cli.copy import spec_from_args
from async_etl.errors import ConfigError
from async_etl.jobs.spec import parse_job
from tests.integration.jobs_helpers import (
    NAMES,
    cli,
    fetchval,
    history,
    load_source,
    run_cli,
    table_rows,
)

PG = "postgresql://postgres@127.0.0.1:5432/db"
CRATE = "http://127.0.0.1:4200"


def copy_args(*flags: str) -> Any:
    """The parsed ``copy`` command line."""
    return build_parser().parse_args(["copy", *flags])


@pytest.mark.parametrize(("flags", "file"), [
    (["--mode", "merge", "--key", "id"],
     'name = "copy_dw_t"\n[source]\nurl = "{pg}"\ntable = "src.t"\nkey = ["id"]\n'
     '[target]\nurl = "{pg}"\ntable = "dw.t"\n[scd]\ntype = 1\n'),
    (["--mode", "scd2", "--key", "a,b", "--name", "n"],
     'name = "n"\n[source]\nurl = "{pg}"\ntable = "src.t"\nkey = ["a", "b"]\n'
     '[target]\nurl = "{pg}"\ntable = "dw.t"\n'),
    (["--key", "id"],
     'name = "copy_dw_t"\nmode = "full_refresh"\n[source]\nurl = "{pg}"\ntable = "src.t"\n'
     'key = ["id"]\n[target]\nurl = "{pg}"\ntable = "dw.t"\n'),
    (["--mode", "merge", "--key", "id", "--incremental", "ts"],
     'name = "copy_dw_t"\nmode = "merge"\n[source]\nurl = "{pg}"\ntable = "src.t"\n'
     'key = ["id"]\nincremental = "ts"\n[target]\nurl = "{pg}"\ntable = "dw.t"\n'),
    (["--mode", "append", "--key", "id"],
     'name = "copy_dw_t"\nmode = "append"\n[source]\nurl = "{pg}"\ntable = "src.t"\n'
     'key = ["id"]\n[target]\nurl = "{pg}"\ntable = "dw.t"\n'),
    (["--mode", "replace", "--key", "id", "--set", "parallel.chunk_size=7"],
     'name = "copy_dw_t"\nmode = "replace"\n[source]\nurl = "{pg}"\ntable = "src.t"\n'
     'key = ["id"]\n[target]\nurl = "{pg}"\ntable = "dw.t"\n[parallel]\nchunk_size = 7\n'),
])  # fmt: skip
def test_copy_flags_map_to_the_same_job_as_the_file(flags: list[str], file: str) -> None:
    """Each flag set gives the JobSpec of its equivalent job file (all but the path)."""
    args = copy_args("--source", PG, "--source-table", "src.t", "--target", PG,
                     "--target-table", "dw.t", *flags)  # fmt: skip
    got = spec_from_args(args)
    want = parse_job(file.format(pg=PG), env={})
    assert got.path == "<copy flags>"
    fields = ("name", "mode", "source", "target", "state", "scd", "parallel", "on_bad_row")
    assert [getattr(got, f) for f in fields] == [getattr(want, f) for f in fields]


@pytest.mark.parametrize(("flags", "message"), [
    (["--mode", "append", "--key", "id", "--target", CRATE, "--state", PG],
     "append is exactly once only"),
    (["--source", "oracle://scott:tiger@127.0.0.1:1/svc"],
     "copy --key: required (or set ASYNC_ETL_SOURCE_KEY)"),
    (["--key", "id", "--target", CRATE], "copy --state: required"),
    (["--key", "id", "--incremental", "v", "--full-refresh"],
     "copy: --full-refresh: full_refresh reads the whole source: remove --incremental"),
])  # fmt: skip
def test_bad_copy_flags_are_the_job_files_one_line_errors(flags: list[str], message: str) -> None:
    """Flags go through the job file's validation: one line naming the flag the user typed."""
    target = [] if "--target" in flags else ["--target", PG]
    args = copy_args("--source", PG, "--source-table", "src.t", *target,
                     "--target-table", "dw.t", *flags)  # fmt: skip
    with pytest.raises(ConfigError) as info:
        spec_from_args(args)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("key", [[], ["--key", "id"]])
@pytest.mark.parametrize("flag", ["--source-table", "--target-table"])
def test_a_three_part_table_flag_is_refused_before_any_connection(
    monkeypatch: pytest.MonkeyPatch, flag: str, key: list[str]
) -> None:
    """``a.b.c`` as either table flag: one line naming the flag, and no connection is tried."""

    async def no_connection(*args: object, **kwargs: object) -> None:
        raise AssertionError("connected")

    monkeypatch.setattr("async_etl.drivers.postgres.connect_job", no_connection)
    tables = {"--source-table": "src.t", "--target-table": "dw.t", flag: "a.b.c"}
    args = copy_args("--source", PG, "--target", PG, *key,
                     *(x for pair in tables.items() for x in pair))  # fmt: skip
    with pytest.raises(ConfigError) as info:
        spec_from_args(args)
    assert str(info.value) == f"copy {flag}: bad identifier 'a.b.c' (want name or schema.name)"


@pytest.mark.parametrize("port", ["99999", "0x10", "-1"])
def test_a_source_url_with_a_bad_port_is_refused_before_any_connection(
    monkeypatch: pytest.MonkeyPatch, port: str
) -> None:
    """No ``--key`` and a source port past 65535: one line naming ``--source``, no connection."""
    # The key look-up connected first and the driver's OverflowError ended in a traceback.

    async def no_connection(*args: object, **kwargs: object) -> None:
        raise AssertionError("connected")

    monkeypatch.setattr("async_etl.drivers.postgres.connect_job", no_connection)
    source = f"postgresql://u:hunter2@127.0.0.1:{port}/db"
    args = copy_args("--source", source, "--source-table", "t", "--target", PG,
                     "--target-table", "t")  # fmt: skip
    with pytest.raises(ConfigError) as info:
        spec_from_args(args)
    message = str(info.value)
    assert message.startswith("copy --source: postgresql://u:***@127.0.0.1:")
    assert "port is not a number" in message and "hunter2" not in message
    assert "\n" not in message


def copy_cli(pg_dsn: str, table: str, *flags: str) -> list[str]:
    """The ``copy`` command line from ``src.t`` into ``table`` on ``pg_dsn``."""
    return ["copy", "--source", pg_dsn, "--source-table", "src.t", "--target", pg_dsn,
            "--target-table", table, *flags]  # fmt: skip


async def test_copy_replace_then_append_end_to_end(pg_dsn: str) -> None:
    """`copy` replaces one table, and appends twice to another, as a job file would."""
    (rows,) = history(seed=2, n_keys=300, runs=1)
    await load_source(pg_dsn, rows)
    base = copy_cli(pg_dsn, "dw.cp", "--key", "a,b")
    code, out, err = await run_cli(*base)
    assert code == 0, err
    assert "copy_dw_cp SUCCEEDED" in out
    want = Counter(tuple(r[c] for c in NAMES) for r in rows)
    got = Counter(tuple(r[c] for c in NAMES) for r in await table_rows(pg_dsn, "dw.cp"))
    assert got == want
    append = [*base[:-3], "dw.ap", "--key", "a,b", "--mode", "append"]
    for _ in range(2):
        code, _, err = await run_cli(*append)
        assert code == 0, err
    got = Counter(tuple(r[c] for c in NAMES) for r in await table_rows(pg_dsn, "dw.ap"))
    assert got == want + want


async def test_run_dash_reads_the_job_from_stdin(pg_dsn: str, tmp_path: Path) -> None:
    """`run -` runs the job file given on stdin; a bad one is one line, exit 2."""
    (rows,) = history(seed=3, n_keys=90, runs=1)
    await load_source(pg_dsn, rows)
    text = (f'name = "stdin"\nmode = "full_refresh"\n[source]\nurl = "{pg_dsn}"\n'
            f'table = "src.t"\nkey = ["a", "b"]\n[target]\nurl = "{pg_dsn}"\n'
            'table = "dw.sd"\n')  # fmt: skip

    def run(stdin: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(cli("run", "-"), input=stdin, capture_output=True, text=True,
                              env=dict(os.environ), timeout=60)  # fmt: skip

    done = await asyncio.to_thread(run, text)
    assert done.returncode == 0, done.stderr
    assert "stdin SUCCEEDED" in done.stdout
    assert len(await table_rows(pg_dsn, "dw.sd")) == len(rows)
    bad = await asyncio.to_thread(run, text.replace('mode = "full_refresh"', 'mode = "nope"'))
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "<stdin>: mode:" in bad.stderr


async def test_copy_without_key_from_a_missing_table_names_the_table(pg_dsn: str) -> None:
    """No --key and no such source table: one line naming the table (password masked), exit 2."""
    source = pg_dsn.replace("postgres@", "postgres:hunter2@", 1)
    code, out, err = await run_cli("copy", "--source", source, "--source-table", "src.missing",
                                   "--target", pg_dsn, "--target-table", "dw.nokey",
                                   "--mode", "merge")  # fmt: skip
    assert code == 2, out
    masked = source.replace("hunter2", "***")
    assert "hunter2" in source and "hunter2" not in err, err
    assert err == f"async-etl: error: copy --source-table: no table src.missing in {masked}\n"


NO_CONNECTION = "async-etl: error: copy --source: cannot connect to read the primary key of src.t"
"""How a refused connection during ``copy``'s key look-up begins: the source, not ``--key``."""


async def test_copy_without_key_from_an_unreachable_source_says_why(pg_dsn: str) -> None:
    """No --key, source refusing connections: one line blaming the connection, password masked."""
    source = "postgresql://postgres:hunter2@127.0.0.1:1/db"
    code, out, err = await run_cli("copy", "--source", source, "--source-table", "src.t",
                                   "--target", pg_dsn, "--target-table", "dw.t",
                                   "--set", "retry.max_attempts=1")  # fmt: skip
    assert code == 2, out
    assert err.count("\n") == 1 and err.startswith(NO_CONNECTION), err
    assert "ConnectionRefusedError" in err and "--key" in err and "required" not in err, err
    assert "postgres:***@127.0.0.1:1/db" in err and "hunter2" not in err, err


async def test_copy_without_key_retries_an_unreachable_source_as_a_run_does(pg_dsn: str) -> None:
    """No --key: the key look-up meets a refused connection with the job's [retry] policy."""
    # It failed at once, where the run with --key waits for a restarting server; here
    # ``retry.max_attempts=3`` gives two ``retrying`` events, then the one error line.
    source = "postgresql://postgres:hunter2@127.0.0.1:1/db"
    code, out, err = await run_cli("copy", "--source", source, "--source-table", "src.t",
                                   "--target", pg_dsn, "--target-table", "dw.t", "--set",
                                   "retry.max_attempts=3", "--set", "retry.max_delay=0.1",
                                   "--log-format", "json")  # fmt: skip
    lines = err.splitlines()
    assert code == 2, out
    assert sum('"retrying"' in line for line in lines) == 2, err
    assert lines[-1].startswith(NO_CONNECTION) and "hunter2" not in err, err


async def test_copy_without_key_reads_the_mixed_case_table_it_copies(pg_dsn: str) -> None:
    """Source table MiXed (keyed on k) beside mixed (keyed on id): the key is MiXed's k."""
    await fetchval(pg_dsn, 'CREATE TABLE "MiXed" (k int PRIMARY KEY, v text)')
    await fetchval(pg_dsn, "CREATE TABLE mixed (id int PRIMARY KEY, k int, v text)")
    spec = await asyncio.to_thread(spec_from_args, copy_args(
        "--source", pg_dsn, "--source-table", "MiXed", "--target", pg_dsn,
        "--target-table", "dw.m"))  # fmt: skip
    assert spec.source.key == ("k",)


async def test_copy_without_key_uses_the_source_primary_key(pg_dsn: str) -> None:
    """No --key: the source's primary key is the key; a source without one is one line, exit 2."""
    (rows,) = history(seed=4, n_keys=120, runs=1)
    await load_source(pg_dsn, rows)
    base = copy_cli(pg_dsn, "dw.nokey", "--mode", "merge")
    code, out, err = await run_cli(*base)
    assert code == 2, out
    assert err.count("\n") == 1 and "copy --key: required" in err, err
    assert "src.t has no primary key" in err
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("ALTER TABLE src.t ADD PRIMARY KEY (b, a)")
    finally:
        await conn.close()
    spec = await asyncio.to_thread(spec_from_args, copy_args(*base[1:]))
    assert spec.source.key == ("b", "a")
    code, out, err = await run_cli(*base)
    assert code == 0, err
    got = [tuple(r[c] for c in NAMES) for r in await table_rows(pg_dsn, "dw.nokey")]
    assert sorted(got) == sorted(tuple(r[c] for c in NAMES) for r in rows)


@pytest.mark.parametrize("key", [[], ["--key", "id"]])
async def test_a_table_named_in_another_case_is_hinted(pg_dsn: str, key: list[str]) -> None:
    """--source-table NZ where only nz exists: one line, exit 2, naming nz as the near match."""
    await fetchval(pg_dsn, "CREATE TABLE IF NOT EXISTS public.nz (id integer PRIMARY KEY)")
    code, out, err = await run_cli("copy", "--source", pg_dsn, "--source-table", "NZ",
                                   "--target", pg_dsn, "--target-table", "dw.nz",
                                   "--mode", "merge", *key)  # fmt: skip
    assert code == 2, out
    assert err.count("\n") == 1 and "NZ" in err, err
    assert "a table nz exists (table names are matched exactly, case included)" in err, err
