"""``async-etl orchestrate PLAN.toml``: run a plan's jobs under local and global limits.

A job starts when its dependencies have succeeded, a local and a global slot are free and
its target's circuit breaker allows it; transient failures are retried from the job's
checkpoint.  One line per job and the critical path go to stdout (stderr with --json-out -).
The first SIGINT / SIGTERM (or ``async-etl stop PLAN``) stops launching and asks running jobs
to stop at a chunk boundary; a second one cancels them at once (they are still marked
STOPPED).
"""

from __future__ import annotations

import argparse
import sys
from contextlib import nullcontext
from functools import partial
from typing import Any, TextIO

import anyio

from async_etl.cli.help import BAD_INPUT, LOG_FORMATS, PLAN_NOT_FROM_STDIN, add_command
from async_etl.cli.output import json_out_path, text_stream, write_json
from async_etl.cli.run import metrics_address
from async_etl.cli.signals import EarlySignals, watch_signals
from async_etl.core.urls import METRICS_HOST
from async_etl.errors import ConfigError
from async_etl.log import configure_logging
from async_etl.orchestrator.driver import JobRunner, Orchestrator, PlanOutcome, default_runner
from async_etl.orchestrator.plan import Plan, load_plan
from async_etl.orchestrator.report import LiveView, LogView, build_report
from async_etl.runtime import loop
from async_etl.runtime.metrics import JobCollector, serve_metrics

EXIT = {"SUCCEEDED": 0, "FAILED": 1, "STOPPED": 3}
EXIT_STATUSES = {
    0: "every job SUCCEEDED",
    1: "a job FAILED or was SKIPPED",
    2: BAD_INPUT,
    3: "the plan was STOPPED (signal or async-etl stop); the next run resumes it",
}
ENV_PREFIX = "ASYNC_ETL_ORCHESTRATE_"
ENVIRONMENT = (
    (f"{ENV_PREFIX}<FLAG>", f"any flag, e.g. {ENV_PREFIX}LOCAL_MAX=4, ..._UVLOOP=N (flags win)"),
)


def register(sub: Any) -> None:
    """Add the ``orchestrate`` subcommand to the top-level parser."""
    p = add_command(
        sub,
        "orchestrate",
        help="run a plan of jobs with dependencies, limits, retries and a circuit breaker",
        doc=__doc__,
        exit_codes=EXIT_STATUSES,
        env=ENVIRONMENT,
    )
    p.add_argument("plan", metavar="PLAN.toml", help="the plan file")
    p.add_argument("--local-max", type=int, default=None, metavar="N",
                   help="jobs at once in this process (default: the plan's local_max)")  # fmt: skip
    p.add_argument("--global-max", type=int, default=None, metavar="M",
                   help="jobs at once across orchestrators (default: the plan's)")  # fmt: skip
    p.add_argument("--json-out", default=None, metavar="FILE",
                   help="write the plan report as JSON to FILE (- for stdout)")  # fmt: skip
    p.add_argument("--fresh", action="store_true", help="do not resume the plan's last stopped run")
    p.add_argument("--ray", dest="ray", nargs="?", const="local", default=None,
                   metavar="ADDRESS",
                   help="run each job in a Ray actor: local (default), auto, HOST:PORT "
                        "or ray://...")  # fmt: skip
    p.add_argument("--ray-actors", dest="ray_actors", type=int, default=None, metavar="N",
                   help="with --ray: actors for the plan's jobs (default 2)")  # fmt: skip
    p.add_argument("--log-format", default="auto", choices=LOG_FORMATS,
                   help="auto (default): live view on a TTY, log lines otherwise")  # fmt: skip
    p.add_argument("--no-uvloop", dest="uvloop", action="store_false",
                   help="use the stdlib asyncio loop")  # fmt: skip
    p.add_argument("--metrics-port", type=int, default=None, metavar="N",
                   help="serve Prometheus metrics on port N (0: any)")  # fmt: skip
    p.add_argument("--metrics-host", default=None, metavar="HOST",
                   help="with --metrics-port: the address to listen on (default 127.0.0.1; "
                        "0.0.0.0: all)")  # fmt: skip
    p.set_defaults(env_prefix=ENV_PREFIX)
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    """Run the plan from parsed arguments; returns the exit status (see the module doc)."""
    early = EarlySignals().install()  # before Ray and the loop start: a signal still stops gently
    metrics = metrics_address(args)  # a flag mistake is told before the plan is read
    if args.plan == "-":
        raise ConfigError(f"orchestrate -: {PLAN_NOT_FROM_STDIN}")
    plan = load_plan(args.plan).with_limits(local_max=args.local_max, global_max=args.global_max)
    json_out = json_out_path(args.json_out)
    live = args.log_format == "auto" and sys.stderr.isatty()
    configure_logging("json" if args.log_format == "json" else "console")
    runner = _ray_runner(args.ray, args.ray_actors, plan.local_max)
    outcome = loop.run(
        lambda: orchestrate(
            plan, live=live, fresh=args.fresh, metrics=metrics, runner=runner, early=early
        ),
        use_uvloop=args.uvloop,
    )
    if outcome is None:
        print(f"async-etl: plan {plan.name} cancelled by a second signal; its running jobs are "
              "marked STOPPED", file=sys.stderr)  # fmt: skip
        return EXIT["STOPPED"]
    report = build_report(plan, outcome)
    print_summary(report, text_stream(json_out))
    write_json(json_out, report)
    return EXIT.get(outcome.status, 1)


