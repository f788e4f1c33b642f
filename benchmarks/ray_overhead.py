"""Ray path overhead: the same bench through Ray actors vs the local engine, equal parallelism.

Pairs, each into a fresh CrateDB stand-in process in counting mode (the sink is not the limit):

- ``local P=1``  vs ``ray 1 actor x P=1``  (target: ray >= 0.9x local)
- ``local P=2``  vs ``ray 2 actors x P=1``

Every run is ``async-etl bench`` in its own process (``--json-out``); rows/s is the summary's
(generator processes and actors start before the clock).  The ray runs use an in-process local
Ray, started by each run.  Usage:

    python benchmarks/ray_overhead.py [--records 1000000] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CASES = (
    ("local P=1", ["--generators", "1"]),
    ("ray 1 actor x P=1", ["--generators", "1", "--ray", "--ray-actors", "1"]),
    ("local P=2", ["--generators", "2"]),
    ("ray 2 actors x P=1", ["--generators", "1", "--ray", "--ray-actors", "2"]),
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
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "s.json"
            cmd = [sys.executable, "-m", "async_etl", "bench", "--sink", url]
            cmd += ["--records", str(records), "--batch-size", "5000", "--concurrency", "8"]
            cmd += ["--log-format", "json", "--json-out", str(out), *flags]
            env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
            subprocess.run(cmd, check=True, capture_output=True, env=env)
            s = json.loads(out.read_text())
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return {"rows_per_s": s["rows_per_s"], "ok": float(s["ok"])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=2)
    args = p.parse_args()
    best: dict[str, float] = {}
    for _ in range(args.repeat):
        for name, flags in CASES:
            got = one(flags, args.records)
            assert got["ok"], f"{name}: not exact"
            best[name] = max(best.get(name, 0.0), got["rows_per_s"])
    print(f"{'case':<22} {'rows/s (best of ' + str(args.repeat) + ')':>22}")
    for name, _ in CASES:
        print(f"{name:<22} {best[name]:>22,.0f}")
    print(f"ray 1 actor / local P=1: {best['ray 1 actor x P=1'] / best['local P=1']:.2f}x")
    print(f"ray 2 actors / local P=2: {best['ray 2 actors x P=1'] / best['local P=2']:.2f}x")


if __name__ == "__main__":
    main()
