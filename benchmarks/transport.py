"""Issue 12: the load generator against `pgbench -i`, and what the shared-memory transport buys.

    flock /tmp/bench.lock python benchmarks/transport.py [--base DIR] [--repeat 3]
          [--only pgbench,null,cpu] [--dsn postgresql://postgres@127.0.0.1:5432/DB]
          [--rows 1000000,10000000] [--pg-concurrency 2,4] [--pg-variants 'F1|F2']
          [--quiet 0.15] [--pg-flags FLAGS] [--out FILE]

Every figure is the median of --repeat fresh processes, alternated with its anchor in the same
run.  ``--base DIR`` is a copy of the package before the change (``git archive <commit>
async_etl | tar -x -C DIR``): then the null-sink and CPU sections run it too, interleaved.
Besides rows/s it reports CPU per row (µs of CPU, the bench process plus its generators,
and the parent alone), which a loaded machine disturbs far less than rows/s.

* pgbench: `pgbench -i -s S -I dtg` (its client-side generate step) vs `async-etl bench
  --schema benchmarks/pgbench_accounts.toml -b 100000 -c C` (C from --pg-concurrency, or each
  flag set of --pg-variants, separated by |, e.g. '-b 50000 -c 2 -j 0|-b 100000 -c 1'), --rows
  rows (1M and 10M), same server, same database, each repetition once the machine's CPU use
  over 2 s was at most --quiet (a fraction; it waits up to 90 s), each run after a CHECKPOINT
  and a sync (``settle``: no run pays for the previous one's writeback); with a local server,
  also the CPU every PostgreSQL process used per 1M rows over each whole command (backends,
  reaped ones included, and background processes), the machine's CPU and the checkpoints.
* null:    `bench --sink null://` with P = 1 and P = 2 generator processes.
* cpu:     2,000-byte payload rows into the null sink, P = 0 and P = 2.
* sn-null, sn-cpu, sn-pgbench: the same three with shared-nothing worker processes
  (``--processes N``, each worker generating inline and sending over its own connections):
  null sink N = 1 and N = 2 (and ``-j 2`` beside them), 10M rows; CPU-heavy rows ``-j 0`` and
  ``--processes 2``, 1.5M rows; and ``--pg-flags`` (default ``-b 100000 -c 1 --processes 2``)
  against ``pgbench -i``.  ``--out`` names the JSON
  file the figures are merged into (default ``results/transport.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
SCHEMA = HERE / "pgbench_accounts.toml"


def bench(tree: Path, args: list[str], tmp: Path) -> dict[str, Any]:
    """One `async-etl bench` run of the package in ``tree``; its summary plus CPU per row."""
    out = tmp / "summary.json"
    cmd = [PY, "-m", "async_etl", "bench", "--log-format", "json", "--json-out", str(out), *args]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    # cwd = tree: ``python -m`` puts the working directory ahead of PYTHONPATH
    wall = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tree, timeout=1800)
    wall = time.perf_counter() - wall
    if proc.returncode != 0:
        raise SystemExit(f"bench failed: {' '.join(args)}\n{proc.stderr[-1500:]}")
    d: dict[str, Any] = json.loads(out.read_text())
    rate = d["rows_per_s"]
    return {
        "rows_per_s": rate,
        "cpu_us_per_row": 1e6 * d["cpu_percent"] / 100 / rate,
        "parent_us_per_row": 1e6 * d["extra"]["parent_cpu_percent"] / 100 / rate,
        "ok": d["ok"],
        "wall_s": wall,  # the whole command: interpreter start, pool, prepare, reconcile
    }


def pgbench(scale: int, db: str) -> dict[str, Any]:
    """`pgbench -i -s scale -I dtg`; rows/s of its client-side generate step (data + COPY)."""
    cmd = ["pgbench", "-h", "127.0.0.1", "-U", "postgres", "-i", "-s", str(scale), "-I", "dtg"]
    wall = time.perf_counter()
    proc = subprocess.run(
        [*cmd, "-q", db],
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - wall
    found = re.search(r"client-side generate ([0-9.]+) s", proc.stderr)
    assert found, proc.stderr
    return {"rows_per_s": scale * 100_000 / float(found.group(1)), "wall_s": wall}


def _postgres_cpu() -> float:
    """CPU seconds of every local ``postgres`` process, plus the children the postmaster reaped.

    0.0 where /proc is not readable (a remote server: then the figure is left out).
    """
    hz = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        if "(postgres)" not in stat:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / hz  # utime + stime
        ppid = fields[1]
        if (
            not Path(f"/proc/{ppid}/stat").exists()
            or "(postgres)" not in Path(f"/proc/{ppid}/stat").read_text()
        ):  # the postmaster: its reaped backends' CPU
            total += (int(fields[13]) + int(fields[14])) / hz
    return total


def _checkpoints(dsn: str) -> int:
    """Checkpoints the server has started (timed + requested), from ``pg_stat_bgwriter``."""
    sql = "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"
    out = subprocess.run(["psql", dsn, "-Atc", sql], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def settle(dsn: str) -> None:
    """Start the next run on a settled server: ``CHECKPOINT``, then flush the page cache.

    Without it the order of the runs decides part of the figures: `pgbench -i` leaves its
    table (1.3 GB at 10M rows) dirty in shared buffers and the page cache, and its writeback
    then runs during whatever comes next, while bench's table is dropped after each run (its
    dirty pages are discarded, and the next pgbench finds the disk idle).
    """
    subprocess.run(["psql", dsn, "-qc", "CHECKPOINT"], check=True, capture_output=True)
    os.sync()


def with_server_cpu(
    rows: int, run: Callable[[], dict[str, Any]], dsn: str | None = None
) -> dict[str, Any]:
    """``run()``'s result plus PostgreSQL CPU per 1M rows over the run (``server_s_per_1m``).

    Also ``machine_s_per_1m``: the CPU the whole machine used meanwhile (the rest of it is
    neither the client nor the server: someone else's work), and with ``dsn`` the number of
    checkpoints that started during the run (a checkpoint writes the run's pages meanwhile).
    """
    before, (busy0, _) = _postgres_cpu(), _cpu_ticks()
    points = _checkpoints(dsn) if dsn else 0
    result = run()
    time.sleep(1.0)  # the client's backends exit, and are reaped, after it does
    used = _postgres_cpu() - before
    if used > 0:
        result["server_s_per_1m"] = used * 1_000_000 / rows
    machine = (_cpu_ticks()[0] - busy0) / os.sysconf("SC_CLK_TCK")
    result["machine_s_per_1m"] = machine * 1_000_000 / rows
    if dsn:
        result["checkpoints"] = _checkpoints(dsn) - points
    return result


def _cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def wait_quiet(max_busy: float, patience_s: float = 90.0) -> float:
    """Wait until the machine's CPU use over 2 s is at most ``max_busy`` (0..1); return it.

    A shared machine's other work (other people's tests and builds) shows here before a run;
    after ``patience_s`` the run goes ahead anyway and the figure says how busy it was.
    """
    deadline = time.monotonic() + patience_s
    while True:
        b0, t0 = _cpu_ticks()
        time.sleep(2.0)
        b1, t1 = _cpu_ticks()
        busy = (b1 - b0) / max(1, t1 - t0)
        if busy <= max_busy or time.monotonic() > deadline:
            return round(busy, 3)


def median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    names = ("rows_per_s", "cpu_us_per_row", "parent_us_per_row", "server_s_per_1m")
    keys = [k for k in names if all(k in r for r in runs)]
    out = {k: round(median(runs, k), 0 if k == "rows_per_s" else 3) for k in keys} | {
        "runs": [round(r["rows_per_s"]) for r in runs]
    }
    for key in ("server_s_per_1m", "machine_s_per_1m", "checkpoints", "wall_s"):
        if all(key in r for r in runs):
            out[f"runs_{key}"] = [round(r[key], 3) for r in runs]
    return out


PG_FLAGS = "-b 100000 -c {c}"
SN_PG_FLAGS = "-b 100000 -c 1 --processes 2"


def section_pgbench(
    dsn: str,
    repeat: int,
    tmp: Path,
    sizes: tuple[int, ...],
    variants: dict[str, list[str]],
    max_busy: float = 1.0,
) -> dict[str, Any]:
    """Each size: pgbench and bench with every variant's flags, alternated, ``repeat`` times.

    Before each repetition it waits for the machine to be quiet (``wait_quiet(max_busy)``).
    """
    db = dsn.rsplit("/", 1)[1]
    result: dict[str, Any] = {}
    for rows in sizes:
        theirs: list[dict[str, Any]] = []
        ours: dict[str, list[dict[str, Any]]] = {label: [] for label in variants}
        busy: list[float] = []
        for i in range(repeat):
            if max_busy < 1.0:
                busy.append(wait_quiet(max_busy))
            settle(dsn)
            theirs.append(with_server_cpu(rows, partial(pgbench, rows // 100_000, db), dsn))
            for v, (label, flags) in enumerate(variants.items()):
                table = f"accounts_{rows}_{v}_{i}"
                args = ["--sink", dsn, "--table", table, "--schema", str(SCHEMA),
                        "-n", str(rows), *flags]  # fmt: skip
                settle(dsn)
                ours[label].append(with_server_cpu(rows, partial(bench, ROOT, args, tmp), dsn))
                drop = f"DROP TABLE {table}"  # 1.3 GB each at 10M rows
                subprocess.run(["psql", dsn, "-qc", drop], check=True, capture_output=True)
        for label in variants:
            ratio = median(ours[label], "rows_per_s") / median(theirs, "rows_per_s")
            result[f"{rows:,} rows {label}"] = {
                "async_etl": summary(ours[label]),
                "pgbench": summary(theirs),
                "ratio": round(ratio, 2),
                "command": "async-etl bench --sink $DSN --schema "
                f"benchmarks/pgbench_accounts.toml -n {rows} {label}",
                "anchor": f"pgbench -i -s {rows // 100_000} -I dtg (client-side generate step)",
                "machine_busy_before_each_repetition": busy,
            }
    return result


def pairs(
    trees: dict[str, Path], cases: dict[str, list[str]], repeat: int, tmp: Path
) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {}
    for _ in range(repeat):
        for label, args in cases.items():
            for name, tree in trees.items():
                runs.setdefault(f"{name} {label}", []).append(bench(tree, args, tmp))
    return {key: summary(value) for key, value in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, help="the package before the change")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default="pgbench,null,cpu")
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/transport_bench")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "transport.json")
    parser.add_argument("--rows", default="1000000,10000000", help="pgbench sections' sizes")
    parser.add_argument("--pg-concurrency", default="2,4", help="pgbench: bench's -c levels")
    parser.add_argument(
        "--quiet", type=float, default=1.0, help="pgbench: wait for CPU use <= this (0..1)"
    )
    parser.add_argument("--pg-variants", default="", help="pgbench: bench's flag sets, |-separated")
    parser.add_argument("--pg-flags", default=SN_PG_FLAGS, help="sn-pgbench: bench's flags")
    args = parser.parse_args()
    only = set(args.only.split(","))
    trees = {"shm": ROOT} | ({"pipe": args.base} if args.base else {})
    results: dict[str, Any] = {f"load_before {args.only}": os.getloadavg(), "cpus": os.cpu_count()}
    sizes = tuple(int(n) for n in args.rows.split(",") if n)
    with tempfile.TemporaryDirectory(prefix="aetl-transport-") as name:
        tmp = Path(name)
        if "pgbench" in only:
            levels = args.pg_concurrency.split(",")
            flag_sets = [PG_FLAGS.format(c=c) for c in levels]
            if args.pg_variants:
                flag_sets = [f.strip() for f in args.pg_variants.split("|")]
            variants = {flags: flags.split() for flags in flag_sets}
            results["pgbench"] = section_pgbench(
                args.dsn, args.repeat, tmp, sizes, variants, args.quiet
            )
            print(json.dumps(results["pgbench"], indent=1), flush=True)
        if "null" in only:
            cases = {f"null P={p}": ["--sink", "null://", "-n", "3000000", "-j", str(p)]
                     for p in (1, 2)}  # fmt: skip
            results["null"] = pairs(trees, cases, args.repeat, tmp)
            print(json.dumps(results["null"], indent=1), flush=True)
        if "cpu" in only:
            cases = {f"cpu P={p}": ["--sink", "null://", "-n", "600000", "--payload-bytes",
                                    "2000", "-c", "4", "-j", str(p)] for p in (0, 2)}  # fmt: skip
            results["cpu"] = pairs(trees, cases, args.repeat, tmp)
            print(json.dumps(results["cpu"], indent=1), flush=True)
        here = {"now": ROOT}
        if "sn-null" in only:
            null = ["--sink", "null://", "-n", "10000000"]
            cases = {"null --processes 1": [*null, "--processes", "1"],
                     "null --processes 2": [*null, "--processes", "2"],
                     "null -j 2": [*null, "-j", "2"]}  # fmt: skip
            results["sn_null"] = pairs(here, cases, args.repeat, tmp)
            print(json.dumps(results["sn_null"], indent=1), flush=True)
        if "sn-cpu" in only:
            heavy = ["--sink", "null://", "-n", "1500000", "--payload-bytes", "2000", "-c", "4"]
            cases = {"cpu -j 0": [*heavy, "-j", "0"],
                     "cpu --processes 2": [*heavy, "--processes", "2"]}  # fmt: skip
            results["sn_cpu"] = pairs(here, cases, args.repeat, tmp)
            print(json.dumps(results["sn_cpu"], indent=1), flush=True)
        if "sn-pgbench" in only:
            key = f"sn_pgbench {args.pg_flags}"
            variants = {args.pg_flags: args.pg_flags.split()}
            results[key] = section_pgbench(args.dsn, args.repeat, tmp, sizes, variants)
            print(json.dumps(results[key], indent=1), flush=True)
    results[f"load_after {args.only}"] = os.getloadavg()
    out = args.out
    previous = json.loads(out.read_text()) if out.exists() else {}
    out.write_text(json.dumps(previous | results, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
