"""``async-etl sweep``: find the saturation knee of a sink by stepping concurrency or rate.

Each level is one bench run of ``--step-seconds`` through the same sink.  ``--by concurrency``
(the default): closed loop, the first ``--warmup`` seconds excluded; the pure
``core.knee.KneeSearch`` picks the levels (doubling, then bisection) and reports the knee: the
level with the best throughput per unit of median latency (Kleinrock's power) whose p99 meets
``--slo-p99-ms``; the doubling stops when a level adds less than ``--threshold`` (5 %)
throughput or passes the SLO.  ``--by rate``: open loop (``bench --rate``) from
``--start-rate``, at most ``--max-concurrency`` batches in flight; ``core.knee.RateSearch``
doubles the rate until the achieved rate falls short of it by more than ``--threshold`` or the
p99 from the due time passes the SLO, then bisects; the knee is the highest rate held.
A level in which no batch finished inside its window measured nothing: the sweep stops there
with one line naming ``--step-seconds`` (exit 2) rather than count it as 0 rows/s.
``bench --find-knee [concurrency|rate]`` is another spelling of this command.  Writes
``sweep.json`` and, with matplotlib (the ``plots`` extra), ``throughput.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from async_etl.cli import bench
from async_etl.cli.bench import _enter_sync
from async_etl.cli.help import BAD_INPUT, LOG_FORMATS, add_command
from async_etl.cli.output import json_out_path, write_json
from async_etl.config import BenchSettings, bench_settings
from async_etl.core.knee import THRESHOLD, KneeSearch, Point, RatePoint, RateSearch
from async_etl.core.stats import Snapshot
from async_etl.errors import ConfigError
from async_etl.log import configure_logging
from async_etl.runtime import loop
from async_etl.runtime.engine import Engine
from async_etl.sinks import open_sink
from async_etl.sources.synthetic import Synthetic

BENCH_DESTS = ("sink", "table", "batch_size", "generators", "seed", "schema_file", "payload_bytes",
               "max_retries")  # fmt: skip
"""The bench flags a sweep takes, with bench's names, short flags and help."""
EXIT_CODES = {
    0: "a knee was found",
    1: "no level met --slo-p99-ms (by rate: no rate was held)",
    2: BAD_INPUT,
}


