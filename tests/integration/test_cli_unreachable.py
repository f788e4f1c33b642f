"""Every command against an unreachable source, target or state store: one masked line, exit 2.

The databases that answer are a fresh one (``pg_dsn``); the one that does not is a closed local
port with a password in its URL. The job and plan files allow one attempt (``[retry]
max_attempts = 1``), ``bench`` no retry, so no "retrying" line comes before the error.
"""

from __future__ import annotations

import socket
from pathlib import Path

import anyio
import pytest

from async_etl.core.retry import RetryPolicy
from async_etl.errors import ConfigError
from async_etl.orchestrator.slots import GlobalSlots
from tests.integration.jobs_helpers import fetchval, run_cli

SECRET = "QzS3CRET"


def _closed_port() -> int:
    """A local port nothing listens on (bound once, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _job(tmp: Path, source: str, target: str, state: str) -> Path:
    """A type-1 job file public.t -> public.t2 with one attempt per round trip."""
    path = tmp / "job.toml"
    path.write_text(
        f'name = "unreach"\n[source]\nurl = "{source}"\ntable = "public.t"\nkey = ["id"]\n'
        f'[target]\nurl = "{target}"\ntable = "public.t2"\n[state]\nurl = "{state}"\n'
        "[scd]\ntype = 1\n[retry]\nmax_attempts = 1\n"
    )
    return path


def _plan(tmp: Path, job: Path, state: str) -> Path:
    """A plan of ``job`` alone whose state store is ``state``, one attempt per round trip."""
    path = tmp / "plan.toml"
    path.write_text(
        f'name = "unreach_plan"\nstate = "{state}"\n[retry]\nmax_attempts = 1\n'
        f'[[jobs]]\nfile = "{job}"\n'
    )
    return path


def _copy(source: str, target: str, state: str) -> list[str]:
    return ["copy", "--source", source, "--source-table", "public.t", "--target", target,
            "--target-table", "public.t2", "--key", "id", "--mode", "merge", "--state", state,
            "--set", "retry.max_attempts=1"]  # fmt: skip


def _args(case: str, tmp: Path, source: str, target: str, state: str) -> list[str]:
    """The command line of ``case`` ('COMMAND-ROLE') for these three URLs."""
    command = case.rsplit("-", 1)[0]
    job = _job(tmp, source, target, state)
    if command in ("run", "check"):
        return [command, str(job)]
    if command in ("check-plan", "orchestrate", "stop-plan"):
        return [command.split("-")[0], str(_plan(tmp, job, state))]
    if command == "copy":
        return _copy(source, target, state)
    if command == "status":
        return ["status", "--state", state]
    if command == "stop-job":
        return ["stop", "unreach", "--state", state]
    return ["bench", "--sink", target, "-n", "100", "-j", "0", "--max-retries", "0"]


CASES = (
    *(f"{c}-{r}" for c in ("run", "check", "copy") for r in ("source", "target", "state")),
    *(f"{c}-state" for c in ("check-plan", "orchestrate", "status", "stop-job", "stop-plan")),
    "bench-target",
)
"""Each command and the database that does not answer: 'COMMAND-ROLE'."""


@pytest.mark.parametrize("case", CASES)
async def test_an_unreachable_database_is_one_masked_line_naming_it_once(
    case: str, pg_dsn: str, tmp_path: Path
) -> None:
    """Each command with one database at a closed port: exit 2, one line, URL once, masked."""
    await fetchval(pg_dsn, "CREATE TABLE public.t (id int PRIMARY KEY, v text)")
    port = _closed_port()
    bad = f"postgresql://postgres:{SECRET}@127.0.0.1:{port}/x"
    role = case.rsplit("-", 1)[1]
    urls = {r: bad if r == role else pg_dsn for r in ("source", "target", "state")}
    code, out, err = await run_cli(*_args(case, tmp_path, *urls.values()), timeout=120)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("async-etl: error: "), lines[0]
    # before (orchestrate): 'state store URL: cannot connect: state store URL: connection ...'
    assert lines[0].count(f"127.0.0.1:{port}") == 1, lines[0]
    assert f"postgresql://postgres:***@127.0.0.1:{port}/x" in lines[0], lines[0]
    assert SECRET not in err + out


async def test_a_global_slot_on_an_unreachable_store_names_it_once() -> None:
    """GlobalSlots.hold at a closed port: ConfigError naming the store once, masked."""
    port = _closed_port()
    slots = GlobalSlots(f"postgresql://postgres:{SECRET}@127.0.0.1:{port}/x", "ns", 1,
                        policy=RetryPolicy(max_retries=0))  # fmt: skip
    with pytest.raises(ConfigError) as raised:
        async with slots.hold(anyio.Event()):
            pass
    # before: 'state store URL: global slot: state store URL: connection problem: ...'
    assert raised.value.message.count(f"127.0.0.1:{port}") == 1, raised.value.message
    assert raised.value.message.startswith(
        f"state store postgresql://postgres:***@127.0.0.1:{port}/x: global slot: "
    ), raised.value.message
