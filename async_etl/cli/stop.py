"""``async-etl stop JOB_OR_RUN_ID_OR_PLAN``: ask a running job or plan to stop at a safe point.

For a job: writes a stop request into the state store (``async_etl_stop_requests``) for every
RUNNING run of the job (or the one run with that id); a job still starting (preflight,
planning) is asked too, and stops as soon as its run is recorded, before any chunk. The job
polls it before each chunk and between batches: chunks in flight finish or roll back, the run
ends STOPPED (exit status 3), and the next ``async-etl run`` resumes it. For a plan (its name,
or its plan file): the orchestrator running it stops launching, asks its running jobs to stop,
and exits with everything resumable.  A job whose RUNNING run has no live process (killed:
no process holds the job's lock) is told so in one line, exit status 1, and no request is
written: the next ``async-etl run`` resumes that run (or none, when a later run of the job,
``--fresh``, replaced it; the line says which).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from async_etl.cli.check import is_plan
from async_etl.cli.help import BAD_INPUT, add_command
from async_etl.cli.status import NOTES, STATE_ENV, add_state_flag, resolve
from async_etl.jobs.state import StateStore, starting_key, with_store
from async_etl.orchestrator.plan import load_plan
from async_etl.runtime import loop

__all__ = ["main", "register"]


def register(sub: Any) -> None:
    """Add the ``stop`` subcommand to the top-level parser."""
    p = add_command(
        sub,
        "stop",
        help="ask a running job or plan to stop",
        doc=__doc__,
        exit_codes={
            0: "a stop request was written",
            1: "nothing of that name is running (a killed run, no live process, included)",
            2: BAD_INPUT,
        },
        env=STATE_ENV,
    )
    p.add_argument(
        "target",
        metavar="JOB_OR_RUN_ID_OR_PLAN",
        help="job name, job file, run id, plan name or plan file",
    )
    add_state_flag(p)
    p.set_defaults(handler=main)


def _plan_file(arg: str) -> bool:
    """True when ``arg`` is a ``.toml`` file that ``check`` takes for a plan (``[[jobs]]``)."""
    return Path(arg).suffix == ".toml" and Path(arg).is_file() and is_plan(arg)


def _stop_plan(url: str, name: str, within: float) -> bool:
    from async_etl.orchestrator import request_plan_stop

    return loop.run(lambda: request_plan_stop(url, name, within=within))


def _nothing_running(name: str) -> int:
    """Say that nothing named ``name`` runs, in the one wording of every path; returns 1.

    A plan file and a name (job, run id or plan) find nothing the same way: no RUNNING job
    run and no orchestrator of a plan of that name.
    """
    print(f"async-etl: no RUNNING job run or plan named {name!r}", file=sys.stderr)
    return 1


def main(args: argparse.Namespace) -> int:
    """Write the stop request(s); returns the exit status (see module doc)."""
    if _plan_file(args.target):
        plan = load_plan(args.target)
        _, url = resolve(None, args.state or plan.state)  # a PostgreSQL URL, or ConfigError
        if _stop_plan(url, plan.name, args.timeout):
            print(f"stop requested for plan {plan.name}")
            return 0
        return _nothing_running(plan.name)
    name, url = resolve(args.target, args.state)
    assert name is not None

    async def request(store: StateStore) -> tuple[list[str], list[str]]:
        """(runs asked to stop, RUNNING runs with no live process, left alone, with why)."""
        await store.ensure()
        running = await store.running_runs(name)
        lives = await store.run_lives(run_id for run_id, _ in running)
        if running and "live" not in lives.values():
            return [], [f"{run_id} is RUNNING with {NOTES[life]}" for run_id, life in lives.items()]
        runs = await store.request_stop(name)
        if not runs and await store.request_starting_stop(name):
            return [starting_key(name)], []
        return runs, []

    runs, dead = loop.run(lambda: with_store(url, "stop", request, within=args.timeout))
    if dead:
        print(f"async-etl: {name!r} is not running: run {'; run '.join(dead)}", file=sys.stderr)
        return 1
    if not runs:
        if _stop_plan(url, name, args.timeout):
            print(f"stop requested for plan {name}")
            return 0
        return _nothing_running(name)
    for run_id in runs:
        starting = run_id == starting_key(name)
        print(
            f"stop requested for {f'job {name} (still starting)' if starting else f'run {run_id}'}"
        )
    return 0