def register(sub: Any) -> None:
    """Add the ``sweep`` subcommand to the top-level parser."""
    p = add_command(
        sub,
        "sweep",
        help="find the concurrency where throughput stops growing",
        doc=__doc__,
        exit_codes=EXIT_CODES,
        env=bench.ENVIRONMENT,
    )
    for flags, dest, typ, metavar, text in bench.FLAGS:
        if dest in BENCH_DESTS:
            p.add_argument(*flags, dest=dest, type=typ, metavar=metavar, default=None, help=text)
    p.add_argument("--log-format", choices=LOG_FORMATS, default=None, help="default auto")
    p.add_argument("--by", choices=("concurrency", "rate"), default="concurrency",
                   help="step batches in flight (closed loop; default) or the rate")  # fmt: skip
    p.add_argument("--start-rate", type=float, default=1000.0, metavar="ROWS_PER_S",
                   help="with --by rate: the first rate (1000)")  # fmt: skip
    p.add_argument("--max-rate", type=float, default=10_000_000.0, metavar="ROWS_PER_S",
                   help="with --by rate: the highest rate (10,000,000)")  # fmt: skip
    p.add_argument("--step-seconds", type=float, default=5.0, metavar="S",
                   help="seconds per level (5)")  # fmt: skip
    p.add_argument("--warmup", type=float, default=None, metavar="S",
                   help="seconds excluded per level (default: a fifth of a step)")  # fmt: skip
    p.add_argument("--start", type=int, default=1, metavar="N", help="first concurrency (1)")
    p.add_argument("--max-concurrency", type=int, default=256, metavar="N",
                   help="highest level (256); with --by rate, the batches in flight")  # fmt: skip
    p.add_argument("--threshold", type=float, default=THRESHOLD, metavar="F",
                   help="growth below this fraction = flat (0.05)")  # fmt: skip
    p.add_argument("--slo-p99-ms", type=float, default=None, metavar="MS",
                   help="p99 latency limit per level")  # fmt: skip
    p.add_argument("--out", default=".", metavar="DIR",
                   help="directory for sweep.json and throughput.png (default .)")  # fmt: skip
    p.add_argument("--no-uvloop", dest="uvloop", action="store_false", help="stdlib asyncio loop")
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    """Run a sweep; exit 0 with a knee, 1 when no level met the SLO, 2 for bad input."""
    flags = {dest: getattr(args, dest) for dest in (*BENCH_DESTS, "log_format")}
    check_numbers(args)
    if args.step_seconds <= 0:
        raise ConfigError(f"--step-seconds: must be > 0, got {args.step_seconds}")
    warmup = args.warmup if args.warmup is not None else args.step_seconds / 5
    if not 0 <= warmup < args.step_seconds:
        raise ConfigError(f"--warmup: must be >= 0 and below --step-seconds, got {warmup}")
    settings = bench_settings(
        {**flags, "duration": args.step_seconds, "warmup": warmup, "uvloop": args.uvloop},
        os.environ,
    )
    try:
        search = KneeSearch(
            start=args.start,
            maximum=args.max_concurrency,
            threshold=args.threshold,
            slo_p99_ms=args.slo_p99_ms,
        )
        rates = RateSearch(
            start=args.start_rate,
            maximum=args.max_rate,
            threshold=args.threshold,
            slo_p99_ms=args.slo_p99_ms,
        )
    except ValueError as exc:
        raise ConfigError(f"sweep: {exc}") from None
    out = Path(args.out)
    json_path = json_out_path(str(out / "sweep.json"), flag="--out")
    configure_logging("json" if settings.log_format == "json" else "console")
    source = Synthetic.from_options(
        schema_file=settings.schema_file, payload_bytes=settings.payload_bytes, seed=settings.seed
    )
    if args.by == "rate":
        in_flight = settings.replace(concurrency=args.max_concurrency)
        return _main_rate(args, in_flight, source, rates, json_path, out)
    loop.run(lambda: sweep(settings, source, search, on_point=_print_point), use_uvloop=args.uvloop)
    knee = search.knee()
    write_json(json_path, result(search, settings))
    mark = None if knee is None else (float(knee.concurrency), knee.rows_per_s)
    print(plot_note(write_plot(out / "throughput.png", concurrency_curve(search.curve()), mark)))
    if knee is None:
        print(f"async-etl: no level met the p99 SLO of {args.slo_p99_ms} ms", file=sys.stderr)
        return 1
    print(
        f"knee: concurrency {knee.concurrency}, {knee.rows_per_s:,.0f} rows/s, "
        f"p99 {knee.p99_ms:,.1f} ms ({knee.reason})"
    )
    return 0


POSITIVE = (("start_rate", "--start-rate"), ("max_rate", "--max-rate"),
            ("threshold", "--threshold"), ("slo_p99_ms", "--slo-p99-ms"),
            ("start", "--start"), ("max_concurrency", "--max-concurrency"))  # fmt: skip


def check_numbers(args: argparse.Namespace) -> None:
    """Every float flag finite, and those that must be, above 0: ``ConfigError`` naming it."""
    for dest, value in vars(args).items():
        if isinstance(value, float) and not math.isfinite(value):
            flag = "--" + dest.replace("_", "-")
            raise ConfigError(f"{flag}: must be a finite number, got {value!r}")
    for dest, flag in POSITIVE:
        value = getattr(args, dest)
        if value is not None and value <= 0:
            raise ConfigError(f"{flag}: must be > 0, got {value!r}")


