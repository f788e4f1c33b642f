"""Aggregate scaling of ``bench --ray`` on a simulated cluster: N nodes, each CPU-limited.

Each node is a real ``ray start`` worker process moved, before it starts, into its own cgroup
(v1 ``cpu`` + ``cpuacct``) with a CFS quota of ``--quota`` CPUs, so the node and everything it
starts (its raylet, the actor's worker process) can use at most that much CPU: a small
stand-in for one machine of a cluster.  The head node has no CPUs (so no actor) and no limit,
like a cluster's head; actors are spread one per worker node (Ray's SPREAD strategy; which
node each actor ran on is read from its process's cgroup and printed).  The sink (one counting
CrateDB stand-in process) and the driver run outside the cgroups, unlimited, as they would on
their own machines.

For N = 1 .. ``--max-nodes`` (or 1 and the counts ``--nodes`` lists): start the cluster (the
worker nodes one at a time, each once the one before has registered; the quota is applied
once all have), run ``async-etl bench --ray ADDRESS --ray-actors N --generators 0``
(generation inline in the actor, on its node's CPU) with ``N * --records-per-node`` records,
read the summary (exact count required), each node's CPU seconds (``cpuacct.usage``), the
stand-in's and the driver's CPU seconds and the whole machine's busy fraction, stop the
cluster.  ``sink busy`` is the stand-in's CPU seconds per second of the run: near 1.0 it is
the limit (one process, one core); ``sink peak`` and ``machine peak`` are the busiest
1-second interval of the stand-in (in cores) and of the whole machine (1.0: every core busy).
Also in the same run: the local engine with 2 generator processes into the same kind of
sink, unlimited, as the machine's ceiling.

Needs root and a writable cgroup v1 ``cpu`` hierarchy (``/sys/fs/cgroup/cpu``).  Usage:

    python benchmarks/ray_scaling.py [--max-nodes 4 | --nodes 6,8] [--quota 0.2]
        [--records-per-node 150000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = str(Path(__file__).resolve().parents[1])
sys.path.insert(0, REPO)

from tests.ray.cluster import NO_AUTH, alive_nodes, local_cluster  # noqa: E402

CGROUP = Path("/sys/fs/cgroup")
PERIOD_US = 100_000


def standin() -> tuple[subprocess.Popen[str], str]:
    """A counting stand-in process; (process, URL)."""
    cmd = [sys.executable, "-m", "async_etl.testing.crate", "--port", "0", "--count-only"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().rsplit(" ", 1)[1].strip()


def bench(url: str, records: int, flags: list[str]) -> dict[str, object]:
    """One ``async-etl bench`` run into ``url``; its JSON summary, plus ``driver_cpu_s``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "s.json"
        cmd = [sys.executable, "-m", "async_etl", "bench", "--sink", url]
        cmd += ["--records", str(records), "--batch-size", "5000", "--concurrency", "8"]
        cmd += ["--log-format", "json", "--json-out", str(out), *flags]
        env = {**os.environ, "PYTHONPATH": REPO, "RAY_USAGE_STATS_ENABLED": "0", **NO_AUTH}
        before = os.times()
        done = subprocess.run(cmd, capture_output=True, env=env, text=True, timeout=900)
        after = os.times()
        if done.returncode != 0:
            raise SystemExit(f"bench failed ({done.returncode}): {done.stderr[-1500:]}")
        summary: dict[str, object] = json.loads(out.read_text())
    used = after.children_user + after.children_system
    summary["driver_cpu_s"] = round(used - before.children_user - before.children_system, 2)
    return summary


