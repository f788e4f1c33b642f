"""``async-etl run JOB.toml``: run a mapper job (resuming its unfinished run unless --fresh).

The job copies its source query into the target table chunk by chunk, with SCD type 1 or 2;
each chunk commits with its checkpoint, so a stopped or crashed run resumes where it was.  One
summary line goes to stdout (stderr with --json-out -).  The first SIGINT / SIGTERM (or
``async-etl stop``) stops after the chunks in flight; a second one stops at once, and the run
is still marked STOPPED.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio

from async_etl._launch import COMMAND
from async_etl.cli.help import BAD_INPUT, LOG_FORMATS, add_command
from async_etl.cli.output import json_out_path, text_stream, write_json
from async_etl.cli.signals import EarlySignals, watch_signals
from async_etl.core.urls import METRICS_HOST
from async_etl.drivers.postgres import process_ends_after
from async_etl.errors import ConfigError, ErrorKind
from async_etl.jobs.api import JobOptions, JobResult, Progress
from async_etl.jobs.progress import ProgressBar, ProgressLog
from async_etl.jobs.runner import run_job

if TYPE_CHECKING:
    from async_etl.jobs.ray_chunks import RayChunks
from async_etl.jobs.spec import JobSpec, load_job, parse_job
from async_etl.log import configure_logging
from async_etl.runtime import loop
from async_etl.runtime.metrics import JobCollector, serve_metrics

__all__ = [
    "EXIT_CODES",
    "add_run_flags",
    "execute",
    "log_as_flagged",
    "main",
    "metrics_address",
    "register",
]

EXIT_CODES = {"SUCCEEDED": 0, "FAILED": 1, "STOPPED": 3}
"""Exit status per run status; 2 is a bad configuration (``ConfigError``)."""
EXIT_CONFIG = 2
EXIT_STATUSES = {
    0: "the run SUCCEEDED",
    1: "the run FAILED (the error is on stderr; committed chunks stay, the next run resumes)",
    2: BAD_INPUT,
    3: "the run was STOPPED (signal or async-etl stop); the next run resumes it",
}
ENVIRONMENT = (
    (
        "ASYNC_ETL_<SECTION>_<KEY>",
        "any job-file key, e.g. ASYNC_ETL_PARALLEL_MAX_WORKERS=8 (--set and the file win)",
    ),
)


def register(sub: Any) -> None:
    """Add the ``run`` subcommand to the top-level parser."""
    p = add_command(
        sub,
        "run",
        help="run a mapper job file (chunked, parallel, SCD type 1/2, resumable)",
        doc=__doc__,
        exit_codes=EXIT_STATUSES,
        env=ENVIRONMENT,
    )
    p.add_argument("job", metavar="JOB.toml", help="the job file ('-': read it from stdin)")
    add_run_flags(p)
    p.set_defaults(handler=main)


def add_run_flags(p: Any) -> None:
    """The flags of a run (shared by ``run`` and ``copy``)."""
    p.add_argument("--as-of", dest="as_of", default=None, metavar="TIMESTAMP",
                   help="the run's as-of time T, ISO 8601 (default: now; naive = UTC)")  # fmt: skip
    p.add_argument("--fresh", action="store_true",
                   help="start a new run instead of resuming the unfinished one")  # fmt: skip
    p.add_argument("--full-refresh", dest="full_refresh", action="store_true",
                   help="rebuild the target in a new table and swap it in at the end (the job's "
                        "SCD type; [scd] deletes / tracked / overwrite do not apply to this run; "
                        "refuses to drop type-2 history)")  # fmt: skip
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.KEY=VALUE",
                   help="override a job-file key (repeatable)")  # fmt: skip
    p.add_argument("--json-out", dest="json_out", default=None, metavar="FILE",
                   help="also write the run result as JSON to FILE (- for stdout)")  # fmt: skip
    p.add_argument("--log-format", dest="log_format", default="auto",
                   choices=LOG_FORMATS,
                   help="auto: progress bar on a TTY, log lines otherwise")  # fmt: skip
    p.add_argument("--no-uvloop", dest="uvloop", action="store_false",
                   help="use the stdlib asyncio loop instead of uvloop")  # fmt: skip
    p.add_argument("--metrics-port", dest="metrics_port", type=int, default=None, metavar="N",
                   help="serve Prometheus metrics on port N while running (0: any)")  # fmt: skip
    p.add_argument("--metrics-host", dest="metrics_host", default=None, metavar="HOST",
                   help="with --metrics-port: the address to listen on (default 127.0.0.1; "
                        "0.0.0.0: all)")  # fmt: skip
    p.add_argument("--ray", dest="ray", nargs="?", const="local", default=None,
                   metavar="ADDRESS",
                   help="run the chunks in Ray actors: local (default), auto, HOST:PORT or "
                        "ray://HOST:PORT")  # fmt: skip
    p.add_argument("--ray-actors", dest="ray_actors", type=int, default=None, metavar="N",
                   help="with --ray: how many actors (default 2)")  # fmt: skip


def parse_as_of(text: str | None) -> datetime | None:
    """``--as-of`` as a datetime; raises ``ConfigError`` when it is not ISO 8601."""
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--as-of: {text!r} is not an ISO 8601 timestamp") from None


FULL_REFRESH = "mode=full_refresh"


def with_flags(args: argparse.Namespace, load: Callable[[list[str]], JobSpec]) -> JobSpec:
    """``load(overrides)`` with ``--full-refresh`` as ``--set mode=full_refresh``.

    A problem with that setting is reported as ``--full-refresh``, the flag the user typed.
    """
    implied = args.full_refresh and FULL_REFRESH not in args.overrides
    try:
        return load([*args.overrides, *([FULL_REFRESH] if implied else [])])
    except ConfigError as exc:
        if not implied or f"--set {FULL_REFRESH}" not in exc.message:
            raise
        err = ConfigError(exc.message.replace(f"--set {FULL_REFRESH}", "--full-refresh"))
        err.kind = exc.kind
        raise err from None


def main(args: argparse.Namespace) -> int:
    """Run the job from parsed arguments; returns the exit status (see module doc)."""
    metrics_address(args)  # a flag mistake is told before the job file is read
    if args.job == "-":
        text = sys.stdin.read()
        spec = with_flags(
            args, lambda o: parse_job(text, path="<stdin>", overrides=o, env=os.environ)
        )
    else:
        spec = with_flags(args, lambda o: load_job(args.job, overrides=o, env=os.environ))
    return execute(spec, args)


def log_as_flagged(args: argparse.Namespace) -> None:
    """Render log events on stderr as ``--log-format`` says (json, else console lines)."""
    configure_logging("json" if args.log_format == "json" else "console")


def execute(spec: JobSpec, args: argparse.Namespace) -> int:
    """Run ``spec`` with the run flags in ``args``; the exit status (see module doc)."""
    early = EarlySignals().install()  # before Ray and the loop start: a signal still stops gently
    options = JobOptions(as_of=parse_as_of(args.as_of), fresh=args.fresh)
    json_out = json_out_path(args.json_out)
    live = args.log_format == "auto" and sys.stderr.isatty()
    log_as_flagged(args)
    metrics = metrics_address(args)
    executor = ray_executor(getattr(args, "ray", None), getattr(args, "ray_actors", None))
    result = loop.run(
        lambda: _run(spec, options, live=live, metrics=metrics, executor=executor, early=early),
        use_uvloop=args.uvloop,
    )
    if result is None:
        print(f"async-etl: job {spec.name} STOPPED at once; the next run resumes it",
              file=sys.stderr)  # fmt: skip
        return EXIT_CODES["STOPPED"]
    print(summary_line(result), file=text_stream(json_out))
    write_json(json_out, result.to_dict())
    if result.status == "FAILED":
        print(f"async-etl: error: {result.error}", file=sys.stderr)
        if result.error_kind is ErrorKind.CONFIGURATION:
            return EXIT_CONFIG
    return EXIT_CODES[result.status]


def metrics_address(args: argparse.Namespace) -> tuple[int | None, str]:
    """``--metrics-port`` and ``--metrics-host`` (default 127.0.0.1); the host alone is refused."""
    if args.metrics_host is not None and args.metrics_port is None:
        raise ConfigError("--metrics-host needs --metrics-port")
    host = args.metrics_host if args.metrics_host is not None else METRICS_HOST
    return args.metrics_port, host


def ray_executor(address: str | None, actors: int | None) -> RayChunks | None:
    """``--ray``: join the cluster now (one line, exit 2 if it cannot be), then the executor."""
    if address is None and actors is None:
        return None  # without --ray its module is not even imported
    from async_etl.runtime.ray_cluster import join_cluster

    cluster = join_cluster(address, actors)
    if cluster is None:
        return None
    from async_etl.jobs.ray_chunks import RayChunks

    return RayChunks(*cluster)


async def _run(
    spec: JobSpec,
    options: JobOptions,
    *,
    live: bool,
    metrics: tuple[int | None, str] = (None, METRICS_HOST),
    executor: RayChunks | None = None,
    early: EarlySignals | None = None,
) -> JobResult | None:
    """Run the job with signal handling; None when a second signal cancelled it.

    First SIGINT/SIGTERM: stop at a safe point (the result says STOPPED).  Second: cancel the
    chunks in flight; the job's shielded cleanup still marks the run STOPPED.  Signals
    ``early`` caught before the loop ran count first.
    """
    if COMMAND:  # the process ends after this run: its last closes need not wait
        process_ends_after()
    stop = anyio.Event()
    view: AbstractContextManager[Any] = ProgressBar() if live else nullcontext(ProgressLog())
    collector = JobCollector()
    result: JobResult | None = None
    async with anyio.create_task_group() as tg:
        with anyio.CancelScope() as work:
            tg.start_soon(
                partial(
                    watch_signals,
                    lambda _: stop.set(),
                    lambda _: work.cancel(),
                    first_note="stopping after the chunks in flight ...",
                    second_note="second signal: stopping now",
                    early=early,
                )
            )
            with view as show, serve_metrics(metrics[0], [collector], metrics[1]):

                def on_progress(p: Progress) -> None:
                    collector.observe(p)
                    show(p)

                try:
                    result = await run_job(
                        spec, options=options, stop=stop, on_progress=on_progress, executor=executor
                    )
                finally:
                    if executor is not None:
                        with anyio.CancelScope(shield=True):
                            await executor.aclose()
        tg.cancel_scope.cancel()
    return result


def summary_line(r: JobResult) -> str:
    """One line: status, counters, chunks, run id."""
    extra = f" error: {r.error}" if r.error else ""
    return (
        f"{r.job} {r.status} run {r.run_id} as-of {r.as_of.isoformat()}: "
        f"chunks {r.chunks_done}/{r.chunks_total}, read {r.rows_read:,}, "
        f"inserted {r.inserted:,}, updated {r.updated:,}, expired {r.expired:,}, "
        f"deleted {r.deleted:,}, rejected {r.rejected:,}"
        f"{f', cursor {r.cursor}' if r.cursor is not None else ''}"
        f"{' (resumed)' if r.resumed else ''}"
        f"{extra}"
    )
