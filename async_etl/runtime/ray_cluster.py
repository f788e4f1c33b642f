"""Connecting to Ray: the one place that imports it, and turns its failures into one line.

``--ray`` takes ``local`` (start a Ray instance inside this process, or use the one already
started), ``auto`` (the cluster this node belongs to, as ``ray start`` left it), ``HOST:PORT``
(a cluster's GCS address) or ``ray://HOST:PORT`` (Ray Client).  Ray is an optional extra:
nothing else in the package imports it, so ``import async_etl`` and every command without
``--ray`` run without it.
"""

from __future__ import annotations

import re
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from async_etl.errors import ConfigError

INSTALL_HINT = "pip install 'async-etl[ray]'"
ACTOR_OPTIONS: dict[str, Any] = {"num_cpus": 0.01, "scheduling_strategy": "SPREAD"}
"""How every actor is started: spread over the cluster's nodes (round robin), not packed onto
the first node that fits.  Ray places an actor that requires no resource at all at random and
ignores SPREAD for it, so each asks for a token 1 % of a CPU: a hundred actors fit one CPU."""
_HOST_PORT = re.compile(r"^(?:ray://)?(?P<host>\[[^\]]+\]|[^:/]+):(?P<port>\d{1,5})$")


def load_ray(flag: str = "--ray") -> ModuleType:
    """The ``ray`` module; ``ConfigError`` (exit 2) when Ray is not installed."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(f"{flag}: Ray is not installed ({INSTALL_HINT})") from exc
    return ray


def check_address(address: str, flag: str = "--ray", timeout: float = 3.0) -> None:
    """Refuse an address that is malformed or where nothing listens: ``ConfigError``, one line.

    ``local`` and ``auto`` are not checked here (Ray's own start-up or lookup decides).
    """
    if address in ("local", "auto"):
        return
    match = _HOST_PORT.match(address)
    if match is None:
        raise ConfigError(f"{flag} {address!r}: expected local, auto, HOST:PORT or ray://HOST:PORT")
    host, port = match["host"].strip("[]"), int(match["port"])
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"{flag} {address}: no Ray cluster reachable there ({reason})") from exc


def connect(address: str, flag: str = "--ray", **init: Any) -> ModuleType:
    """Join (or start, for ``local``) the Ray cluster at ``address``; returns the ``ray`` module.

    Reuses a Ray session this process already started.  ``init`` goes to ``ray.init`` (e.g.
    ``num_cpus``, ``object_store_memory`` for a local instance).  Raises ``ConfigError`` (exit
    2) for Ray missing, a malformed or unreachable address, or a cluster that refuses us.
    """
    ray = load_ray(flag)
    check_address(address, flag)
    if ray.is_initialized():
        return ray
    target = None if address == "local" else address
    _reports_to_stderr(ray)
    try:
        with _own_sigterm_kept(ray):
            ray.init(address=target, log_to_driver=False, include_dashboard=False, **init)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{flag} {address}: cannot join the Ray cluster: {first}") from exc
    return ray


@contextmanager
def _own_sigterm_kept(ray: ModuleType) -> Iterator[None]:
    """During ``ray.init``, keep a SIGTERM handler this process installed (the commands' own).

    ``ray.init`` replaces the SIGTERM handler twice (``sys.exit(15)`` while it connects, then
    one that kills a local instance's processes and exits 1), so a SIGTERM while Ray started
    ended ``orchestrate --ray`` with no word instead of stopping its plan.  Ray sets them through
    ``ray._private.utils.set_sigterm_handler``, made a no-op here while the process has a
    handler of its own; with the default one, Ray's are installed as before.
    """
    utils = getattr(getattr(ray, "_private", None), "utils", None)
    setter = getattr(utils, "set_sigterm_handler", None)
    own = threading.current_thread() is threading.main_thread() and callable(
        signal.getsignal(signal.SIGTERM)
    )
    if setter is None or not own:
        yield
        return
    utils.set_sigterm_handler = lambda handler: None  # type: ignore[union-attr]
    try:
        yield
    finally:
        utils.set_sigterm_handler = setter  # type: ignore[union-attr]


def _reports_to_stderr(ray: ModuleType) -> None:
    """Send what Ray's driver prints (a dead worker's report, ``(raylet) ...``) to stderr.

    Ray prints such reports to stdout from a thread of its own, which broke ``--json-out -``
    (JSON on stdout) when an actor died.  Ray offers no setting for it: its driver looks up
    ``ray._private.worker.print_to_stdstream`` at each report, so it is wrapped once here; a
    Ray without that function is left as it is.
    """
    worker = getattr(getattr(ray, "_private", None), "worker", None)
    printer = getattr(worker, "print_to_stdstream", None)
    if printer is None or getattr(printer, "async_etl_stderr", False):
        return

    def to_stderr(data: dict[str, Any], ignore_prefix: bool) -> None:
        printer({**data, "is_err": True}, ignore_prefix)

    to_stderr.async_etl_stderr = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = to_stderr  # type: ignore[union-attr]


def join_cluster(address: str | None, actors: int | None) -> tuple[str, int] | None:
    """``--ray ADDRESS`` / ``--ray-actors N`` checked, then the cluster joined now.

    Returns ``(address, actors)`` (2 actors unless given), or None without ``--ray``.  Raises
    ``ConfigError`` (exit 2, one line) for ``--ray-actors`` without ``--ray``, a count < 1, or
    a cluster ``connect`` cannot join.
    """
    if address is None:
        if actors is not None:
            raise ConfigError("--ray-actors needs --ray")
        return None
    actors = 2 if actors is None else actors
    if actors < 1:
        raise ConfigError(f"--ray-actors: must be >= 1, got {actors}")
    connect(address)
    return address, actors


def actor_died(exc: BaseException) -> bool:
    """True when ``exc`` is Ray's answer for an actor (or its node) that is gone."""
    ray = load_ray()
    gone = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError)
    return isinstance(exc, gone)


__all__ = ["ACTOR_OPTIONS", "actor_died", "check_address", "connect", "join_cluster", "load_ray"]
