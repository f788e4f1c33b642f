from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from async_etl.testing.crate import CrateStandIn, StandInConfig
from tests.keys import SUMMARY_KEYS


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "async_etl", "bench", "--log-format", "json", *args],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, **(env or {})},
    )


def _one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("async-etl: error: "), lines[0]
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--sink", "ftp://host/x"], "--sink 'ftp://host/x': unknown scheme 'ftp'"),
        (["--sink", "localhost:5432"], "not a URL"),
        (["--sink", "http://host:notaport"], "the port is not a number"),
        (["--sink", "null://", "--concurrency", "0"], "--concurrency: must be >= 1"),
        (["--sink", "null://", "--log-format", "xml"], "--log-format"),
        (["--sink", "null://", "--table", "a b"], "--table: must be name or schema.name"),
        (["--sink", "null://", "--json-out", "/"], "--json-out /: is a directory"),
        (["--sink", "null://", "--rate", "inf"], "--rate: must be a finite number, got inf"),
        (["--sink", "null://", "--table", "t" * 64], "--table: a name longer than 63 characters"),
        (["--sink", "null://", "--table", "s." + "t" * 64], "--table: a name longer than 63"),
        (["--sink", "null://", "-T", "nan"], "--duration: must be a finite number, got nan"),
        (["--sink", "null://", "--warmup", "inf"], "--warmup: must be a finite number, got inf"),
        (["--sink", "null://", "-T", "2", "--warmup", "5"], "--warmup: must be shorter than"),
        (["--sink", "null://", "--ramp", "9:1s", "--warmup", "1"], "--warmup: must be shorter"),
        (["--sink", "null://", "-n", "9", "--gzip-threshold", "-1"], "--gzip-threshold: must be"),
        (["--sink", "null://", "-n", "9", "--unlogged"], "--unlogged: applies to PostgreSQL"),
        (["--sink", "null://", "-n", "9", "--gzip-threshold", "0"], "--gzip-threshold: applies to"),
        (["--sink", "null://", "-n", "9" * 23], "--records: at most 9223372036854775807"),
        (["--sink", "null://", "-n", "9", "-c", "1" + "0" * 20], "--concurrency: at most 65535"),
        (["--sink", "null://", "-n", "9", "-R", "1e300"], "--rate: at most 9223372036854775807"),
    ],
)
def test_bad_flags_give_one_line_errors_and_exit_2(args: list[str], needle: str) -> None:
    """Unknown schemes, malformed URLs and bad values: one line naming the problem, exit 2."""
    proc = _cli(*args)
    assert proc.returncode == 2
    assert needle in _one_line_error(proc)


def test_bad_environment_value_names_the_variable() -> None:
    """A malformed ASYNC_ETL_BENCH_* variable is a one-line error naming it."""
    proc = _cli("--sink", "null://", env={"ASYNC_ETL_BENCH_CONCURRENCY": "lots"})
    assert proc.returncode == 2
    assert "ASYNC_ETL_BENCH_CONCURRENCY" in _one_line_error(proc)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[columns\nid = 1", "schema.toml"),
        (
            '[columns]\nid = { type = "bigint", gen = "sequence" }\n'
            'x = { type = "text", gen = "nope" }',
            "'x'",
        ),
    ],
)
def test_bad_schema_file_is_a_one_line_error(tmp_path: Path, text: str, needle: str) -> None:
    """A broken or invalid --schema file names the file and the column, exit 2."""
    path = tmp_path / "schema.toml"
    path.write_text(text)
    proc = _cli("--sink", "null://", "--schema", str(path))
    assert proc.returncode == 2
    line = _one_line_error(proc)
    assert str(path) in line or path.name in line
    assert needle in line


def test_missing_schema_file_is_a_one_line_error(tmp_path: Path) -> None:
    """A --schema path that does not exist is a one-line error."""
    proc = _cli("--sink", "null://", "--schema", str(tmp_path / "absent.toml"))
    assert proc.returncode == 2
    assert "absent.toml" in _one_line_error(proc)


