"""Issue 11's fixed cost: a 10-row job, whole process, against ingestr's (and the parts of ours).

    flock /tmp/bench.lock /work/main/.venv/bin/python benchmarks/job_start.py \\
        --ingestr /tmp/jobstart_ingestr/bin/ingestr [--before DIR] [--rounds 15] [--out F] \\
        [--db-prefix aetl_start]

``--ingestr``: ingestr 1.1.22 from a throwaway venv (``python3 -m venv V && V/bin/pip install
ingestr==1.1.22``), run with ``HOME`` / ``XDG_*`` in a temp dir and its telemetry off.
``--before DIR``: the code before (``git archive REV | tar -x -C DIR``), same interpreter.

Data: ``src.tiny`` (10 rows: id, name, email, city, tier, updated_at) in one database of the
local PostgreSQL, copied into another (so the rows cross the process); the two databases are
``PREFIX_src`` and ``PREFIX_dst`` (``--db-prefix``), created and dropped by the script.
Cases, each a fresh process, wall seconds spawn to exit:

* ``async-etl copy --mode replace --key id --fresh`` (now, and ``--before``), bytecode cached
  as an installed package's is (``PYTHONDONTWRITEBYTECODE`` unset);
* the same with no usable bytecode cache (``PYTHONDONTWRITEBYTECODE=1`` and an empty
  ``PYTHONPYCACHEPREFIX``): what a start costs where bytecode is never written;
* ``ingestr ingest --incremental-strategy replace --primary-key id`` into its own table;
* the interpreter alone (``python -c pass``) and ``async-etl copy --help`` (start and
  imports, no database), to split ours into parts.

The cases run in turn, one of each per round (so drift of the machine's speed hits all alike),
after one warm-up round; medians and min-max over ``--rounds``, and async-etl / ingestr per
round (its median).  Prints a table, writes ``--out`` (JSON) with the load averages.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BASE = "postgresql://postgres@127.0.0.1:5432"
TINY = (
    "CREATE SCHEMA src; CREATE TABLE src.tiny (id bigint PRIMARY KEY, name text, email text, "
    "city text, tier int, updated_at timestamptz); INSERT INTO src.tiny SELECT g, 'name ' || g, "
    "'user' || g || '@example.com', 'Vienna', g % 3, timestamptz '2024-01-01' + g * interval "
    "'1 hour' FROM generate_series(1, 10) g;"
)


def psql(db: str, sql: str) -> None:
    """Run ``sql`` in ``db`` (errors stop the benchmark)."""
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-qAt",
                    "-v", "ON_ERROR_STOP=1"], input=sql, text=True, check=True,
                   capture_output=True)  # fmt: skip


def wall(argv: list[str], env: dict[str, str], cwd: str | None) -> float:
    """Wall seconds of one process, spawn to exit; raises when it fails."""
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return took


def cases(args: argparse.Namespace, tmp: Path) -> dict[str, tuple[list[str], dict[str, str], str]]:
    """Name -> (argv, environment, working directory)."""
    here = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": here}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    cold = {**env, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPYCACHEPREFIX": str(tmp / "nocache")}
    src, dst = f"{BASE}/{args.db_prefix}_src", f"{BASE}/{args.db_prefix}_dst"
    etl = [sys.executable, "-m", "async_etl"]

    def copy(table: str) -> list[str]:
        return [*etl, "copy", "--source", src, "--source-table", "src.tiny", "--target", dst,
                "--target-table", table, "--key", "id", "--fresh"]  # fmt: skip

    out = {
        "python -c pass": ([sys.executable, "-c", "pass"], env, here),
        "async-etl copy --help": ([*etl, "copy", "--help"], env, here),
        "async-etl copy": (copy("dw.tiny"), env, here),
        "async-etl copy, no bytecode cache": (copy("dw.tiny"), cold, here),
    }
    if args.before:
        before = {**env, "PYTHONPATH": args.before}
        out["async-etl copy [before]"] = (copy("dw.before"), before, args.before)
    if args.ingestr:
        home = str(tmp / "home")
        peer = {**os.environ, "HOME": home, "XDG_CONFIG_HOME": home, "XDG_CACHE_HOME": home,
                "XDG_DATA_HOME": home, "DISABLE_TELEMETRY": "true",
                "INGESTR_DISABLE_TELEMETRY": "true"}  # fmt: skip
        out["ingestr replace"] = ([args.ingestr, "ingest", "--yes", "--source-uri", src,
                                   "--source-table", "src.tiny", "--dest-uri", dst,
                                   "--dest-table", "dw.ing_tiny", "--incremental-strategy",
                                   "replace", "--primary-key", "id"], peer, str(tmp))  # fmt: skip
    return out


def summary(values: list[float]) -> dict[str, float]:
    """Median, min and max in milliseconds."""
    return {k: round(1000 * f(values), 1) for k, f in
            (("median", statistics.median), ("min", min), ("max", max))}  # fmt: skip


def main() -> None:
    """Seed, run every case once per round after a warm-up round, print and write the JSON."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--ingestr", default=None, help="ingestr executable (throwaway venv)")
    ap.add_argument("--before", default=None, help="a checkout of the code before")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--out", default=None)
    ap.add_argument("--db-prefix", default="aetl_start", help="names of the two databases")
    args = ap.parse_args()
    src_db, dst_db = f"{args.db_prefix}_src", f"{args.db_prefix}_dst"
    for db in (src_db, dst_db):
        psql("postgres", f"DROP DATABASE IF EXISTS {db} WITH (FORCE); CREATE DATABASE {db};")
    psql(src_db, TINY)
    psql(dst_db, "CREATE SCHEMA dw;")
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="aetl_start_") as name:
        todo = cases(args, Path(name))
        times: dict[str, list[float]] = {k: [] for k in todo}
        for i in range(args.rounds + 1):
            for case, (argv, env, cwd) in todo.items():
                took = wall(argv, env, cwd)
                if i:  # round 0 warms caches (and writes the bytecode) and is not counted
                    times[case].append(took)
            loads.append(os.getloadavg()[0])
    for db in (src_db, dst_db):
        psql("postgres", f"DROP DATABASE IF EXISTS {db} WITH (FORCE);")
    result: dict[str, Any] = {"rounds": args.rounds, "load_1min": loads,
                              "ms": {k: summary(v) for k, v in times.items()}}  # fmt: skip
    if "ingestr replace" in times:
        peer = times["ingestr replace"]
        result["ratio_to_ingestr"] = {
            k: round(statistics.median(a / b for a, b in zip(v, peer, strict=True)), 2)
            for k, v in times.items()
            if k.startswith("async-etl copy") and "help" not in k
        }
    print(f"load average (1 min) {min(loads):.2f}-{max(loads):.2f}; {args.rounds} rounds")
    for case, s in result["ms"].items():
        ratio = result.get("ratio_to_ingestr", {}).get(case)
        extra = f"  {ratio:.2f}x ingestr" if ratio is not None else ""
        print(f"{case:<36} {s['median']:7.1f} ms  ({s['min']:.1f}-{s['max']:.1f}){extra}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
