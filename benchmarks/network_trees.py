"""The network scenario of ``async-etl compare`` from several source trees, interleaved.

    python benchmarks/network_trees.py --reps 3 --out DIR NAME=TREE [NAME=TREE ...]

Each TREE is a checkout (``git archive REV | tar -x -C TREE``); every rep runs
``python -m async_etl compare --scenario network --concurrency 256 --duration 6 --batch-size 100
--latency-ms 20 --gzip-threshold 0`` once from each tree in turn (that tree's code for the bench,
its workers and the stand-in), so a drift of the machine hits every tree alike.  Prints one block
per run (rows/s, latency, CPU of the bench with its generators, of the bench's own process and of
the stand-in, connections held, the load average before) and keeps each run's results.json as
``DIR/NAME{rep}.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMAND = [
    "compare",
    "--scenario",
    "network",
    "--concurrency",
    "256",
    "--duration",
    "6",
    "--batch-size",
    "100",
    "--latency-ms",
    "20",
    "--gzip-threshold",
    "0",
]


def _line(run: dict[str, object]) -> str:
    lat = run["latency_ms"]
    extra = run["extra"]
    assert isinstance(lat, dict) and isinstance(extra, dict)
    return (
        f"| {run['mode']} | {run['rows_per_s']:,.0f} | p50 {lat['p50']} p99 {lat['p99']} "
        f"| CPU {run['cpu_percent']} | parent {extra.get('parent_cpu_percent')} "
        f"| stand-in {run['server_cpu_percent']} | conns {run['open_connections']} |"
    )


def main() -> None:
    """Run the reps and print the blocks; exits 1 when a compare fails."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("trees", nargs="+", help="NAME=TREE")
    args = parser.parse_args()
    trees = [tuple(t.split("=", 1)) for t in args.trees]
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"# {args.reps} x interleaved: async-etl {' '.join(COMMAND)} --out DIR", flush=True)
    for name, tree in trees:
        print(f"# {name} = {tree}", flush=True)
    for rep in range(1, args.reps + 1):
        for name, tree in trees:
            load = " ".join(f"{x:.2f}" for x in os.getloadavg())
            print(f"# run {rep} {name} {time.strftime('%H:%M:%S', time.gmtime())} load: {load}")
            with tempfile.TemporaryDirectory(prefix="netscen-") as tmp:
                env = {**os.environ, "PYTHONPATH": str(Path(tree).resolve())}
                cmd = [sys.executable, "-m", "async_etl", *COMMAND, "--out", tmp]
                done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
                if done.returncode:
                    print(done.stdout[-2000:], done.stderr[-2000:])
                    sys.exit(1)
                shutil.copy(Path(tmp) / "results.json", args.out / f"{name}{rep}.json")
            runs = json.loads((args.out / f"{name}{rep}.json").read_text())
            by_mode = {r["mode"]: r for r in runs}
            for mode in ("threads", "async"):
                print(_line(by_mode[mode]))
            ratio = by_mode["async"]["rows_per_s"] / by_mode["threads"]["rows_per_s"]
            print(f"| async/threads | {ratio:.2f}x |", flush=True)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"# end {time.strftime('%H:%M:%S', time.gmtime())} load: {load}")


if __name__ == "__main__":
    main()