def _main_rate(
    args: argparse.Namespace,
    settings: BenchSettings,
    source: Synthetic,
    search: RateSearch,
    json_path: Path | None,
    out: Path,
) -> int:
    """``--by rate``: measure, write sweep.json and the plot, print the knee; exit status."""
    loop.run(
        lambda: sweep_rate(settings, source, search, on_point=_print_rate), use_uvloop=args.uvloop
    )
    knee = search.knee()
    write_json(json_path, rate_result(search, settings))
    curve = search.curve()
    drawn = write_plot(
        out / "throughput.png",
        Curve(
            [p.target for p in curve],
            [p.achieved for p in curve],
            [p.p99_ms for p in curve],
            "target rate (rows/s, open loop)",
            "achieved rows/s and p99 from the due time vs target rate",
        ),
        None if knee is None else (knee.target, knee.achieved),
    )
    print(plot_note(drawn))
    if knee is None:
        print(
            f"async-etl: no rate was held (from {args.start_rate:,.0f} rows/s down to "
            f"{min(search.points):,.0f})",
            file=sys.stderr,
        )
        return 1
    print(
        f"knee: rate {knee.target:,.0f} rows/s held ({knee.achieved:,.0f} achieved), "
        f"p99 from due {knee.p99_ms:,.1f} ms ({knee.reason})"
    )
    return 0


def _print_rate(point: RatePoint) -> None:
    print(
        f"rate {point.target:>12,.0f}: {point.achieved:>12,.0f} rows/s achieved  "
        f"p99 from due {point.p99_ms:,.1f} ms",
        flush=True,
    )


def _print_point(point: Point) -> None:
    print(
        f"concurrency {point.concurrency:>5}: {point.rows_per_s:>12,.0f} rows/s  "
        f"p99 {point.p99_ms:,.1f} ms",
        flush=True,
    )


async def sweep(
    settings: BenchSettings,
    source: Synthetic,
    search: KneeSearch,
    *,
    on_point: Any = None,
) -> KneeSearch:
    """Measure the levels ``search`` asks for through one sink; returns ``search``.

    Raises the sink's ``LoadError`` (or another fatal error) as bench does.
    """
    async with AsyncExitStack() as stack:
        settings, sink = await _open(stack, settings, search.maximum)
        while (level := search.next_level()) is not None:
            snaps: list[Snapshot] = []
            run = settings.replace(concurrency=level, records=None, report_interval=0.1)
            async with Engine(run) as engine:
                summary = await engine.run(source, sink, on_snapshot=snaps.append)
            rate = window_rate(snaps, settings.warmup, settings.duration or 0.0)
            lat = summary.latency_ms
            if rate is None:
                raise ConfigError(
                    f"--step-seconds: no batch finished inside the measured window "
                    f"({settings.warmup:g} s to {settings.duration or 0.0:g} s) at concurrency "
                    f"{level} (a batch took {lat['p50']:,.0f} ms); use a longer step"
                )
            point = Point(level, rate, lat["p50"], lat["p99"])
            search.record(point)
            if on_point is not None:
                on_point(point)
    return search


async def sweep_rate(
    settings: BenchSettings,
    source: Synthetic,
    search: RateSearch,
    *,
    on_point: Any = None,
) -> RateSearch:
    """Measure the open-loop rates ``search`` asks for through one sink; returns ``search``.

    Each rate is a ``--rate`` run of ``settings.duration`` seconds with ``settings.concurrency``
    batches in flight at most.  Raises the sink's ``LoadError`` (or another fatal error).
    """
    async with AsyncExitStack() as stack:
        settings, sink = await _open(stack, settings, settings.concurrency)
        while (target := search.next_rate()) is not None:
            run = settings.replace(rate=target, records=None, warmup=0.0, report_interval=1.0)
            async with Engine(run) as engine:
                summary = await engine.run(source, sink, on_snapshot=lambda _: None)
            rate = summary.extra["rate"]
            due = rate["latency_from_due_ms"]
            point = RatePoint(target, rate["achieved_rows_per_s"], due["p50"], due["p99"])
            search.record(point)
            if on_point is not None:
                on_point(point)
    return search


async def _open(
    stack: AsyncExitStack, settings: BenchSettings, in_flight: int
) -> tuple[BenchSettings, Any]:
    """The sink of a sweep (an embedded PostgreSQL without ``--sink``), closed by ``stack``.

    ``in_flight``: the most batches any level sends at once (the sink's pool size).
    """
    url = settings.sink
    if url is None:
        from async_etl.drivers.postgres_embedded import embedded_postgres

        url = await _enter_sync(stack, embedded_postgres())
        settings = settings.replace(sink=url)
    sink = open_sink(url, settings.replace(concurrency=in_flight), what="--sink")
    stack.push_async_callback(sink.aclose)
    return settings, sink


