"""``async-etl bench``: the load generator."""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
from contextlib import AbstractContextManager, AsyncExitStack, nullcontext
from typing import Any

import anyio
from rich.console import Console
from rich.table import Table

from async_etl.cli.output import json_out_path, write_json
from async_etl.config import BenchSettings, bench_settings
from async_etl.core.summary import Summary
from async_etl.errors import ConfigError
from async_etl.log import configure_logging
from async_etl.runtime import loop
from async_etl.runtime.engine import Engine
from async_etl.runtime.metrics import BenchCollector, serve_metrics
from async_etl.runtime.reporter import LiveLine, log_snapshot
from async_etl.runtime.threads import ProcessSampler, run_threads
from async_etl.sinks import open_sink
from async_etl.sources.synthetic import Synthetic

FLAGS = (
    # (flag, dest, type, help)
    (
        "--sink",
        "sink",
        str,
        "sink URL: http(s)://, crate://, postgresql://, null:// "
        "(default: an embedded PostgreSQL started for the run)",
    ),
    ("--table", "table", str, "target table (default async_etl_bench)"),
    ("--records", "records", int, "records to send (default 1,000,000; with --duration: no limit)"),
    ("--duration", "duration", float, "stop after this many seconds"),
    (
        "--rate",
        "rate",
        float,
        "open loop: send batches on a fixed schedule of this many rows/s (with --duration or "
        "--records); latency is also measured from each batch's due time",
    ),
    ("--ramp", "ramp", str, "open loop in steps, e.g. 10000:30s,50000:30s (sets the duration)"),
    ("--batch-size", "batch_size", int, "rows per batch / request (default 5000)"),
    (
        "--concurrency",
        "concurrency",
        str,
        "batches in flight (default 8), or auto[:MIN-MAX]: adapted from latency (default 1-64)",
    ),
    ("--generators", "generators", int, "generator processes; 0 = inline (default: CPU count)"),
    ("--seed", "seed", int, "random seed: same seed, same data (default 42)"),
    ("--schema", "schema_file", str, "record schema file (TOML) instead of the built-in one"),
    ("--payload-bytes", "payload_bytes", int, "add a text column of this many bytes per row"),
    ("--max-retries", "max_retries", int, "retries per batch for transient errors (default 5)"),
    ("--report-interval", "report_interval", float, "seconds between reports (default 1)"),
    ("--warmup", "warmup", float, "seconds excluded from the figures at the start (default 0)"),
    ("--log-format", "log_format", str, "auto | console | json (default auto: live line on a TTY)"),
    ("--json-out", "json_out", str, "also write the summary as JSON to this file"),
    ("--metrics-port", "metrics_port", int, "serve Prometheus metrics on this port while running"),
    ("--mode", "mode", str, "async (default) or threads"),
    (
        "--gzip-threshold",
        "gzip_threshold",
        int,
        "CrateDB: gzip request bodies of at least this many bytes; 0 = never (default 8192)",
    ),
)


def register(sub: Any) -> None:
    """Add the ``bench`` subcommand to the top-level parser."""
    p = sub.add_parser(
        "bench", help="generate records into a sink as fast as it takes them", description=__doc__
    )
    for flag, dest, typ, text in FLAGS:
        p.add_argument(flag, dest=dest, type=typ, default=None, help=text)
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
        "--ray-actors",
        dest="ray_actors",
        type=int,
        default=None,
        help="with --ray: how many actors (default 2)",
    )
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    """Run a bench from parsed arguments; returns the exit status."""
    flags = {k: v for k, v in vars(args).items() if k not in ("command", "handler")}
    settings = bench_settings(flags, os.environ)
    json_out = json_out_path(settings.json_out)
    live = settings.log_format == "auto" and sys.stderr.isatty()
    configure_logging("json" if settings.log_format == "json" else "console")
    source = Synthetic.from_options(
        schema_file=settings.schema_file, payload_bytes=settings.payload_bytes, seed=settings.seed
    )
    check_batch_memory(source.schema.max_row_bytes(), settings.batch_size)
    if settings.ray is not None and settings.mode == "threads":
        raise ConfigError("--ray runs the async engine in each actor; drop --mode threads")
    if settings.mode == "threads":  # before any event loop: thread mode runs none at all
        summary = bench_threads(settings, source)
    else:
        summary = loop.run(lambda: bench(settings, source, live=live), use_uvloop=settings.uvloop)
    print_summary(summary)
    write_json(json_out, summary.to_dict())
    for problem in summary.problems():
        print(f"async-etl: {problem}", file=sys.stderr)
    rate = summary.extra.get("rate")
    if rate is not None and not rate["met"]:
        print(f"async-etl: {rate['verdict']}", file=sys.stderr)
    return 0 if summary.ok else 1


async def bench(settings: BenchSettings, source: Synthetic, *, live: bool) -> Summary:
    """Open the sink (or an embedded PostgreSQL), run the engine, close everything."""
    async with AsyncExitStack() as stack:
        url = settings.sink
        embedded = url is None
        if url is None:
            from async_etl.testing.pg import embedded_postgres

            url = await _enter_sync(stack, embedded_postgres())
            settings = settings.replace(sink=url)
        sink = open_sink(url, settings)
        stack.push_async_callback(sink.aclose)
        if settings.ray is not None:
            return await _bench_on_ray(settings, source, sink, live=live, embedded=embedded)
        engine = await stack.enter_async_context(Engine(settings))
        view: AbstractContextManager[Any] = LiveLine() if live else nullcontext(log_snapshot)
        sampler = ProcessSampler(url)  # threads and connections, measured as in thread mode
        metrics = BenchCollector(lambda: engine.stats, lambda: engine.limits.sends.total_tokens)
        async with anyio.create_task_group() as tg:
            tg.start_soon(_watch_signals, engine)
            with view as handler, serve_metrics(settings.metrics_port, [metrics]):
                summary = await engine.run(source, sink, on_snapshot=sampler.wrap(handler))
            tg.cancel_scope.cancel()
        sampler.sample()
        extra = {**summary.extra, **sampler.extra()}
        sink_name = "embedded PostgreSQL (temporary)" if embedded else summary.sink
        return dataclasses.replace(summary, sink=sink_name, extra=extra)


async def _bench_on_ray(
    settings: BenchSettings, source: Synthetic, sink: Any, *, live: bool, embedded: bool
) -> Summary:
    """``--ray``: the same run over Ray actors (Ray is imported only here)."""
    from async_etl.runtime.ray_bench import run_on_ray

    view: AbstractContextManager[Any] = LiveLine() if live else nullcontext(log_snapshot)
    with view as handler:
        summary = await run_on_ray(settings, source, sink, on_snapshot=handler)
    return (
        dataclasses.replace(summary, sink="embedded PostgreSQL (temporary)")
        if embedded
        else summary
    )


def bench_threads(settings: BenchSettings, source: Synthetic) -> Summary:
    """Thread mode: the embedded PostgreSQL default if no sink, then ``run_threads``; no loop."""
    if settings.sink is not None:
        return run_threads(settings, source, settings.sink)
    from async_etl.testing.pg import embedded_postgres

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


async def _watch_signals(engine: Engine) -> None:
    """First SIGINT/SIGTERM: finish in-flight batches and stop; second: abort."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            if engine.stopping:
                engine.abort()
            else:
                engine.stop("signal")


def print_summary(summary: Summary) -> None:
    """Print the summary table to stdout."""
    table = Table(title="async-etl bench", show_header=False, title_justify="left")
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    for label, value in summary.table_rows():
        table.add_row(label, value)
    Console(soft_wrap=True).print(table)


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
