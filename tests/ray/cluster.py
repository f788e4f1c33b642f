"""A real Ray cluster on this machine, for tests and benchmarks: a head and worker processes.

Each node is a ``ray start --block`` process in its own session, with its own free ports and a
temp dir under /tmp; teardown signals those process groups only (never ``ray stop``, which
would stop every Ray on the machine).  The workers start one at a time, each once the one
before has registered with the head: started all at once on a small busy machine, their
raylets and agents (a dozen Python processes importing Ray) competed for the CPU and a raylet
timed out starting, so a cluster of 4 nodes never came up whole.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
STORE_BYTES = str(80 * 1024 * 1024)
NO_AUTH = {"RAY_AUTH_MODE": "disabled"}  # a throw-away cluster on loopback: no token to share


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ports() -> list[str]:
    flags = (
        "--node-manager-port",
        "--object-manager-port",
        "--metrics-export-port",
        "--dashboard-agent-listen-port",
        "--dashboard-agent-grpc-port",
        "--runtime-env-agent-port",
    )
    out: list[str] = []
    for flag in flags:
        out += [flag, str(_free_port())]
    return out


def _wait_listening(
    port: int, proc: subprocess.Popen[bytes], log: Path, seconds: float = 60.0
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"ray start exited early: {log.read_text()[-3000:]}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"Ray head not listening on {port}")


def alive_nodes(address: str) -> int:
    """How many nodes the cluster's GCS at ``address`` holds alive (no driver is started)."""
    import ray._raylet
    from ray.core.generated.gcs_pb2 import GcsNodeInfo

    infos = ray._raylet.GcsClient(address=address).get_all_node_info(timeout=5)
    return sum(1 for info in infos.values() if info.state == GcsNodeInfo.ALIVE)


def _wait_registered(
    address: str, nodes: int, proc: subprocess.Popen[bytes], log: Path, seconds: float = 120.0
) -> None:
    """Wait until ``nodes`` nodes are alive (the one ``proc`` starts included)."""
    deadline = time.monotonic() + seconds
    while alive_nodes(address) < nodes:
        assert proc.poll() is None, f"ray start exited early: {log.read_text()[-3000:]}"
        if time.monotonic() > deadline:
            raise TimeoutError(f"Ray node {nodes - 1} did not register: {log.read_text()[-3000:]}")
        time.sleep(0.2)


@contextmanager
def two_node_cluster(repo_root: str) -> Iterator[str]:
    """Start a head and a worker node (1 CPU each); yields the GCS address ``127.0.0.1:PORT``."""
    with local_cluster(repo_root, nodes=2) as address:
        yield address


@contextmanager
def local_cluster(
    repo_root: str,
    nodes: int,
    wrap: Callable[[int], list[str]] | None = None,
    head_cpus: int = 1,
) -> Iterator[str]:
    """Start a head and ``nodes - 1`` worker nodes (1 CPU each); yields the GCS address once
    every node has registered.

    ``wrap(i)`` is a command prefix for node ``i`` (0: the head), e.g. one that moves the node
    into a CPU-limited cgroup before it starts; every process of the node inherits it.
    ``head_cpus`` 0 keeps actors off the head (they each ask for a share of a CPU).
    """
    temp = tempfile.mkdtemp(prefix="aetl-ray-", dir="/tmp")
    env = {**os.environ, "PYTHONPATH": repo_root, "RAY_USAGE_STATS_ENABLED": "0", **NO_AUTH}
    port = _free_port()
    common = ["--block", "--object-store-memory", STORE_BYTES]
    head = [RAY, "start", "--head", "--port", str(port), "--include-dashboard", "false"]
    head += [
        "--temp-dir",
        temp,
        "--disable-usage-stats",
    ]
    prefix = wrap or (lambda _: [])
    procs: list[subprocess.Popen[bytes]] = []
    try:
        head += ["--num-cpus", str(head_cpus), *common]
        procs.append(_spawn([*prefix(0), *head, *_ports()], env, temp, "head"))
        address = f"127.0.0.1:{port}"
        _wait_listening(port, procs[0], Path(temp) / "head.out")
        _wait_registered(address, 1, procs[0], Path(temp) / "head.out")
        for i in range(1, nodes):
            worker = [RAY, "start", "--address", address, "--num-cpus", "1", *common]
            worker += _ports()
            procs.append(_spawn([*prefix(i), *worker], env, temp, f"worker{i}"))
            _wait_registered(address, i + 1, procs[i], Path(temp) / f"worker{i}.out")
        yield address
    finally:
        _stop_groups(procs)
        shutil.rmtree(temp, ignore_errors=True)


def _spawn(cmd: list[str], env: dict[str, str], temp: str, name: str) -> subprocess.Popen[bytes]:
    log = (Path(temp) / f"{name}.out").open("wb")
    return subprocess.Popen(
        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def _stop_groups(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every node's own process group at once, then SIGKILL what is left of them."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
        deadline = time.monotonic() + wait
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        if all(proc.poll() is not None for proc in procs):
            time.sleep(0.5)
            break
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # children the raylets left behind
