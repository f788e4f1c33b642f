"""A real Ray cluster on this machine, for tests and benchmarks: a head and worker processes.

Each node is a ``ray start --block`` process in its own session, with its own free ports and a
temp dir under /tmp; teardown signals those process groups only (never ``ray stop``, which
would stop every Ray on the machine).
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
    settle: float = 3.0,
    head_cpus: int = 1,
) -> Iterator[str]:
    """Start a head and ``nodes - 1`` worker nodes (1 CPU each); yields the GCS address.

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
        _wait_listening(port, procs[0], Path(temp) / "head.out")
        for i in range(1, nodes):
            worker = [RAY, "start", "--address", f"127.0.0.1:{port}", "--num-cpus", "1", *common]
            worker += _ports()
            procs.append(_spawn([*prefix(i), *worker], env, temp, f"worker{i}"))
        time.sleep(settle)  # the workers register with the head
        yield f"127.0.0.1:{port}"
    finally:
        for proc in reversed(procs):
            _stop_group(proc)
        shutil.rmtree(temp, ignore_errors=True)


def _spawn(cmd: list[str], env: dict[str, str], temp: str, name: str) -> subprocess.Popen[bytes]:
    log = (Path(temp) / f"{name}.out").open("wb")
    return subprocess.Popen(
        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the node's own process group, then SIGKILL what is left of it."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            time.sleep(0.5)
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # children the raylet left behind
