"""``async-etl bench``: stream synthetic records into PostgreSQL, CrateDB or nowhere.

Records are generated in a process pool and sent in batches, C at a time; every row ends
delivered, rejected (with the sink's reason) or undelivered, and the sink counts the run's ids
at the end.  The summary is a table on stdout (on stderr with --json-out -).  The first
SIGINT / SIGTERM stops generating and delivers the batches in flight; a second one aborts.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager, AsyncExitStack, nullcontext
from typing import Any, TextIO

import anyio
from rich.console import Console
from rich.table import Table

from async_etl.cli.help import BAD_INPUT, LOG_FORMATS, add_command
from async_etl.cli.output import json_out_path, text_stream, write_json
from async_etl.cli.signals import EarlySignals, watch_signals
from async_etl.config import PROCESSES_PER_CPU, BenchSettings, bench_settings
from async_etl.core.summary import Summary
from async_etl.core.urls import scheme_of
from async_etl.errors import ConfigError
from async_etl.log import configure_logging
from async_etl.runtime import loop
from async_etl.runtime.engine import Engine
from async_etl.runtime.metrics import BenchCollector, serve_metrics
from async_etl.runtime.reporter import LiveLine, log_snapshot
from async_etl.runtime.sampler import ProcessSampler
from async_etl.runtime.threads import run_threads
from async_etl.sinks import open_sink
from async_etl.sources.synthetic import Synthetic

FLAGS: tuple[tuple[tuple[str, ...], str, Any, str, str], ...] = (
    # (flags, dest, type, metavar, help); short flags as pgbench (-c -j -T -R -P) and
    # cr8 insert-fake-data (-n records, -b bulk size, -c concurrency) users type them
    (
        ("--sink",),
        "sink",
        str,
        "URL",
        "sink URL: http(s)://, crate://, postgresql://, null:// "
        "(default: an embedded PostgreSQL started for the run)",
    ),
    (("--table",), "table", str, "T", "target table (default async_etl_bench)"),
    (
        ("-n", "--records"),
        "records",
        int,
        "N",
        "records to send (default 1,000,000; with --duration: no limit)",
    ),
    (("-T", "--duration"), "duration", float, "S", "stop after this many seconds"),
    (
        ("-R", "--rate"),
        "rate",
        float,
        "ROWS_PER_S",
        "open loop: send batches on a fixed schedule of this many rows/s (with --duration or "
        "--records); latency is also measured from each batch's due time",
    ),
    (
        ("--ramp",),
        "ramp",
        str,
        "R:LEN,...",
        "open loop in steps, e.g. 10000:30s,50000:30s (sets the duration)",
    ),
    (("-b", "--batch-size"), "batch_size", int, "B", "rows per batch / request (default 5000)"),
    (
        ("-c", "--concurrency"),
        "concurrency",
        str,
        "C",
        "batches in flight (default 8), or auto[:MIN-MAX]: adapted from latency (default 1-64)",
    ),
    (
        ("-j", "--generators"),
        "generators",
        int,
        "P",
        f"generator processes; 0 = inline (default: CPU count; at most {PROCESSES_PER_CPU} "
        "per CPU)",
    ),
    (("--seed",), "seed", int, "N", "random seed: same seed, same data (default 42)"),
    (("--schema",), "schema_file", str, "FILE", "record schema file (TOML), not the built-in one"),
    (("--payload-bytes",), "payload_bytes", int, "N", "add a text column of N bytes per row"),
    (("--max-retries",), "max_retries", int, "N", "retries per batch, transient errors (5)"),
    (
        ("-P", "--report-interval"),
        "report_interval",
        float,
        "S",
        "seconds between progress reports (default 1)",
    ),
    (("--warmup",), "warmup", float, "S", "seconds excluded from the figures at the start (0)"),
    (("--json-out",), "json_out", str, "FILE", "also write the summary as JSON to FILE (- stdout)"),
    (("--metrics-port",), "metrics_port", int, "N", "serve Prometheus metrics on port N (0: any)"),
    (
        ("--metrics-host",),
        "metrics_host",
        str,
        "HOST",
        "with --metrics-port: the address to listen on (default 127.0.0.1; 0.0.0.0: all)",
    ),
    (
        ("--gzip-threshold",),
        "gzip_threshold",
        int,
        "BYTES",
        "CrateDB: gzip request bodies of at least this many bytes; 0 = never (default 8192)",
    ),
)
CHOICES: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("--mode", "mode", ("async", "threads"), "the async runner (default) or a thread pool"),
    ("--log-format", "log_format", LOG_FORMATS, "default auto: a live line on a terminal"),
)
EXIT_CODES = {
    0: "every row delivered and counted in the sink",
    1: "rows rejected or undelivered, a count that disagrees, or a failure",
    2: BAD_INPUT,
}
ENVIRONMENT = (
    ("ASYNC_ETL_BENCH_<FLAG>", "any long flag, e.g. ASYNC_ETL_BENCH_CONCURRENCY=16 (flags win)"),
)


def register(sub: Any) -> None:
    """Add the ``bench`` subcommand to the top-level parser."""
    p = add_command(
        sub,
        "bench",
        help="generate records into a sink as fast as it takes them",
        doc=__doc__,
        exit_codes=EXIT_CODES,
        env=ENVIRONMENT,
    )
    for flags, dest, typ, metavar, text in FLAGS:
        p.add_argument(*flags, dest=dest, type=typ, metavar=metavar, default=None, help=text)
    for flag, dest, choices, text in CHOICES:
        p.add_argument(flag, dest=dest, choices=choices, default=None, help=text)
    p.add_argument(
        "--unlogged",
        dest="unlogged",
        action="store_const",
        const=True,
        default=None,
        help="PostgreSQL: create the table UNLOGGED",
    )
    p.add_argument(
        "--no-uvloop",
        dest="uvloop",
        action="store_const",
        const=False,
        default=None,
        help="use the stdlib asyncio loop instead of uvloop",
    )
    p.add_argument(
        "--ray",
        dest="ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="run the engine in Ray actors: local (default), auto, HOST:PORT or ray://HOST:PORT",
    )
    p.add_argument(
        "--find-knee",
        dest="find_knee",
        nargs="?",
        const="concurrency",
        choices=("concurrency", "rate"),
        default=None,
        help="find the saturation knee instead (by concurrency, default, or rate): the same "
        "as async-etl sweep [--by rate], with sweep's flags",
    )
    p.add_argument(
        "--ray-actors",
        dest="ray_actors",
        type=int,
        default=None,
        metavar="N",
        help="with --ray: how many actors (default 2)",
    )
    p.add_argument(
        "--processes",
        dest="processes",
        type=int,
        default=None,
        metavar="N",
        help="shared-nothing worker processes: each runs the engine with its own event loop "
        "and sink connections, generates its own rows and sends -c C batches at a time; this "
        "process only hands out id ranges, adds up and reconciles (the local twin of --ray); "
        f"at most {PROCESSES_PER_CPU} per CPU",
    )
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    """Run a bench from parsed arguments; returns the exit status."""
    early = EarlySignals().install()  # before the pool starts: a signal then still stops gently
    flags = {k: v for k, v in vars(args).items() if k not in ("command", "handler", "find_knee")}
    settings = bench_settings(flags, os.environ)
    json_out = json_out_path(settings.json_out)
    live = settings.log_format == "auto" and sys.stderr.isatty()
    configure_logging("json" if settings.log_format == "json" else "console")
    source = Synthetic.from_options(
        schema_file=settings.schema_file, payload_bytes=settings.payload_bytes, seed=settings.seed
    )
    check_batch_memory(source.schema.max_row_bytes(), settings.batch_size)
    if args.ray_actors is not None and settings.ray is None:
        raise ConfigError("--ray-actors needs --ray")
    if args.metrics_host is not None and settings.metrics_port is None:
        raise ConfigError("--metrics-host needs --metrics-port")
    sink_only_problem(args, settings, os.environ)
    if settings.processes and (args.generators is not None or GENERATORS_ENV in os.environ):
        raise ConfigError(
            "--processes: each worker process generates its own rows; drop -j / --generators"
        )
    if settings.mode == "threads":  # before any event loop: thread mode runs none at all
        summary = bench_threads(settings, source)
    else:
        summary = loop.run(
            lambda: bench(settings, source, live=live, early=early), use_uvloop=settings.uvloop
        )
    print_summary(summary, text_stream(json_out))
    write_json(json_out, summary.to_dict())
    for problem in summary.problems():
        print(f"async-etl: {problem}", file=sys.stderr)
    rate = summary.extra.get("rate")
    if rate is not None and not rate["met"]:
        print(f"async-etl: {rate['verdict']}", file=sys.stderr)
    return 0 if summary.ok else 1


async def bench(
    settings: BenchSettings,
    source: Synthetic,
    *,
    live: bool,
    early: EarlySignals | None = None,
) -> Summary:
    """Open the sink (or an embedded PostgreSQL), run the engine, close everything."""
    async with AsyncExitStack() as stack:
        url = settings.sink
        embedded = url is None
        if url is None:
            from async_etl.drivers.postgres_embedded import embedded_postgres

            url = await _enter_sync(stack, embedded_postgres())
            settings = settings.replace(sink=url)
        sink = open_sink(url, settings, what="--sink")
        stack.push_async_callback(sink.aclose)
        if settings.ray is not None or settings.processes:
            summary = await _bench_scaled_out(settings, source, sink, live=live, early=early)
            return (
                dataclasses.replace(summary, sink="embedded PostgreSQL (temporary)")
                if embedded
                else summary
            )
        engine = await stack.enter_async_context(Engine(settings))
        view: AbstractContextManager[Any] = LiveLine() if live else nullcontext(log_snapshot)
        sampler = ProcessSampler(url)  # threads and connections, measured as in thread mode
        metrics = BenchCollector(lambda: engine.stats, lambda: engine.limits.sends.total_tokens)
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                functools.partial(
                    watch_signals,
                    lambda _: engine.stop("signal"),
                    lambda _: engine.abort(),
                    early=early,
                )
            )
            with (
                view as handler,
                serve_metrics(settings.metrics_port, [metrics], settings.metrics_host),
            ):
                summary = await engine.run(source, sink, on_snapshot=sampler.wrap(handler))
            tg.cancel_scope.cancel()
        sampler.sample()
        extra = {**summary.extra, **sampler.extra()}
        sink_name = "embedded PostgreSQL (temporary)" if embedded else summary.sink
        return dataclasses.replace(summary, sink=sink_name, extra=extra)


async def _bench_scaled_out(
    settings: BenchSettings,
    source: Synthetic,
    sink: Any,
    *,
    live: bool,
    early: EarlySignals | None = None,
) -> Summary:
    """``--ray`` / ``--processes``: the coordinator over Ray actors or local worker processes.

    The first signal issues no more units (the ones out finish), the second aborts them.
    """
    run: Callable[..., Awaitable[Summary]]
    if settings.ray is not None:
        from async_etl.runtime.ray_bench import run_on_ray  # Ray is imported only here

        run = run_on_ray
    else:
        from async_etl.runtime.local_workers import run_on_processes

        run = run_on_processes

    view: AbstractContextManager[Any] = LiveLine() if live else nullcontext(log_snapshot)
    stop, abort = anyio.Event(), anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(
            functools.partial(
                watch_signals, lambda _: stop.set(), lambda _: abort.set(), early=early
            )
        )
        with view as handler:
            summary = await run(settings, source, sink, on_snapshot=handler, stop=stop, abort=abort)
        tg.cancel_scope.cancel()
    return summary


def bench_threads(settings: BenchSettings, source: Synthetic) -> Summary:
    """Thread mode: the embedded PostgreSQL default if no sink, then ``run_threads``; no loop."""
    if settings.sink is not None:
        return run_threads(settings, source, settings.sink)
    from async_etl.drivers.postgres_embedded import embedded_postgres

    with embedded_postgres() as url:
        summary = run_threads(settings.replace(sink=url), source, url)
    return dataclasses.replace(summary, sink="embedded PostgreSQL (temporary)")


async def _enter_sync(stack: AsyncExitStack, cm: AbstractContextManager[str]) -> str:
    """Enter a blocking context manager off the loop; exit it off the loop at the end."""
    one = anyio.CapacityLimiter(1)
    value = await anyio.to_thread.run_sync(cm.__enter__, limiter=one)

    async def _exit() -> None:
        await anyio.to_thread.run_sync(cm.__exit__, None, None, None, limiter=one)

    stack.push_async_callback(_exit)
    return value


def print_summary(summary: Summary, file: TextIO | None = None) -> None:
    """Print the summary table to ``file`` (default stdout)."""
    table = Table(title="async-etl bench", show_header=False, title_justify="left")
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    for label, value in summary.table_rows():
        table.add_row(label, value)
    Console(soft_wrap=True, file=file).print(table)


GENERATORS_ENV = "ASYNC_ETL_BENCH_GENERATORS"


def sink_only_problem(
    args: argparse.Namespace, settings: BenchSettings, env: Mapping[str, str]
) -> None:
    """Refuse a flag of one sink's (given on the line or in the environment) for another sink.

    ``--unlogged`` makes a PostgreSQL table, ``--gzip-threshold`` gzips CrateDB bodies: for
    any other sink each did nothing, silently (the writer refuses ``gzip_threshold`` the same
    way).  ``ASYNC_ETL_BENCH_UNLOGGED`` false asks for nothing, so it is not refused.  No
    ``--sink`` is the embedded PostgreSQL.  Raises ``ConfigError`` naming the flag, or the
    environment variable when the value came from there.
    """
    scheme = scheme_of(settings.sink) if settings.sink else "postgresql"
    postgres = scheme in ("postgresql", "postgres")
    crate = scheme in ("http", "https", "crate")
    for flag, dest, fits, what, asks in (
        ("--unlogged", "unlogged", postgres, "PostgreSQL", settings.unlogged),
        ("--gzip-threshold", "gzip_threshold", crate, "CrateDB", True),
    ):
        var = f"ASYNC_ETL_BENCH_{dest.upper()}"
        source = flag if getattr(args, dest, None) is not None else var if var in env else None
        if source is not None and asks and not fits:
            raise ConfigError(f"{source}: applies to {what} sinks only, not {scheme}://")


MAX_BATCH_BYTES = 256 * 1024 * 1024


def check_batch_memory(row_bytes: int, batch_size: int) -> None:
    """Refuse batches that could not fit in memory (many are in flight at once): ConfigError."""
    worst = row_bytes * batch_size
    if worst > MAX_BATCH_BYTES:
        raise ConfigError(
            f"--batch-size {batch_size}: rows of up to {row_bytes:,} bytes make batches of up to "
            f"{worst // 2**20:,} MiB (limit {MAX_BATCH_BYTES // 2**20} MiB); "
            "lower --batch-size or the schema's max_len / --payload-bytes"
        )
