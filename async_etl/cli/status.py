"""``async-etl status [JOB]``: recent runs from the state store, newest first, as a table.

JOB is a job name or a job file (whose ``[state] url`` is then used).  The state store is
``--state URL``, else ``$ASYNC_ETL_STATE_URL``, else the job file's.  A RUNNING run whose job
lock no process holds (the run was killed) shows as ``RUNNING (no live process: resumes on
the next run)``, and one that a later run of its job replaced (``--fresh``) as ``RUNNING (no
live process: a later run replaced it, never resumed)``; with ``--json`` their ``live`` is
false (true for a live RUNNING run, null for a finished one).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from async_etl.cli.help import BAD_INPUT, add_command
from async_etl.core.urls import dialect_of, mask_url, url_problem
from async_etl.core.waits import wait_problem
from async_etl.errors import ConfigError
from async_etl.jobs.spec import env_name, load_job
from async_etl.jobs.state import ONE_SHOT_OPEN_S, RunLife, RunRow, StateStore, with_store
from async_etl.runtime import loop

__all__ = ["NOT_LIVE", "REPLACED", "STATE_ENV", "add_state_flag", "main", "register", "resolve"]

NOT_LIVE = "no live process: resumes on the next run"
"""What a RUNNING run is when no process holds its job's lock (the run was killed)."""
REPLACED = "no live process: a later run replaced it, never resumed"
"""What a RUNNING run is when a later run of its job took its place (``run --fresh``)."""
NOTES: dict[RunLife, str] = {"killed": NOT_LIVE, "replaced": REPLACED}
"""The note on a RUNNING run that is not live, by what it is (``StateStore.run_lives``)."""

STATE_ENV = ((env_name("state", "url"), "the state store URL, when --state is not given"),)


def register(sub: Any) -> None:
    """Add the ``status`` subcommand to the top-level parser."""
    p = add_command(
        sub,
        "status",
        help="show recent job runs",
        doc=__doc__,
        exit_codes={0: "the runs were printed", 2: BAD_INPUT},
        env=STATE_ENV,
    )
    p.add_argument("job", nargs="?", default=None, metavar="JOB",
                   help="job name or job file (default: every job)")  # fmt: skip
    add_state_flag(p)
    p.add_argument("--limit", type=_positive, default=20, metavar="N",
                   help="runs to show (default 20)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    p.set_defaults(handler=main)


def add_state_flag(p: argparse.ArgumentParser) -> None:
    """The ``--state URL`` and ``--timeout SECONDS`` flags shared by ``status`` and ``stop``."""
    p.add_argument("--state", default=None, metavar="URL",
                   help=f"state store URL (default: ${env_name('state', 'url')} or the job "
                   "file's [state] url)")  # fmt: skip
    p.add_argument("--timeout", type=_seconds, default=ONE_SHOT_OPEN_S, metavar="SECONDS",
                   help="give up opening the state store after SECONDS, its one retry "
                   f"included (default {ONE_SHOT_OPEN_S:g})")  # fmt: skip


def _seconds(text: str) -> float:
    """An argparse type: seconds that bound a wait (``core.waits``; one line, exit 2)."""
    try:
        value: object = float(text)
    except ValueError:
        value = text
    if (problem := wait_problem(value, repr(text))) is not None:
        raise argparse.ArgumentTypeError(problem)
    return float(text)


def _positive(text: str) -> int:
    """An argparse type: a whole number >= 1 (argparse turns the error into one line, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def resolve(arg: str | None, state: str | None) -> tuple[str | None, str]:
    """(job name or run id or None, state URL) from the argument and flags.

    Raises ``ConfigError`` when no state URL can be found or it is not PostgreSQL.
    """
    name = arg
    url = state or os.environ.get(env_name("state", "url"))
    if arg is not None and arg.endswith(".toml") and Path(arg).is_file():
        spec = load_job(arg, env=os.environ)
        name = spec.name
        if url is None:
            url = spec.state.url
    if url is None:
        raise ConfigError(f"no state store: give --state URL, set {env_name('state', 'url')}, "
                          "or name a job file")  # fmt: skip
    if dialect_of(url) != "postgresql":
        raise ConfigError(f"--state: {mask_url(url)} is not a PostgreSQL URL")
    if (problem := url_problem(url)) is not None:
        raise ConfigError(f"--state: {mask_url(url)}: {problem}")
    return name, url


def main(args: argparse.Namespace) -> int:
    """Print the runs; returns 0 (2 for a bad state URL, via ``ConfigError``)."""
    job, url = resolve(args.job, args.state)

    async def fetch(store: StateStore) -> tuple[list[RunRow], list[str], dict[str, RunLife]]:
        starting = [j for j in await store.starting_jobs() if job is None or j == job]
        runs = await store.recent_runs(job, args.limit)
        lives = await store.run_lives(r.run_id for r in runs if r.status == "RUNNING")
        return runs, starting, lives

    runs, starting, lives = loop.run(lambda: with_store(url, "status", fetch, within=args.timeout))
    if not args.json:
        for name in starting:
            print(f"{name}: starting (preflight / planning; no run recorded yet)")
    if not runs and not args.json:
        what = f"of job {job} " if job is not None else ""
        print(f"no runs {what}recorded in {mask_url(url)}")
        return 0
    if args.json:
        for r in runs:
            print(orjson.dumps(_row_dict(r, lives)).decode())
        return 0
    print_runs(runs, lives=lives)
    return 0


def _row_dict(r: RunRow, lives: dict[str, RunLife]) -> dict[str, Any]:
    out = {name: getattr(r, name) for name in RunRow.__dataclass_fields__}
    for key in ("as_of", "started_at", "finished_at"):
        out[key] = out[key].isoformat() if out[key] is not None else None
    out["live"] = lives.get(r.run_id) == "live" if r.status == "RUNNING" else None
    return out


def _status(r: RunRow, lives: dict[str, RunLife] | None) -> str:
    """The run's status; a RUNNING run that is not live says why (``NOTES``)."""
    life = lives.get(r.run_id, "live") if lives is not None and r.status == "RUNNING" else "live"
    return f"{r.status} ({NOTES[life]})" if life != "live" else r.status


def print_runs(
    runs: list[RunRow], console: Console | None = None, *, lives: dict[str, RunLife] | None = None
) -> None:
    """The runs as a rich table on stdout; ``lives``: what each RUNNING run is (None: unknown)."""
    table = Table(title="async-etl runs", title_justify="left")
    for col in ("run_id", "job", "status", "as_of", "started", "finished", "read",
                "inserted", "updated", "expired", "deleted", "rejected", "error"):  # fmt: skip
        table.add_column(col, justify="right" if col in _NUMBERS else "left")
    for r in runs:
        table.add_row(
            r.run_id, r.job, _status(r, lives), _ts(r.as_of), _ts(r.started_at), _ts(r.finished_at),
            *(f"{v:,}" for v in (r.rows_read, r.inserted, r.updated, r.expired, r.deleted,
                                 r.rejected)),
            (r.error or "")[:80],
        )  # fmt: skip
    (console or Console(soft_wrap=True, width=None if sys.stdout.isatty() else 240)).print(table)


_NUMBERS = frozenset({"read", "inserted", "updated", "expired", "deleted", "rejected"})


def _ts(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""