def _ray_runner(address: str | None, actors: int | None, jobs_at_once: int) -> JobRunner:
    """``--ray``: join the cluster first (one line, exit 2 if it cannot be); else the default."""
    from async_etl.runtime.ray_cluster import join_cluster

    cluster = join_cluster(address, actors)
    if cluster is None:
        return default_runner
    from async_etl.jobs.ray_jobs import RayJobs

    return RayJobs(*cluster, jobs_at_once=jobs_at_once)


async def orchestrate(
    plan: Plan,
    *,
    live: bool,
    fresh: bool = False,
    metrics: tuple[int | None, str] = (None, METRICS_HOST),
    runner: JobRunner | None = None,
    early: EarlySignals | None = None,
) -> PlanOutcome | None:
    """Run ``plan`` with a view and signal handling; None when a second signal cancelled it.

    First SIGINT/SIGTERM: stop launching and ask running jobs to stop at a chunk boundary.
    Second: cancel the running jobs (each still marks its run STOPPED, shielded).  Signals
    ``early`` caught before the loop ran count first.
    """
    view = LiveView() if live else LogView()
    collector = JobCollector()
    view.listeners.append(collector.observe)
    orch = Orchestrator(plan, view=view, runner=runner or default_runner)
    outcome: PlanOutcome | None = None
    with serve_metrics(metrics[0], [collector], metrics[1]):
        async with anyio.create_task_group() as tg:
            with anyio.CancelScope() as work:
                tg.start_soon(
                    partial(
                        watch_signals,
                        orch.request_stop,
                        lambda _: work.cancel(),
                        second_note="second signal: cancelling the running jobs",
                        early=early,
                    )
                )
                try:
                    with view if isinstance(view, LiveView) else nullcontext():
                        outcome = await orch.run(fresh=fresh)
                finally:
                    with anyio.CancelScope(shield=True):
                        await _close(orch.runner)
            tg.cancel_scope.cancel()
    return outcome


async def _close(runner: JobRunner) -> None:
    """Stop what the runner started (``--ray``: its actors); the default runner has nothing."""
    aclose = getattr(runner, "aclose", None)
    if aclose is not None:
        await aclose()


def print_summary(report: dict[str, Any], file: TextIO | None = None) -> None:
    """One line per job, then the critical path and the bottlenecks, on ``file`` (stdout)."""
    say = partial(print, file=file)
    for job in report["jobs"]:
        error = f"  {job['error']}" if job["error"] else ""
        say(
            f"{job['status']:<9} {job['job']:<30} attempts {job['attempts']}  "
            f"{job['run_s']:>8.2f}s  rows {job['rows']:,}{error}"
        )
    path = report["critical_path"]
    say(
        f"plan {report['plan']}: {report['status']} in {report['wall_s']:.2f}s; critical path "
        f"{' -> '.join(path['jobs']) or '-'} ({path['seconds']:.2f}s)"
    )
    for step in report.get("degradation", []):
        say(
            f"  parallelism {step['database']}: {step['old']} -> {step['new']} after "
            f"{step['job']} attempt {step['attempt']} ({step['reason']})"
        )
    for b in report["bottlenecks"]:
        say(f"  bottleneck {b['job']}: {b['seconds']:.2f}s ({b['share_of_wall']:.0%} of wall)")
