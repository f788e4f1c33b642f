"""``--concurrency auto`` against the best fixed concurrency, and open-loop rate accuracy.

Sections (each run is a fresh ``python -m async_etl bench ... --json-out`` process):

* ``standin`` — the CrateDB stand-in as its own process, ``--capacity 32 --latency-ms 20
  --count-only``, batches of 100: fixed concurrencies 8..64 (brute force), then ``auto``;
* ``pg`` — PostgreSQL (``--dsn``), batches of 5,000: fixed 1..16, then ``auto:1-32``;
* ``rate`` — ``--rate`` 100k and 500k rows/s into ``null://`` (batches of 1,000): target vs
  achieved, schedule lag, and the bench process's own CPU per 1,000 batches (the pacer's cost
  and the engine's, generation excluded: it runs in the worker process).

Each section records the load average (``/proc/loadavg``) before and after it: the machine
these figures come from is shared, and its load moves the figures more than anything here.

Usage::

    flock /tmp/bench.lock python benchmarks/adaptive_and_rate.py [--dsn postgresql://...] \
        [--only standin,pg,rate] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "results" / "adaptive_and_rate.json"


def bench(args: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "s.json"
        cmd = [sys.executable, "-m", "async_etl", "bench", *args, "--json-out", str(out)]
        cmd += ["--log-format", "json"]
        subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        data: dict[str, Any] = json.loads(out.read_text())
    data["command"] = " ".join(["async-etl bench", *args])
    return data


def row(label: str, s: dict[str, Any]) -> dict[str, Any]:
    auto = s["extra"].get("adaptive")
    out = {
        "run": label,
        "rows_per_s": s["rows_per_s"],
        "p99_ms": s["latency_ms"]["p99"],
        "ok": s["ok"],
        "command": s["command"],
    }
    if auto:
        out["final_limit"] = auto["final"]
        out["changes"] = auto["changes"]
    print(json.dumps(out), flush=True)
    return out


def load() -> str:
    """The 1, 5 and 15 minute load averages now."""
    path = Path("/proc/loadavg")
    return " ".join(path.read_text().split()[:3]) if path.exists() else "?"


def versus(sink: list[str], fixed: list[int], auto: str, secs: float) -> dict[str, Any]:
    before = load()
    common = [*sink, "--duration", str(secs), "--warmup", str(secs / 4)]
    runs = [row(f"C={c}", bench([*common, "--concurrency", str(c)])) for c in fixed]
    best = max(runs, key=lambda r: r["rows_per_s"])
    auto_secs = [*sink, "--duration", str(secs * 2), "--warmup", str(secs)]
    adaptive = row(auto, bench([*auto_secs, "--concurrency", auto]))
    return {
        "load_before": before,
        "load_after": load(),
        "fixed": runs,
        "auto": adaptive,
        "best_fixed": best["run"],
        "rows_ratio": round(adaptive["rows_per_s"] / best["rows_per_s"], 3),
        "p99_ratio": round(adaptive["p99_ms"] / best["p99_ms"], 3),
    }


def standin(secs: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "async_etl.testing.crate", "--port", "0", "--count-only"]
    cmd += ["--capacity", "32", "--latency-ms", "20"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().rsplit(" ", 1)[1].strip()
        sink = ["--sink", url, "--batch-size", "100", "--generators", "1"]
        return versus(sink, [4, 8, 16, 24, 32, 48, 64, 128], "auto:1-128", secs)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def pg(dsn: str, secs: float) -> dict[str, Any]:
    sink = ["--sink", dsn, "--batch-size", "5000", "--table", "knee_bench_adaptive"]
    return versus(sink, [1, 2, 4, 8, 16], "auto:1-32", secs)


def rate(secs: float) -> list[dict[str, Any]]:
    out = []
    for target in (100_000, 500_000):
        before = load()
        flags = f"--sink null:// --rate {target} --duration {secs} --batch-size 1000 --generators 1"
        s = bench(flags.split())
        r = s["extra"]["rate"]
        parent_cpu_s = s["extra"]["parent_cpu_percent"] / 100.0 * s["seconds"]
        entry = {
            "target_rows_per_s": target,
            "achieved_rows_per_s": r["achieved_rows_per_s"],
            "met": r["met"],
            "late_batches": r["late_batches"],
            "batches": s["batches"],
            "lag_p99_ms": r["schedule_lag_ms"]["p99"],
            "within_2_percent": abs(r["achieved_rows_per_s"] - target) <= 0.02 * target,
            "parent_cpu_ms_per_1k_batches": round(parent_cpu_s / s["batches"] * 1e6, 1),
            "load_before": before,
            "load_after": load(),
            "command": s["command"],
        }
        print(json.dumps(entry), flush=True)
        out.append(entry)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--only", default="standin,pg,rate")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--rounds", type=int, default=1, help="repeat standin and pg this many times")
    args = p.parse_args()
    only = set(args.only.split(","))
    results: dict[str, Any] = {"load_average_at_start": load(), "started": time.ctime()}
    if "standin" in only:
        results["standin"] = [standin(args.seconds) for _ in range(args.rounds)]
    if "pg" in only:
        results["pg"] = [pg(args.dsn, args.seconds) for _ in range(args.rounds)]
    if "rate" in only:
        results["rate"] = rate(args.seconds)
    results["load_average_at_end"] = load()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