def cpu_s(proc: subprocess.Popen[str]) -> float:
    """CPU seconds used so far by the process ``proc`` (the stand-in)."""
    times = psutil.Process(proc.pid).cpu_times()
    return float(times.user + times.system)


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, every core summed."""
    times = psutil.cpu_times()
    total = float(sum(times))
    return total - times.idle - getattr(times, "iowait", 0.0), total


class Nodes:
    """One cpu + cpuacct cgroup per simulated node, with a CFS quota of ``quota`` CPUs."""

    def __init__(self, n: int, quota: float) -> None:
        self.names = [f"aetl_ray_scaling_{os.getpid()}_{n}_{i}" for i in range(n)]
        self.quota = quota
        for name in self.names:
            for kind in ("cpu", "cpuacct"):
                (CGROUP / kind / name).mkdir()
            (CGROUP / "cpu" / name / "cpu.cfs_period_us").write_text(str(PERIOD_US))

    def limit(self) -> None:
        """Apply the quota (after the nodes started: a raylet starting under 0.2 CPU next to
        another one timed out and aborted)."""
        for name in self.names:
            quota = str(int(self.quota * PERIOD_US))
            (CGROUP / "cpu" / name / "cpu.cfs_quota_us").write_text(quota)

    def wrap(self, i: int) -> list[str]:
        """A command prefix that moves the node's first process into its cgroups, then execs."""
        cpu, acct = (CGROUP / k / self.names[i] / "cgroup.procs" for k in ("cpu", "cpuacct"))
        script = f'echo $$ > {cpu} && echo $$ > {acct} && exec "$@"'
        return ["sh", "-c", script, "sh"]

    def wrap_worker(self, i: int) -> list[str]:
        """``wrap`` for a cluster whose node 0 is a head without CPUs (no actor, no limit)."""
        return [] if i == 0 else self.wrap(i - 1)

    def cpu_s(self) -> list[float]:
        """CPU seconds used so far by each node."""
        usage = (CGROUP / "cpuacct" / name / "cpuacct.usage" for name in self.names)
        return [int(p.read_text()) / 1e9 for p in usage]

    def actors_by_node(self, seen: dict[int, str]) -> None:
        """Record which node's cgroup each ``ray::BenchActor`` process is in (pid -> node)."""
        for proc in psutil.process_iter(["pid", "cmdline"]):
            if " ".join(proc.info["cmdline"] or []).startswith("ray::BenchActor"):
                try:
                    lines = Path(f"/proc/{proc.info['pid']}/cgroup").read_text().splitlines()
                except OSError:
                    continue
                for line in lines:
                    _, kinds, path = line.split(":", 2)
                    if "cpu" in kinds.split(",") and path.strip("/") in self.names:
                        seen[proc.info["pid"]] = f"node{self.names.index(path.strip('/'))}"

    def remove(self) -> None:
        """Remove the cgroups (their processes are gone by now; retried briefly)."""
        for name in self.names:
            for kind in ("cpu", "cpuacct"):
                path = CGROUP / kind / name
                for _ in range(50):
                    try:
                        path.rmdir()
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.2)