def window_rate(snaps: list[Snapshot], start_s: float, end_s: float) -> float | None:
    """Rows/s between the first snapshot at or after ``start_s`` and the last up to ``end_s``.

    The run's own figure would include the drain after the deadline, when batches in flight
    finish and no new ones start: that tail weighs more the higher the concurrency.  None when
    no batch finished between those two snapshots (or there are not two): the window measured
    nothing, which is not a level with 0 rows/s.
    """
    inside = [s for s in snaps if start_s <= s.elapsed_s <= end_s]
    if len(inside) < 2:
        return None
    first, last = inside[0], inside[-1]
    span = last.elapsed_s - first.elapsed_s
    if span <= 0 or last.rows_total == first.rows_total:
        return None
    return (last.rows_total - first.rows_total) / span


def result(search: KneeSearch, settings: BenchSettings) -> dict[str, Any]:
    """The ``sweep.json`` document: the knee, the curve and how it was measured."""
    knee = search.knee()
    return {
        "by": "concurrency",
        "knee": knee.as_dict() if knee is not None else None,
        "points": [
            {
                "concurrency": p.concurrency,
                "rows_per_s": round(p.rows_per_s, 1),
                "p50_ms": p.p50_ms,
                "p99_ms": p.p99_ms,
                "power": round(p.power, 3),
            }
            for p in search.curve()
        ],
        "threshold": search.threshold,
        "slo_p99_ms": search.slo_p99_ms,
        "step_seconds": settings.duration,
        "warmup_seconds": settings.warmup,
        "batch_size": settings.batch_size,
    }


def rate_result(search: RateSearch, settings: BenchSettings) -> dict[str, Any]:
    """The ``sweep.json`` document of ``--by rate``: the knee, the curve, how it was measured."""
    knee = search.knee()
    return {
        "by": "rate",
        "knee": knee.as_dict() if knee is not None else None,
        "points": [
            {
                "target_rows_per_s": p.target,
                "achieved_rows_per_s": p.achieved,
                "p50_from_due_ms": p.p50_ms,
                "p99_from_due_ms": p.p99_ms,
                "held": search.held(p),
            }
            for p in search.curve()
        ],
        "threshold": search.threshold,
        "slo_p99_ms": search.slo_p99_ms,
        "step_seconds": settings.duration,
        "batch_size": settings.batch_size,
        "max_in_flight": settings.concurrency,
    }


@dataclass(frozen=True, slots=True)
class Curve:
    """What ``write_plot`` draws: x, rows/s and p99 per point, and the labels."""

    xs: list[float]
    rows_per_s: list[float]
    p99_ms: list[float]
    xlabel: str
    title: str


def concurrency_curve(points: list[Point]) -> Curve:
    """The concurrency sweep's curve."""
    return Curve(
        [float(p.concurrency) for p in points],
        [p.rows_per_s for p in points],
        [p.p99_ms for p in points],
        "concurrency (batches in flight)",
        "throughput and p99 latency vs concurrency",
    )


def write_plot(path: Path, curve: Curve, knee: tuple[float, float] | None) -> bool:
    """Draw rows/s and p99 against x, the knee (x, rows/s) marked; False without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = curve.xs
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    ax.plot(xs, curve.rows_per_s, marker="o", label="rows/s")
    ax.set_xscale("log", base=2)
    ax.set_xlabel(curve.xlabel)
    ax.set_ylabel("rows/s")
    ax.set_ylim(bottom=0)
    lat = ax.twinx()
    lat.plot(xs, curve.p99_ms, marker="s", color="tab:red", label="p99 ms")
    lat.set_ylabel("p99 latency (ms)")
    if knee is not None:
        ax.axvline(knee[0], color="grey", linestyle="--")
        ax.annotate(
            f"knee {knee[0]:,.0f}: {knee[1]:,.0f} rows/s",
            knee,
            textcoords="offset points",
            xytext=(6, -14),
        )
    ax.set_title(curve.title)
    ax.grid(True, alpha=0.3)
    fig.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def plot_note(drawn: bool) -> str:
    """What happened to the plot, in one line."""
    if drawn:
        return "wrote throughput.png and sweep.json"
    return "wrote sweep.json; throughput.png needs matplotlib: pip install 'async-etl[plots]'"