def test_bad_credentials_exit_2_with_one_line_and_no_password() -> None:
    """A 401 from CrateDB stops the run before any batch: exit 2, one line, password masked."""
    with CrateStandIn(StandInConfig(user="crate", password="right")) as crate:
        url = crate.url.replace("http://", "http://crate:wrong@")
        proc = _cli("--sink", url, "--records", "5000", "--generators", "0")
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("async-etl: error:")]
    assert len(lines) == 1 and "401" in lines[0]
    assert "wrong" not in proc.stderr + proc.stdout


async def test_postgres_run_writes_summary_json_and_custom_schema(
    pg_dsn: str, tmp_path: Path
) -> None:
    """A custom schema lands as those columns; --json-out carries every documented key."""
    schema = tmp_path / "orders.toml"
    schema.write_text(
        "[columns]\n"
        'id = { type = "bigint", gen = "sequence" }\n'
        'email = { type = "text", gen = "email" }\n'
        'qty = { type = "int", gen = "int", min = 1, max = 3 }\n'
        'status = { type = "text", gen = "choice", values = ["a", "b"] }\n'
    )
    out = tmp_path / "summary.json"
    proc = _cli(
        "--sink",
        pg_dsn,
        "--records",
        "20000",
        "--schema",
        str(schema),
        "--table",
        "orders",
        "--generators",
        "1",
        "--json-out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data.keys() >= SUMMARY_KEYS
    assert data["records"] == 20_000 and data["reconciled"] == 20_000 and data["ok"]
    conn = await asyncpg.connect(pg_dsn)
    try:
        cols = [
            r[0]
            for r in await conn.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'orders' "
                "ORDER BY ordinal_position"
            )
        ]
        stats = await conn.fetchrow(
            "SELECT count(*), count(DISTINCT id), min(qty), max(qty), "
            "count(*) FILTER (WHERE status NOT IN ('a', 'b')) FROM orders"
        )
    finally:
        await conn.close()
    assert cols == ["id", "email", "qty", "status"]
    assert tuple(stats) == (20_000, 20_000, 1, 3, 0)
    assert "async-etl bench" in proc.stdout  # the summary table
    assert '"event": "throughput"' in proc.stderr or '"event":"throughput"' in proc.stderr


def test_null_sink_wire_option_is_validated() -> None:
    """null://?wire= accepts the three wire formats and names anything else in one line."""
    proc = _cli("--sink", "null://?wire=xml", "--records", "10")
    assert proc.returncode == 2
    assert "--sink 'null://?wire=xml': wire must be" in _one_line_error(proc)
    ok = _cli("--sink", "null://?wire=pg_binary", "--records", "1000", "--generators", "0")
    assert ok.returncode == 0, ok.stderr
    assert "null://?wire=pg_binary" in ok.stdout


def test_batches_too_big_for_memory_are_refused_before_generating(tmp_path: Path) -> None:
    """10 MB text rows x 5,000 per batch: one line naming --batch-size, exit 2, nothing run."""
    path = tmp_path / "big.toml"
    path.write_text(
        '[columns]\nid = { type = "bigint", gen = "sequence" }\n'
        'big = { type = "text", gen = "text", min_len = 10000000, max_len = 10000000 }\n'
    )
    proc = _cli("--sink", "null://", "--records", "10", "--schema", str(path))
    assert proc.returncode == 2
    assert "--batch-size 5000: rows of up to" in _one_line_error(proc)
    ok = _cli("--sink", "null://", "--records", "3", "--schema", str(path), "--batch-size", "2",
              "--generators", "0")  # fmt: skip
    assert ok.returncode == 0, ok.stderr


def test_unreachable_database_exits_2_like_run_with_paced_retries() -> None:
    """A refused PostgreSQL: paced retries, then one masked line and exit 2 (as ``run``)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://u@127.0.0.1:{port}/db?password=s3cret"
    proc = _cli("--sink", url, "--records", "10", "--generators", "0", "--max-retries", "2")
    assert proc.returncode == 2
    events = [json.loads(ln) for ln in proc.stderr.splitlines() if ln.startswith("{")]
    delays = [e["delay_s"] for e in events if e["event"] == "retrying"]
    assert len(delays) == 2 and delays[0] >= 0.25 and delays[1] >= 0.5
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("async-etl: error:")]
    assert len(errors) == 1 and "cannot use the sink" in errors[0]
    assert "s3cret" not in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
