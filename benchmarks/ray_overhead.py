"""Ray path overhead: the same bench through Ray actors vs the local engine, equal parallelism.

Pairs, each into a fresh CrateDB stand-in process in counting mode (the sink is not the limit):

- ``local P=1``  vs ``ray 1 actor x P=1``  (target: ray >= 0.9x local)
- ``local P=2``  vs ``ray 2 actors x P=1``
- ``local P=1``  vs ``ray 1 actor, cluster up``: the actor on a one-node cluster started
  (``ray start --head``, as in the tests) before the run and stopped after it, outside the
  clock, so the bench joins it (``--ray ADDRESS``) instead of starting Ray

Every run is ``async-etl bench`` in its own process (``--json-out``).  Two figures per run:

- rows/s, the summary's: generator processes and actors start before the clock;
- end to end: records / the bench process's wall time, which includes Python's start, Ray's
  start (``ray.init`` of an in-process local Ray, started by each run; joining, for the cluster
  that is up), the actors' start, the generator pool's start and the reconcile: what a user
  waits for.

The cases run interleaved (``--repeat`` rounds of all of them), so a drift of the machine hits
every case alike; the best and the median of the rounds are printed.  Usage:

    python benchmarks/ray_overhead.py [--records 1000000] [--repeat 3]
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
from contextlib import nullcontext
from pathlib import Path

REPO = str(Path(__file__).resolve().parents[1])
sys.path.insert(0, REPO)

from tests.ray.cluster import NO_AUTH, local_cluster  # noqa: E402

UP = "cluster up"  # the case's --ray address: a cluster started before the run
CASES = (
    ("local P=1", ["--generators", "1"]),
    ("ray 1 actor x P=1", ["--generators", "1", "--ray", "--ray-actors", "1"]),
    ("local P=2", ["--generators", "2"]),
    ("ray 2 actors x P=1", ["--generators", "1", "--ray", "--ray-actors", "2"]),
    ("ray 1 actor, cluster up", ["--generators", "1", "--ray", UP, "--ray-actors", "1"]),
)


def standin() -> tuple[subprocess.Popen[str], str]:
    """A counting stand-in process; (process, URL)."""
    cmd = [sys.executable, "-m", "async_etl.testing.crate", "--port", "0", "--count-only"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().rsplit(" ", 1)[1].strip()


def one(flags: list[str], records: int) -> dict[str, float]:
    """One bench run into a fresh stand-in; its rows/s and whether it was exact."""
    proc, url = standin()
    cluster = local_cluster(REPO, nodes=1) if UP in flags else nullcontext(UP)
    try:
        with tempfile.TemporaryDirectory() as tmp, cluster as address:
            out = Path(tmp) / "s.json"
            cmd = [sys.executable, "-m", "async_etl", "bench", "--sink", url]
            cmd += ["--records", str(records), "--batch-size", "5000", "--concurrency", "8"]
            cmd += ["--log-format", "json", "--json-out", str(out)]
            cmd += [address if flag == UP else flag for flag in flags]
            env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **NO_AUTH}
            t0 = time.monotonic()
            subprocess.run(cmd, check=True, capture_output=True, env=env)
            wall = time.monotonic() - t0
            s = json.loads(out.read_text())
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return {"rows_per_s": s["rows_per_s"], "end_to_end": records / wall, "ok": float(s["ok"])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    print(f"load average at start: {os.getloadavg()}", flush=True)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name, _ in CASES}
    for _ in range(args.repeat):
        for name, flags in CASES:
            got = one(flags, args.records)
            assert got["ok"], f"{name}: not exact"
            runs[name].append(got)
            print(f"{name:<24} {got['rows_per_s']:>10,.0f} rows/s  "
                  f"end to end {got['end_to_end']:>9,.0f}", flush=True)  # fmt: skip
    fig = {
        name: {
            "best": max(r["rows_per_s"] for r in got),
            "median": statistics.median(r["rows_per_s"] for r in got),
            "e2e": statistics.median(r["end_to_end"] for r in got),
        }
        for name, got in runs.items()
    }
    print(f"\n{'case':<24} {'best':>10} {'median':>10} {'e2e median':>11}")
    for name, f in fig.items():
        print(f"{name:<24} {f['best']:>10,.0f} {f['median']:>10,.0f} {f['e2e']:>11,.0f}")
    pairs = (
        ("ray 1 actor x P=1", "local P=1"),
        ("ray 2 actors x P=1", "local P=2"),
        ("ray 1 actor, cluster up", "local P=1"),
    )
    for ray, local in pairs:
        a, b = fig[ray], fig[local]
        print(f"{ray} / {local}: best {a['best'] / b['best']:.2f}x, "
              f"median {a['median'] / b['median']:.2f}x, "
              f"end to end {a['e2e'] / b['e2e']:.2f}x")  # fmt: skip
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
