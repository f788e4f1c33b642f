"""No password reaches any output of bench, run, orchestrate, status or compare.

Each example draws a URL with secrets in a different position (user-info with unescaped
``@ / ? #``, ``?password=``, ``?sslpassword=``, ``?token=``, ...) and runs a real command with it:
against a closed port (every retry event and the final error) and, percent-encoded, against the
real PostgreSQL (trust authentication ignores the password): summaries, tables, JSON files.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings

from tests.secrets_strategies import Secret, leaked, secret_urls

pytestmark = pytest.mark.timeout(600)

# few examples, no shrinking: each one is a process (a failure still names its URL)
FEW = settings(
    max_examples=2,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PORT = _closed_port()


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ASYNC_ETL_BENCH_MAX_RETRIES": "1"}
    return subprocess.run(
        [sys.executable, "-m", "async_etl", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=cwd,
    )


def _outputs(proc: subprocess.CompletedProcess[str], *files: Path) -> str:
    """stdout, stderr and every file written under ``files`` (directories walked)."""
    texts = [proc.stdout, proc.stderr]
    for path in files:
        found = sorted(path.rglob("*")) if path.is_dir() else [path]
        texts += [p.read_bytes().decode("latin-1") for p in found if p.is_file()]
    return "\n".join(texts)


def _job(tmp: Path, name: str, url: str, table: str = "src") -> Path:
    path = tmp / f"{name}.toml"
    path.write_text(
        f"name = {json.dumps(name)}\n[source]\nurl = {json.dumps(url)}\n"
        f'query = "SELECT id, v FROM {table}"\nkey = ["id"]\n'
        f'[target]\nurl = {json.dumps(url)}\ntable = "dw_{name}"\n[scd]\ntype = 1\n'
        # one quick retry, as ASYNC_ETL_BENCH_MAX_RETRIES=1 for bench: a retry event is still
        # written, without the default backoff's ~13 s against a closed port
        "[retry]\nmax_attempts = 2\nbase_delay = 0.05\n"
    )
    return path


def _plan(tmp: Path, name: str, url: str, job: Path) -> Path:
    path = tmp / f"plan_{name}.toml"
    path.write_text(
        f"name = {json.dumps(name)}\nstate = {json.dumps(url)}\n"
        f"[[jobs]]\nfile = {json.dumps(str(job))}\n"
    )
    return path


def _commands(command: str, url: str, tmp: Path) -> tuple[list[str], list[Path]]:
    """The argument list of ``command`` using ``url`` everywhere, and the files it writes."""
    name = f"j{uuid.uuid4().hex[:8]}"
    out = tmp / f"{name}.json"
    if command in ("bench", "bench-threads"):
        mode = "threads" if command == "bench-threads" else "async"
        args = ["bench", "--sink", url, "--records", "200", "--generators", "0"]
        return [*args, "--mode", mode, "--max-retries", "1", "--json-out", str(out)], [out]
    if command == "run":
        return ["run", str(_job(tmp, name, url)), "--json-out", str(out)], [out]
    if command == "orchestrate":
        plan = _plan(tmp, name, url, _job(tmp, name, url))
        return ["orchestrate", str(plan), "--json-out", str(out)], [out]
    if command == "status":
        return ["status", "--state", url], []
    scenario = "network" if url.startswith("http") else "database"
    outdir = tmp / name
    args = ["compare", "--scenario", scenario, "--sink", url, "--concurrency", "1"]
    args += ["--records", "200", "--generators", "0", "--warmup", "0", "--out", str(outdir)]
    return args, [outdir]


COMMANDS = ["bench", "bench-threads", "run", "orchestrate", "status", "compare"]


ISSUE_CASE = (
    f"postgresql://u@127.0.0.1:{PORT}/db?password=QzS3CRET",
    Secret("QzS3CRET", ("QzS3CRET",)),
)
CRATE_CASE = (f"http://crate:QzPW1234@127.0.0.1:{PORT}", Secret("QzPW1234", ("QzPW1234",)))


@pytest.mark.parametrize("command", COMMANDS)
@FEW
@example(case=ISSUE_CASE)
@example(case=CRATE_CASE)
@given(case=secret_urls(port=PORT))
def test_unreachable_server_outputs_hold_no_secret(
    command: str, case: tuple[str, Secret], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Against a closed port: every retry event, error line and file is free of the secret."""
    url, secret = case
    tmp = tmp_path_factory.mktemp("unreachable")
    args, files = _commands(command, url, tmp)
    proc = _cli(*args)
    assert proc.returncode in (1, 2), proc.stderr
    assert "Traceback" not in proc.stderr
    assert leaked(_outputs(proc, *files), secret) == []


async def _seed(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE TABLE src (id int PRIMARY KEY, v text);"
            "INSERT INTO src SELECT i, 'v' || i FROM generate_series(1, 50) i"
        )
    finally:
        await conn.close()


def _with_secret(dsn: str, case: tuple[str, Secret]) -> str:
    """``dsn`` carrying the (percent-encoded) secret where the drawn URL carries it."""
    url, _ = case
    head, _, _ = url.partition("@")
    query = url.partition("?")[2]
    user = head.partition("://")[2]  # "u" or "u:ENCODED"
    password = user.partition(":")[2]
    base = dsn.replace("postgres@", f"postgres:{password}@", 1) if password else dsn
    return f"{base}{'&' if '?' in base else '?'}{query}" if query else base


@pytest.mark.parametrize("command", COMMANDS)
@FEW
@given(case=secret_urls(encoded=True).filter(lambda c: not c[0].startswith("http")))
def test_reachable_server_outputs_hold_no_secret(
    command: str, case: tuple[str, Secret], pg_dsn: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A run that works: summaries, status tables and JSON files are free of the secret."""
    tmp = tmp_path_factory.mktemp("reachable")
    if command in ("run", "orchestrate", "status"):
        with contextlib.suppress(asyncpg.DuplicateTableError):
            asyncio.run(_seed(pg_dsn))
    url = _with_secret(pg_dsn, case)
    args, files = _commands(command, url, tmp)
    if command == "status":
        _cli("run", str(_job(tmp, "status_job", url)))
        args += ["--limit", "5"]
    proc = _cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert leaked(_outputs(proc, *files), case[1]) == []
    if command == "status":
        assert "status_job" in proc.stdout
