from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from async_etl.core.waits import WAIT_RULE
from async_etl.jobs.state import with_store
from async_etl.orchestrator import request_plan_stop

PLAN = Path(__file__).resolve().parents[2] / "examples" / "plans" / "nightly.toml"
JOB = Path(__file__).resolve().parents[2] / "examples" / "jobs" / "dim_customer.toml"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "async_etl", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["status", "--limit", "-1", "--state", "postgresql://u@h/db"], "--limit: must be >= 1"),
        (["stop", str(PLAN), "--state", "notaurl"], "notaurl is not a PostgreSQL URL"),
        (
            [
                "compare",
                "--batch-size",
                "0",
                "--out",
                "/tmp/x",
                "--concurrency",
                "1",
                "--records",
                "9",
            ],
            "--batch-size: must be >= 1",
        ),
        (["run", str(JOB), "--json-out", "/"], "--json-out /: is a directory"),
        (["orchestrate", str(PLAN), "--json-out", "/"], "--json-out /: is a directory"),
    ],
)
def test_bad_command_inputs_are_one_line_errors_before_any_work(
    args: list[str], needle: str
) -> None:
    """Bad --limit / --state / --batch-size / --json-out: one stderr line, exit 2, no traceback."""
    proc = _cli(*args)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert needle in lines[-1]


def test_status_of_a_database_without_state_tables_says_no_runs(pg_dsn: str) -> None:
    """status --state on a database no job has used: 'no runs recorded', exit 0, no traceback."""
    proc = _cli("status", "--state", pg_dsn)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("no runs recorded in postgresql://") and proc.stderr == ""
    proc = _cli("status", "nightly", "--state", pg_dsn)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("no runs of job nightly recorded in postgresql://")


def test_full_refresh_of_an_incremental_job_names_the_flag_typed(tmp_path: Path) -> None:
    """run JOB --full-refresh on an incremental job: the line names --full-refresh, not --set."""
    job = tmp_path / "inc.toml"
    job.write_text(
        'name = "inc"\n[source]\nurl = "postgresql://u@h/db"\ntable = "s"\nkey = ["id"]\n'
        'incremental = "ts"\n[target]\nurl = "postgresql://u@h/db"\ntable = "t"\n'
    )
    proc = _cli("run", str(job), "--full-refresh")
    assert proc.returncode == 2, proc.stderr
    assert "--full-refresh: full_refresh reads the whole source" in proc.stderr
    assert "--set" not in proc.stderr


@pytest.mark.parametrize("command", ["status", "stop"])
def test_status_and_stop_on_a_missing_database_exit_2(command: str, pg_dsn: str) -> None:
    """status / stop --state naming a database that does not exist: one line, exit 2 (not 1)."""
    missing = pg_dsn.rsplit("/", 1)[0] + "/async_etl_no_such_database"
    proc = _cli(command, *(["nightly"] if command == "stop" else []), "--state", missing)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(lines) == 1
    assert "async_etl_no_such_database" in lines[0] and "does not exist" in lines[0]


def _closed_port() -> int:
    """A local port nothing listens on (bound once, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("command", ["status", "stop"])
def test_status_and_stop_on_a_closed_port_fail_fast_in_one_line(command: str) -> None:
    """status / stop --state at a closed port: one masked line, exit 2, in seconds (was ~13 s)."""
    url = f"postgresql://u:QzS3CRET@127.0.0.1:{_closed_port()}/db"
    started = time.monotonic()
    proc = _cli(command, *(["nightly"] if command == "stop" else []), "--state", url)
    took = time.monotonic() - started
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("async-etl: error: state store: PostgreSQL postgresql://u:***@")
    assert "Connection refused" in lines[0] and "QzS3CRET" not in proc.stderr + proc.stdout
    assert took < 5, took  # the run's 8 connect retries took ~13 s


@pytest.mark.parametrize("command", [["status"], ["stop", str(PLAN)]], ids=["status", "stop-plan"])
def test_status_and_stop_plan_against_a_server_that_never_answers_give_up(
    command: list[str],
) -> None:
    """A port that takes the connection and never answers (a hung server): one line, exit 2."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshake; nothing ever replies
        port = int(silent.getsockname()[1])
        started = time.monotonic()
        proc = _cli(*command, "--state", f"postgresql://u:QzS3CRET@127.0.0.1:{port}/db")
        took = time.monotonic() - started
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0] == (f"async-etl: error: state store: PostgreSQL postgresql://u:***@127.0.0.1:"
                        f"{port}/db: no answer within 5 s")  # fmt: skip
    assert took < 15, took  # before: a 15 s connect timeout, 9 attempts


@pytest.mark.parametrize(
    "command",
    [["status"], ["stop", "nightly"], ["stop", str(PLAN)]],
    ids=["status", "stop", "stop-plan"],
)
def test_status_and_stop_timeout_sets_how_long_they_wait_for_the_store(command: list[str]) -> None:
    """--timeout 0.5 against a server that never answers: the one line names 0.5 s, not 5 s."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshake; nothing ever replies
        port = int(silent.getsockname()[1])
        proc = _cli(*command, "--timeout", "0.5", "--state", f"postgresql://u@127.0.0.1:{port}/db")
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr
    assert lines == [f"async-etl: error: state store: PostgreSQL postgresql://u@127.0.0.1:"
                     f"{port}/db: no answer within 0.5 s"], proc.stderr  # fmt: skip


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
@pytest.mark.parametrize("command", [["status"], ["stop", "nightly"]])
def test_status_and_stop_refuse_a_timeout_that_is_not_seconds(
    command: list[str], value: str
) -> None:
    """--timeout 0 / -1 / nan / inf / a word: one line naming the flag and the value, exit 2."""
    proc = _cli(*command, "--timeout", value, "--state", "postgresql://u@127.0.0.1:1/db")
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[-1].endswith(
        f"argument --timeout: expected seconds, a finite number > 0, got {value!r}"
    ), proc.stderr


@pytest.mark.parametrize("within", [0, -1.0, float("nan"), float("inf")])
async def test_with_store_and_request_plan_stop_refuse_a_bad_within(within: float) -> None:
    """From code, ``within=`` that is not seconds > 0 is a ValueError naming it, before I/O."""

    async def nothing(store: object) -> None:
        raise AssertionError("opened a store")

    url = "postgresql://u@127.0.0.1:1/db"
    with pytest.raises(ValueError, match=rf"^within: {WAIT_RULE}, got {within!r}$"):
        await with_store(url, "status", nothing, within=within)
    with pytest.raises(ValueError, match=rf"^within: {WAIT_RULE}, got {within!r}$"):
        await request_plan_stop(url, "p", within=within)


@pytest.mark.parametrize(
    "url",
    ["postgresql://postgres@127.0.0.1:{port}/x", "postgresql://u:QzS3CRET@127.0.0.1:{port}/x"],
)
def test_stop_plan_on_a_closed_port_names_the_url_once_in_seconds(url: str) -> None:
    """stop PLAN --state at a closed port: exit 2, one line, the masked URL once (was ~9 s)."""
    port = _closed_port()
    started = time.monotonic()
    proc = _cli("stop", str(PLAN), "--state", url.format(port=port))
    took = time.monotonic() - started
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    shown = url.format(port=port).replace("QzS3CRET", "***")
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(f"async-etl: error: state store: PostgreSQL {shown}: "), lines[0]
    assert lines[0].count(f"127.0.0.1:{port}") == 1 and "Connection refused" in lines[0]
    assert "QzS3CRET" not in proc.stderr + proc.stdout
    assert took < 5, took  # the run's 8 connect retries took ~9 s
