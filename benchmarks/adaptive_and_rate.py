"""``--concurrency auto`` against the best fixed concurrency, and open-loop rate accuracy.

Sections (each run is a fresh ``python -m async_etl bench ... --json-out`` process):

* ``standin`` — the CrateDB stand-in as its own process, ``--capacity 32 --latency-ms 20
  --count-only``, batches of 100: fixed concurrencies 8..64 (brute force), then ``auto``;
* ``pg`` — PostgreSQL (``--dsn``), batches of 5,000: fixed 1..16, then ``auto:1-32``;
* ``rate`` — ``--rate`` 100k and 500k rows/s into ``null://`` (batches of 1,000; 500k also
  with two generator processes): target vs
  achieved, schedule lag, and the bench process's own CPU per 1,000 batches (the pacer's cost
  and the engine's, generation excluded: it runs in the worker process).

Each section records the load average (``/proc/loadavg``) before and after it: the machine
these figures come from is shared, and its load moves the figures more than anything here.

With ``--runs FILE`` every bench run of ``standin`` and ``pg`` is also appended to FILE as one
JSON line, and ``auto`` takes a different place among the fixed levels in each round (first,
middle, last, ...), so that a slow minute of the machine does not fall on it alone; several
calls (say one per round, each short enough to hold the machine alone) add up in that file,
and ``--summarize FILE`` takes the median of each level over the rounds and compares ``auto``
with the best fixed level by median.

Usage::

    flock /tmp/bench.lock python benchmarks/adaptive_and_rate.py [--dsn postgresql://...] \
        [--only standin,pg,rate] [--rounds 2] [--runs runs.jsonl --round 0]
    python benchmarks/adaptive_and_rate.py --summarize runs.jsonl
"""

from __future__ import annotations

import argparse
import json
import statistics
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
        began = time.perf_counter()
        subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        data: dict[str, Any] = json.loads(out.read_text())
    data["command"] = " ".join(["async-etl bench", *args])
    data["wall_s"] = round(time.perf_counter() - began, 1)
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
        searched = []  # the last move of the first search (settling in place logs nothing)
        for h in auto["history"]:
            if h["reason"] not in ("search", "settled"):
                break
            searched.append(h["elapsed_s"])
        out["searched_until_s"] = searched[-1] if searched else None
        out["limits"] = [h["new"] for h in auto["history"]]
    out["wall_s"] = s["wall_s"]
    out["load_after"] = load()
    print(json.dumps(out), flush=True)
    return out


def load() -> str:
    """The 1, 5 and 15 minute load averages now."""
    path = Path("/proc/loadavg")
    return " ".join(path.read_text().split()[:3]) if path.exists() else "?"


RUNS: Path | None = None  # --runs: every run is appended here as a JSON line
ROUND = 0  # --round: this call's round (the place of auto among the fixed levels)


def versus(sink: list[str], fixed: list[int], auto: str, secs: float) -> dict[str, Any]:
    before = load()
    common = [*sink, "--duration", str(secs), "--warmup", str(secs / 4)]
    auto_secs = [*sink, "--duration", str(secs * 2), "--warmup", str(secs)]
    order: list[int | None] = list(fixed)
    order.insert((ROUND % 3) * len(fixed) // 2, None)  # None: auto, first, middle or last
    runs: list[dict[str, Any]] = []
    adaptive: dict[str, Any] = {}
    for c in order:
        if c is None:
            adaptive = row(auto, bench([*auto_secs, "--concurrency", auto]))
        else:
            runs.append(row(f"C={c}", bench([*common, "--concurrency", str(c)])))
        if RUNS is not None:
            entry = adaptive if c is None else runs[-1]
            line = {"sink": "pg" if "postgresql" in sink[1] else "standin", "round": ROUND}
            with RUNS.open("a") as f:
                f.write(json.dumps({**line, **entry}) + "\n")
    best = max(runs, key=lambda r: r["rows_per_s"])
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
    for target, generators in ((100_000, 1), (500_000, 1), (500_000, 2)):
        before = load()
        flags = f"--sink null:// --rate {target} --duration {secs} --batch-size 1000"
        flags += f" --generators {generators}"
        s = bench(flags.split())
        r = s["extra"]["rate"]
        parent_cpu_s = s["extra"]["parent_cpu_percent"] / 100.0 * s["seconds"]
        entry = {
            "target_rows_per_s": target,
            "generators": generators,
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


def summarize(path: Path) -> dict[str, Any]:
    """Median rows/s and p99 of each level over the rounds in ``path``; auto vs the best."""
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    out: dict[str, Any] = {}
    for sink in sorted({line["sink"] for line in lines}):
        levels: dict[str, list[dict[str, Any]]] = {}
        for line in lines:
            if line["sink"] == sink:
                levels.setdefault(line["run"], []).append(line)
        med = {
            run: {
                "rows_per_s": statistics.median(r["rows_per_s"] for r in rs),
                "p99_ms": statistics.median(r["p99_ms"] for r in rs),
                "rounds": len(rs),
                "each_rows_per_s": [r["rows_per_s"] for r in rs],
            }
            for run, rs in levels.items()
        }
        auto = next(run for run in med if run.startswith("auto"))
        best = max((run for run in med if run != auto), key=lambda run: med[run]["rows_per_s"])
        out[sink] = {
            "levels": med,
            "best_fixed": best,
            "auto": auto,
            "auto_final_limits": [r["final_limit"] for r in levels[auto]],
            "auto_searched_until_s": [r.get("searched_until_s") for r in levels[auto]],
            "rows_ratio": round(med[auto]["rows_per_s"] / med[best]["rows_per_s"], 3),
            "p99_ratio": round(med[auto]["p99_ms"] / med[best]["p99_ms"], 3),
        }
        print(json.dumps({sink: out[sink]}, indent=1))
    return out


def main() -> None:
    global RUNS, ROUND
    p = argparse.ArgumentParser()
    p.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--only", default="standin,pg,rate")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--rounds", type=int, default=1, help="repeat standin and pg this many times")
    p.add_argument("--runs", type=Path, help="append each standin / pg run to this JSON-lines file")
    p.add_argument("--round", type=int, default=0, help="the first round's number (auto's place)")
    p.add_argument("--summarize", type=Path, help="only summarize a --runs file")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    if args.summarize:
        args.out.write_text(json.dumps(summarize(args.summarize), indent=2) + "\n")
        print(f"wrote {args.out}")
        return
    RUNS = args.runs
    only = set(args.only.split(","))
    results: dict[str, Any] = {"load_average_at_start": load(), "started": time.ctime()}
    for section in ("standin", "pg"):
        if section not in only:
            continue
        results[section] = []
        for n in range(args.rounds):
            ROUND = args.round + n
            if section == "standin":
                results[section].append(standin(args.seconds))
            else:
                results[section].append(pg(args.dsn, args.seconds))
    if "rate" in only:
        results["rate"] = rate(args.seconds)
    results["load_average_at_end"] = load()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