def scaled(n: int, quota: float, records: int) -> dict[str, object]:
    """One run over ``n`` CPU-limited nodes: rows/s, per-actor rows/s, CPU s per node."""
    nodes = Nodes(n, quota)
    proc, url = standin()
    try:
        wrap = nodes.wrap_worker
        t_start = time.monotonic()
        with local_cluster(REPO, nodes=n + 1, wrap=wrap, head_cpus=0) as address:
            assert alive_nodes(address) == n + 1, "a node left the cluster"
            started_s = time.monotonic() - t_start
            nodes.limit()
            before = nodes.cpu_s()
            sink_before = cpu_s(proc)
            busy_before = machine_busy()
            t0 = time.monotonic()
            seen: dict[int, str] = {}
            peak = {"sink": 0.0, "machine": 0.0}  # the busiest 1-second interval of each
            done = threading.Event()

            def watch() -> None:
                last = (time.monotonic(), cpu_s(proc), *machine_busy())
                while not done.wait(1.0):
                    nodes.actors_by_node(seen)
                    now = (time.monotonic(), cpu_s(proc), *machine_busy())
                    sink = (now[1] - last[1]) / max(now[0] - last[0], 1e-9)
                    machine = (now[2] - last[2]) / max(now[3] - last[3], 1e-9)
                    peak["sink"], peak["machine"] = (
                        max(peak["sink"], sink),
                        max(peak["machine"], machine),
                    )
                    last = now

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            try:
                flags = ["--generators", "0", "--ray", address, "--ray-actors", str(n)]
                s = bench(url, records, flags)
            finally:
                done.set()
                watcher.join()
            wall = time.monotonic() - t0
            used = [b - a for a, b in zip(before, nodes.cpu_s(), strict=True)]
            sink_used = cpu_s(proc) - sink_before
            busy_after = machine_busy()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        nodes.remove()
    ray = s["extra"]["ray"]  # type: ignore[index]
    busy, total = (b - a for a, b in zip(busy_before, busy_after, strict=True))
    return {
        "nodes": n,
        "ok": s["ok"],
        "records": s["records"],
        "rows_per_s": s["rows_per_s"],
        "rows_per_s_by_actor": ray["rows_per_s_by_actor"],
        "node_cpu_s": [round(u, 2) for u in used],
        "actor_nodes": sorted(seen.values()),
        "process_wall_s": round(wall, 2),
        "sink_cpu_s": round(sink_used, 2),
        "sink_busy": round(sink_used / max(float(s["seconds"]), 1e-9), 2),  # type: ignore[arg-type]
        "driver_cpu_s": s["driver_cpu_s"],
        "machine_busy": round(busy / max(total, 1e-9), 2),
        "sink_peak": round(peak["sink"], 2),
        "machine_peak": round(peak["machine"], 2),
        "cluster_start_s": round(started_s, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--max-nodes", type=int, default=4)
    p.add_argument("--nodes", help="node counts to run after 1 node, e.g. 6,8 (not 2 .. max)")
    p.add_argument("--quota", type=float, default=0.2, help="CPUs per node (CFS quota)")
    p.add_argument("--records-per-node", type=int, default=150_000)
    args = p.parse_args()
    counts = list(range(1, args.max_nodes + 1))
    if args.nodes:
        try:
            counts = sorted({1, *(int(n) for n in args.nodes.split(","))})
        except ValueError:
            p.error(f"--nodes: expected counts like 6,8, got {args.nodes!r}")
        if counts[0] < 1:
            p.error("--nodes: every count must be >= 1")
    if not os.access(CGROUP / "cpu", os.W_OK):
        raise SystemExit(f"{CGROUP / 'cpu'} is not writable: run as root on a cgroup v1 host")
    print(f"load average at start: {os.getloadavg()}", flush=True)
    proc, url = standin()
    try:
        ceiling = bench(url, args.records_per_node * counts[-1], ["--generators", "2"])
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(f"ceiling: local engine, 2 generator processes, unlimited: "
          f"{ceiling['rows_per_s']:,.0f} rows/s (ok={ceiling['ok']})", flush=True)  # fmt: skip
    runs = []
    for n in counts:
        run = scaled(n, args.quota, args.records_per_node * n)
        runs.append(run)
        print(json.dumps(run), flush=True)
    base = float(runs[0]["rows_per_s"])  # type: ignore[arg-type]
    print(f"\n{'nodes':>5} {'rows/s':>10} {'linear':>10} {'x of 1 node':>11} {'of linear':>9} "
          f"{'sink busy':>9} {'sink peak':>9} {'machine peak':>12}  node CPU s")  # fmt: skip
    for run in runs:
        rate = float(run["rows_per_s"])  # type: ignore[arg-type]
        n = int(run["nodes"])  # type: ignore[call-overload]
        print(f"{n:>5} {rate:>10,.0f} {base * n:>10,.0f} {rate / base:>11.2f} "
              f"{rate / (base * n):>9.2f} {run['sink_busy']:>9} {run['sink_peak']:>9} "
              f"{run['machine_peak']:>12}  "
              f"{run['node_cpu_s']}")  # fmt: skip
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
