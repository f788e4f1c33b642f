"""``async-etl compare``: the same workload through the async and the thread runner, measured.

Every run is a fresh ``python -m async_etl bench ... --json-out`` process, so peak RSS, CPU and
thread counts belong to that run alone.  Scenarios:

* ``network`` — the CrateDB stand-in with ``--latency-ms`` per request (started here, counting
  mode, unless ``--sink`` is given); levels are concurrencies;
* ``database`` — PostgreSQL (``--sink`` or an embedded server started here): asyncpg COPY
  against psycopg COPY; levels are concurrencies;
* ``cpu`` — heavy records (``--payload-bytes``) into the null sink; levels are generator
  processes, 0 (inline) and ``--generators`` (default: the CPU count).

Fairness: both modes get the same connection count (C async delivery tasks with an aiohttp
connector limit / asyncpg pool of C, against C threads sharing a urllib3 pool of maxsize C /
C psycopg connections), the same batch size, generators, seed and retry policy, the same
warm-up excluded from the figures, and uvloop for the async runner unless ``--no-uvloop``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psutil

from async_etl.cli.help import BAD_INPUT, add_command
from async_etl.config import BenchSettings
from async_etl.core.urls import scheme_of
from async_etl.errors import ConfigError
from async_etl.sinks import sink_scheme

SCENARIOS = ("network", "database", "cpu")
MODES = ("threads", "async")
_DEFAULTS: dict[str, dict[str, Any]] = {
    "network": {"concurrency": "1,4,16,64,256", "batch_size": 100, "payload_bytes": 0},
    "database": {"concurrency": "1,4,16", "batch_size": 5000, "payload_bytes": 0},
    "cpu": {"concurrency": "4", "batch_size": 5000, "payload_bytes": 2000},
}
ENV_PREFIX = "ASYNC_ETL_COMPARE_"
EXIT_STATUSES = {0: "every run produced its figures", 1: "a run failed (see its log)", 2: BAD_INPUT}
ENVIRONMENT = (
    (f"{ENV_PREFIX}<FLAG>", f"any flag, e.g. {ENV_PREFIX}OUT=results, ..._UVLOOP=N (flags win)"),
)
_SCHEMES = {"network": ("http", "https", "crate"), "database": ("postgresql", "postgres")}


@dataclass(frozen=True, slots=True)
class Plan:
    """A validated compare: the scenario, its levels and the per-run bench settings."""

    scenario: str
    sink: str | None
    levels: tuple[int, ...]
    concurrency: int  # the cpu scenario's fixed concurrency
    records: int | None
    duration: float | None
    batch_size: int
    generators: int
    latency_ms: float
    payload_bytes: int
    gzip_threshold: int
    warmup: float
    uvloop: bool
    out: Path

    @property
    def axis(self) -> str:
        """What the levels are: ``concurrency`` or (cpu) ``generators``."""
        return "generators" if self.scenario == "cpu" else "concurrency"

    def settings(self, level: int, mode: str) -> BenchSettings:
        """The bench settings of one run (validated: a bad value raises ``ConfigError``)."""
        cpu = self.scenario == "cpu"
        return BenchSettings(
            sink=self.sink,
            table=f"compare_{mode}_{level}" if self.scenario == "database" else "compare_bench",
            records=self.records,
            duration=self.duration,
            batch_size=self.batch_size,
            concurrency=self.concurrency if cpu else level,
            generators=level if cpu else self.generators,
            payload_bytes=self.payload_bytes,
            gzip_threshold=self.gzip_threshold,
            warmup=self.warmup,
            uvloop=self.uvloop,
            mode=mode,  # type: ignore[arg-type]
            log_format="json",
        )


def _levels(text: str, flag: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"{flag}: expected comma-separated integers, got {text!r}") from None
    if not levels or min(levels) < 1 or len(set(levels)) != len(levels):
        raise ConfigError(f"{flag}: expected distinct integers >= 1, got {text!r}")
    return levels


def plan_from_args(args: argparse.Namespace) -> Plan:
    """Validate the flags into a ``Plan``; raises a one-line ``ConfigError`` naming the flag."""
    scenario = args.scenario
    if scenario not in SCENARIOS:
        raise ConfigError(f"--scenario: must be one of {', '.join(SCENARIOS)}, got {scenario!r}")
    defaults = _DEFAULTS[scenario]
    if (args.records is None) == (args.duration is None):
        raise ConfigError("--records or --duration: give exactly one")
    if args.records is not None and args.records < 1:
        raise ConfigError(f"--records: must be >= 1, got {args.records!r}")
    if args.duration is not None and args.duration <= 0:
        raise ConfigError(f"--duration: must be > 0, got {args.duration!r}")
    if args.latency_ms is not None and (scenario != "network" or args.sink):
        raise ConfigError("--latency-ms: only for the network scenario's own stand-in (no --sink)")
    if args.latency_ms is not None and not math.isfinite(args.latency_ms):  # inf: hangs
        raise ConfigError(f"--latency-ms: must be a finite number, got {args.latency_ms!r}")
    if args.latency_ms is not None and args.latency_ms < 0:
        raise ConfigError(f"--latency-ms: must be >= 0, got {args.latency_ms!r}")
    if args.sink:
        scheme = sink_scheme(args.sink)
        allowed = _SCHEMES.get(scenario, ("null",))
        if scheme not in (*allowed, "null"):
            raise ConfigError(f"--sink: the {scenario} scenario takes {'/'.join(allowed)} URLs")
    levels = _levels(args.concurrency or defaults["concurrency"], "--concurrency")
    generators = os.cpu_count() or 1 if args.generators is None else args.generators
    concurrency = levels[0]
    if scenario == "cpu":
        if len(levels) != 1:
            raise ConfigError("--concurrency: the cpu scenario takes one value")
        if generators < 1:
            raise ConfigError(f"--generators: the cpu scenario needs >= 1, got {generators}")
        levels = (0, generators)
    plan = Plan(
        scenario=scenario,
        sink=args.sink or ("null://" if scenario == "cpu" else None),
        levels=levels,
        concurrency=concurrency,
        records=args.records,
        duration=args.duration,
        batch_size=defaults["batch_size"] if args.batch_size is None else args.batch_size,
        generators=generators,
        latency_ms=20.0 if args.latency_ms is None else args.latency_ms,
        payload_bytes=(
            defaults["payload_bytes"] if args.payload_bytes is None else args.payload_bytes
        ),
        gzip_threshold=8192 if args.gzip_threshold is None else args.gzip_threshold,
        warmup=1.0 if args.warmup is None else args.warmup,
        uvloop=args.uvloop,
        out=Path(args.out),
    )
    for level in plan.levels:
        plan.settings(level, "async")  # validates batch size, payload bytes, warm-up, ...
    return plan


def register(sub: Any) -> None:
    """Add the ``compare`` subcommand to the top-level parser."""
    p = add_command(
        sub,
        "compare",
        help="threads vs async on the same workload",
        doc=__doc__,
        exit_codes=EXIT_STATUSES,
        env=ENVIRONMENT,
    )
    p.add_argument("--sink", metavar="URL", help="sink URL (default: per scenario, see above)")
    p.add_argument("--scenario", default="network", choices=SCENARIOS,
                   help="what to measure (default network)")  # fmt: skip
    p.add_argument("-c", "--concurrency", metavar="C,C,...",
                   help="comma-separated levels, e.g. 1,4,16,64,256")  # fmt: skip
    p.add_argument("-n", "--records", type=int, metavar="N",
                   help="records per run (or --duration)")  # fmt: skip
    p.add_argument("-T", "--duration", type=float, metavar="S",
                   help="seconds per run instead of --records")  # fmt: skip
    p.add_argument("--out", required=True, metavar="DIR",
                   help="directory for results.json/.md and the PNGs")  # fmt: skip
    p.add_argument("-b", "--batch-size", type=int, metavar="B",
                   help="rows per batch (network 100, else 5000)")  # fmt: skip
    p.add_argument("-j", "--generators", type=int, metavar="P",
                   help="generator processes (default: CPU count)")  # fmt: skip
    p.add_argument("--latency-ms", type=float, metavar="MS",
                   help="stand-in latency per request (default 20)")  # fmt: skip
    p.add_argument("--payload-bytes", type=int, metavar="N",
                   help="text bytes per row (cpu default 2000)")  # fmt: skip
    p.add_argument("--gzip-threshold", type=int, metavar="BYTES",
                   help="CrateDB: gzip bodies from this size; 0 = never")  # fmt: skip
    p.add_argument("--warmup", type=float, metavar="S", help="seconds excluded per run (default 1)")
    p.add_argument("--no-uvloop", dest="uvloop", action="store_false", help="stdlib asyncio loop")
    p.set_defaults(env_prefix=ENV_PREFIX)
    p.set_defaults(handler=main)


@contextlib.contextmanager
def scenario_sink(plan: Plan) -> Iterator[tuple[str, int | None]]:
    """The sink URL for the whole compare (and the pid of a stand-in started for it)."""
    if plan.sink:
        yield plan.sink, None
    elif plan.scenario == "database":
        from async_etl.drivers.postgres_embedded import embedded_postgres

        with embedded_postgres() as dsn:
            yield dsn, None
    else:
        with _stand_in(plan.latency_ms) as found:
            yield found


@contextlib.contextmanager
def _stand_in(latency_ms: float) -> Iterator[tuple[str, int | None]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [sys.executable, "-m", "async_etl.testing.crate", "--port", str(port)]
    cmd += ["--latency-ms", str(latency_ms), "--count-only", "--http", "lean"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if "listening on" not in line:
            err = proc.stderr.read() if proc.stderr and proc.poll() is not None else ""
            raise ConfigError(f"CrateDB stand-in did not start: {(line or err).strip()[:200]}")
        yield line.rsplit(" ", 1)[1].strip(), proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _cpu_s(pid: int | None) -> float:
    if pid is None:
        return 0.0
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def run_one(
    plan: Plan, url: str, level: int, mode: str, server: int | None = None
) -> dict[str, Any]:
    """Run one bench process; its summary plus ``threads``, ``open_connections`` and the level.

    With ``server`` (the stand-in's pid), also ``server_cpu_percent`` over the run's wall time.
    """
    s = plan.settings(level, mode)
    name = f"{plan.scenario}_{mode}_{plan.axis[0]}{level}"
    json_out, log_path = plan.out / "runs" / f"{name}.json", plan.out / "runs" / f"{name}.log"
    json_out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "async_etl", "bench", "--sink", url, "--mode", mode]
    for flag, value in (
        ("--table", s.table),
        ("--records", s.records) if s.records is not None else ("--duration", s.duration),
        ("--batch-size", s.batch_size),
        ("--concurrency", s.concurrency),
        ("--generators", s.generators),
        ("--payload-bytes", s.payload_bytes),
        ("--gzip-threshold", s.gzip_threshold),
        ("--warmup", s.warmup),
        ("--json-out", json_out),
        ("--log-format", "json"),
    ):
        if flag == "--gzip-threshold" and scheme_of(url) not in ("http", "https", "crate"):
            continue  # bench refuses it for any other sink: it would do nothing there
        cmd += [flag, str(value)]
    cmd += [] if plan.uvloop else ["--no-uvloop"]
    t0, cpu0 = time.perf_counter(), _cpu_s(server)
    with log_path.open("w") as log:
        code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    row: dict[str, Any] = {"scenario": plan.scenario, "level": level, "mode": mode}
    if json_out.exists():
        row.update(orjson.loads(json_out.read_bytes()))
        row["threads"] = row.get("extra", {}).get("threads")
        row["open_connections"] = row.get("extra", {}).get("open_connections")
    else:
        lines = log_path.read_text().strip().splitlines()
        row["error"] = lines[-1] if lines else f"exit status {code}"
    wall = time.perf_counter() - t0
    if server is not None:
        row["server_cpu_percent"] = round(100 * (_cpu_s(server) - cpu0) / wall, 1)
    row.update(exit_code=code, wall_s=round(wall, 2), log=str(log_path))
    return row


def main(args: argparse.Namespace) -> int:
    """Run every level in both modes, write the results and print the table; exit status."""
    plan = plan_from_args(args)
    (plan.out / "runs").mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    runs = [(level, mode) for level in plan.levels for mode in MODES]
    with scenario_sink(plan) as (url, server):
        for i, (level, mode) in enumerate(runs, 1):
            tag = f"[{i}/{len(runs)}] {plan.scenario} {plan.axis}={level} {mode}"
            print(f"{tag} ...", file=sys.stderr, flush=True)
            row = run_one(plan, url, level, mode, server)
            rows.append(row)
            outcome = row.get("error") or f"{row.get('rows_per_s', 0):,.0f} rows/s"
            print(f"{tag}: {outcome} ({row['wall_s']:.1f} s)", file=sys.stderr, flush=True)
    (plan.out / "results.json").write_bytes(orjson.dumps(rows, option=orjson.OPT_INDENT_2))
    table = render_markdown(plan, rows)
    (plan.out / "results.md").write_text(table)
    write_plots(plan, rows)
    print(table)
    return 0 if all("error" not in row for row in rows) else 1


def ratio(rows: Sequence[dict[str, Any]], level: int) -> float | None:
    """rows/s of async over threads at ``level`` (None when either is missing)."""
    by_mode = {r["mode"]: r.get("rows_per_s") for r in rows if r["level"] == level}
    a, t = by_mode.get("async"), by_mode.get("threads")
    return a / t if a and t else None


def _cell(row: dict[str, Any] | None, key: str, fmt: str) -> str:
    if row is None or row.get(key) is None:
        return "failed" if key == "rows_per_s" else "-"
    return format(row[key], fmt)


def render_markdown(plan: Plan, rows: Sequence[dict[str, Any]]) -> str:
    """The results table: level x mode -> rows/s, p99, CPU, RSS, threads, connections, ratio."""
    where = {"network": f"stand-in, {plan.latency_ms:g} ms per request"}.get(plan.scenario, "")
    head = [
        f"## async-etl compare: {plan.scenario} scenario",
        "",
        (f"{plan.records:,} records" if plan.records else f"{plan.duration:g} s")
        + f" per run, batch {plan.batch_size:,}, "
        + (
            f"concurrency {plan.concurrency}"
            if plan.scenario == "cpu"
            else f"generators {plan.generators}"
        )
        + f", payload {plan.payload_bytes} B, warm-up {plan.warmup:g} s excluded, "
        + f"uvloop {'on' if plan.uvloop else 'off'}{'; ' + where if where else ''}.",
        "",
        f"| {plan.axis} | mode | rows/s | p99 ms | CPU % | peak RSS MB | threads | connections "
        "| server CPU % | async/threads |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for level in plan.levels:
        for mode in MODES:
            row = next((r for r in rows if r["level"] == level and r["mode"] == mode), None)
            p99 = None if row is None else row.get("latency_ms", {}).get("p99")
            r = ratio(rows, level) if mode == "async" else None
            head.append(
                f"| {level} | {mode} | {_cell(row, 'rows_per_s', ',.0f')} "
                f"| {'-' if p99 is None else f'{p99:.1f}'} | {_cell(row, 'cpu_percent', '.0f')} "
                f"| {_cell(row, 'peak_rss_mb', '.1f')} | {_cell(row, 'threads', 'd')} "
                f"| {_cell(row, 'open_connections', 'd')} "
                f"| {_cell(row, 'server_cpu_percent', '.0f')} "
                f"| {'' if r is None else f'{r:.2f}x'} |"
            )
    if plan.scenario == "cpu":
        for mode in MODES:
            by_level = {r["level"]: r.get("rows_per_s") for r in rows if r["mode"] == mode}
            low, high = by_level.get(plan.levels[0]), by_level.get(plan.levels[-1])
            if low and high:
                head.append(
                    f"\n{mode}: P={plan.levels[-1]} / P=0 = {high / low:.2f}x "
                    "(what the process pool buys)"
                )
    return "\n".join(head) + "\n"


def write_plots(plan: Plan, rows: Sequence[dict[str, Any]]) -> None:
    """``throughput.png`` and ``memory.png`` in ``plan.out`` (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for name, key, label in (
        ("throughput", "rows_per_s", "rows/s (warm-up excluded)"),
        ("memory", "peak_rss_mb", "peak RSS of the bench process (MB)"),
    ):
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
        plotted = False
        for mode, marker in zip(MODES, ("s", "o"), strict=True):
            points = [
                (r["level"], r[key]) for r in rows if r["mode"] == mode and r.get(key) is not None
            ]
            if points:
                xs, ys = zip(*sorted(points), strict=True)
                ax.plot(xs, ys, marker=marker, label=mode)
                plotted = True
        if plan.scenario == "cpu":
            ax.set_xticks(list(plan.levels))
        else:
            ax.set_xscale("log", base=2)
            ax.set_xticks(list(plan.levels), [str(v) for v in plan.levels])
        ax.set_xlabel("generator processes" if plan.scenario == "cpu" else "concurrency (C)")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.set_title(f"threads vs async, {plan.scenario} scenario: {label.split(' (')[0]}")
        ax.grid(True, alpha=0.3)
        if plotted:  # every run failed: an empty plot, not a matplotlib warning on stderr
            ax.legend()
        fig.tight_layout()
        fig.savefig(plan.out / f"{name}.png")
        plt.close(fig)
