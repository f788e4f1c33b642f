"""``async-etl orchestrate PLAN.toml``: run a plan's jobs under local and global limits.

Exit status: 0 every job SUCCEEDED; 1 a job FAILED or was SKIPPED; 2 the plan (or a flag, or
the state store) is invalid — reported in one line before anything runs; 3 the plan was
stopped (SIGINT / SIGTERM / ``async-etl stop PLAN_NAME``) and the next run resumes it.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

import anyio

from async_etl.cli.output import json_out_path, write_json
from async_etl.errors import ConfigError
from async_etl.log import configure_logging
from async_etl.orchestrator.driver import JobRunner, Orchestrator, PlanOutcome, default_runner
from async_etl.orchestrator.plan import Plan, load_plan
from async_etl.orchestrator.report import LiveView, LogView, build_report
from async_etl.runtime import loop
from async_etl.runtime.metrics import JobCollector, serve_metrics

EXIT = {"SUCCEEDED": 0, "FAILED": 1, "STOPPED": 3}


def register(sub: Any) -> None:
    """Add the ``orchestrate`` subcommand to the top-level parser."""
    p = sub.add_parser(
        "orchestrate",
        help="run a plan of jobs with dependencies, limits, retries and a circuit breaker",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("plan", help="the plan file (TOML)")
    p.add_argument("--local-max", type=int, default=None, help="jobs at once in this process")
    p.add_argument("--global-max", type=int, default=None, help="jobs at once across orchestrators")
    p.add_argument("--json-out", default=None, help="write the plan report as JSON here")
    p.add_argument("--fresh", action="store_true", help="do not resume the plan's last stopped run")
    p.add_argument(
        "--ray",
        dest="ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="run each job's chunks in Ray actors: local (default), auto, HOST:PORT or ray://...",
    )
    p.add_argument(
        "--ray-actors", dest="ray_actors", type=int, default=2, help="with --ray: actors per job"
    )
    p.add_argument(
        "--log-format",
        default="auto",
        choices=("auto", "console", "json"),
        help="auto (default): live view on a TTY, log lines otherwise",
    )
    p.add_argument(
        "--no-uvloop", dest="uvloop", action="store_false", help="use the stdlib asyncio loop"
    )
    p.add_argument(
        "--metrics-port", type=int, default=None, help="serve Prometheus metrics on this port"
    )
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    """Run the plan from parsed arguments; returns the exit status (see the module doc)."""
    plan = load_plan(args.plan).with_limits(local_max=args.local_max, global_max=args.global_max)
    json_out = json_out_path(args.json_out)
    live = args.log_format == "auto" and sys.stderr.isatty()
    configure_logging("json" if args.log_format == "json" else "console")
    runner = _ray_runner(args.ray, args.ray_actors)
    outcome = loop.run(
        lambda: orchestrate(
            plan, live=live, fresh=args.fresh, metrics_port=args.metrics_port, runner=runner
        ),
        use_uvloop=args.uvloop,
    )
    report = build_report(plan, outcome)
    print_summary(report)
    write_json(json_out, report)
    return EXIT.get(outcome.status, 1)


def _ray_runner(address: str | None, actors: int) -> JobRunner:
    """``--ray``: join the cluster first (one line, exit 2 if it cannot be); else the default."""
    if address is None:
        return default_runner
    if actors < 1:
        raise ConfigError(f"--ray-actors: must be >= 1, got {actors}")
    from async_etl.jobs.ray_chunks import ray_job_runner
    from async_etl.runtime.ray_cluster import connect

    connect(address)
    return ray_job_runner(address, actors)


async def orchestrate(
    plan: Plan,
    *,
    live: bool,
    fresh: bool = False,
    metrics_port: int | None = None,
    runner: JobRunner | None = None,
) -> PlanOutcome:
    """Run ``plan`` with a view and signal handling (first signal: stop; second: cancel)."""
    view = LiveView() if live else LogView()
    metrics = JobCollector()
    view.listeners.append(metrics.observe)
    orch = Orchestrator(plan, view=view, runner=runner or default_runner)
    with serve_metrics(metrics_port, [metrics]):
        async with anyio.create_task_group() as tg:
            tg.start_soon(_on_signals, orch, tg.cancel_scope)
            if isinstance(view, LiveView):
                with view:
                    outcome = await orch.run(fresh=fresh)
            else:
                outcome = await orch.run(fresh=fresh)
            tg.cancel_scope.cancel()
    return outcome


async def _on_signals(orch: Orchestrator, scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if orch.stopping.is_set():
                scope.cancel()  # second signal: do not wait any longer
                return
            orch.request_stop(signal.Signals(signum).name)


def print_summary(report: dict[str, Any]) -> None:
    """One line per job, then the critical path and the bottlenecks, on stdout."""
    for job in report["jobs"]:
        error = f"  {job['error']}" if job["error"] else ""
        print(
            f"{job['status']:<9} {job['job']:<30} attempts {job['attempts']}  "
            f"{job['run_s']:>8.2f}s  rows {job['rows']:,}{error}"
        )
    path = report["critical_path"]
    print(
        f"plan {report['plan']}: {report['status']} in {report['wall_s']:.2f}s; critical path "
        f"{' -> '.join(path['jobs']) or '-'} ({path['seconds']:.2f}s)"
    )
    for step in report.get("degradation", []):
        print(
            f"  parallelism {step['database']}: {step['old']} -> {step['new']} after "
            f"{step['job']} attempt {step['attempt']} ({step['reason']})"
        )
    for b in report["bottlenecks"]:
        print(f"  bottleneck {b['job']}: {b['seconds']:.2f}s ({b['share_of_wall']:.0%} of wall)")
