"""``async-etl check JOB.toml|PLAN.toml|-``: a dry run that validates, connects and explains.

For a job: the estimate, the chunk plan, the statement that reads each chunk, the statements
each chunk runs on the target and, for a full refresh, the swap at the end.  For a plan: that
for every mapper job, then the order the jobs would start in and a critical-path guess
(estimated rows as each job's cost).  ``-`` reads a job file from stdin, as ``run -`` does.
Writes nothing; a problem is one line on stderr (passwords masked).
"""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from async_etl.cli import run
from async_etl.cli.help import BAD_INPUT, PLAN_NOT_FROM_STDIN, add_command
from async_etl.core import tomltext
from async_etl.core.dag import critical_path, topological_order
from async_etl.core.dryrun import JobFacts, report
from async_etl.errors import ConfigError
from async_etl.jobs.api import JobOptions
from async_etl.jobs.dryrun import check_job
from async_etl.jobs.spec import JobSpec, load_job, parse_job
from async_etl.orchestrator.driver import plan_budget
from async_etl.orchestrator.plan import load_plan
from async_etl.runtime import loop

__all__ = ["main", "plan_lines", "register"]


def register(sub: Any) -> None:
    """Add the ``check`` subcommand to the top-level parser."""
    p = add_command(
        sub,
        "check",
        help="dry run: validate a job or plan file, connect, print the chunk plan and its SQL",
        doc=__doc__,
        exit_codes={0: "the job or plan would run as printed", 2: BAD_INPUT},
        env=run.ENVIRONMENT,
    )
    p.add_argument("file", metavar="JOB_OR_PLAN.toml",
                   help="a job file or a plan file ('-': a job file from stdin)")  # fmt: skip
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.KEY=VALUE",
                   help="override a job-file key (repeatable)")  # fmt: skip
    p.set_defaults(handler=main)


def is_plan(path: str) -> bool:
    """True when the file at ``path`` is a plan (it has ``[[jobs]]``); False for a job file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False  # the job loader reports the problem in its own words
    return _plan_text(text)


def _plan_text(text: str) -> bool:
    """True when ``text`` is a plan's TOML (it has ``[[jobs]]``); False otherwise, bad TOML too."""
    try:
        doc = tomltext.loads(text)
    except tomllib.TOMLDecodeError:
        return False  # the job loader reports the problem in its own words
    return isinstance(doc.get("jobs"), list)


def plan_lines(deps: Mapping[str, Sequence[str]], rows: Mapping[str, int]) -> list[str]:
    """A plan's start order and critical-path guess (estimated rows as each job's cost)."""
    graph = {k: tuple(v) for k, v in deps.items()}
    chain, total = critical_path(graph, {k: float(max(v, 0)) for k, v in rows.items()})
    return [
        f"order: {', '.join(topological_order(graph))}",
        f"critical path guess (by estimated rows): {' -> '.join(chain)} ({int(total):,} rows)",
    ]


def main(args: argparse.Namespace) -> int:
    """Check the job or plan file; returns 0 (``ConfigError`` gives exit status 2)."""
    if args.file != "-" and is_plan(args.file):
        if args.overrides:
            raise ConfigError("--set: only for a job file, not a plan")
        plan = load_plan(args.file)
        plan_budget(plan)  # a budget too small for a job: refused here as orchestrate would
        specs = {j.name: j.spec for j in plan.jobs if j.spec is not None}
        facts = loop.run(lambda: _check_all(list(specs.values())), use_uvloop=False)
        rows: dict[str, int] = {}
        for f in facts:
            print("\n".join(report(f)))
            rows[f.job] = f.estimate
        for job in plan.jobs:
            if job.spec is None:
                print(f"job {job.name}: synthetic ({job.synthetic}), nothing to check")
        print("\n".join(plan_lines(plan.deps(), rows)))
    else:
        spec = _job(args)
        (facts_one,) = loop.run(lambda: _check_all([spec]), use_uvloop=False)
        print("\n".join(report(facts_one)))
    print("check: OK, nothing was written")
    return 0


def _job(args: argparse.Namespace) -> JobSpec:
    """The job file named by ``args.file``, or read from stdin for ``-`` (as ``run -``).

    Raises ``ConfigError`` for a bad job, and for a plan on stdin (its ``file =`` paths are
    relative to the plan file's own folder, which stdin does not have).
    """
    if args.file != "-":
        return load_job(args.file, overrides=args.overrides, env=os.environ)
    text = sys.stdin.read()
    if _plan_text(text):
        raise ConfigError(f"check -: {PLAN_NOT_FROM_STDIN}")
    return parse_job(text, path="<stdin>", overrides=args.overrides, env=os.environ)


async def _check_all(specs: list[JobSpec]) -> list[JobFacts]:
    """Check the jobs one after the other (a dry run is cheap; no fan-out needed)."""
    return [await check_job(spec, JobOptions()) for spec in specs]
