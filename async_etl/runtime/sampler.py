"""Peaks of a bench process's threads and of its connections to the sink, for both runners."""

from __future__ import annotations

import threading
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import psutil

from async_etl.core.stats import Snapshot

__all__ = ["ProcessSampler", "SnapshotHandler"]

SnapshotHandler = Callable[[Snapshot], None]
"""What a runner calls with every interval's ``Snapshot``."""


class ProcessSampler:
    """Peaks of this process's thread count and of its open connections to the sink.

    ``sample()`` is cheap enough for once per report interval; both runners call it (the
    async one through ``wrap``), so ``threads`` and ``open_connections`` are measured the same
    way in both modes: ``threading.active_count()`` and ESTABLISHED TCP connections to the
    sink's port (for a PostgreSQL unix socket: the process's unix sockets).
    """

    def __init__(self, url: str | None) -> None:
        self._kind, self._port = _sink_socket(url)
        self._proc = psutil.Process()
        self.threads = 0
        self.os_threads = 0
        self.connections = 0

    def sample(self) -> None:
        """Take one sample and keep the peaks."""
        self.threads = max(self.threads, threading.active_count())
        try:
            self.os_threads = max(self.os_threads, self._proc.num_threads())
            if self._kind == "tcp":
                conns = self._proc.net_connections(kind="tcp")
                n = sum(
                    1
                    for c in conns
                    if c.raddr
                    and c.raddr.port == self._port
                    and c.status == psutil.CONN_ESTABLISHED
                )
            elif self._kind == "unix":
                n = len(self._proc.net_connections(kind="unix"))
            else:
                n = 0
        except psutil.Error:  # pragma: no cover - /proc unreadable
            return
        self.connections = max(self.connections, n)

    def wrap(self, handler: SnapshotHandler) -> SnapshotHandler:
        """``handler`` that also takes a sample on every snapshot."""

        def sampled(snapshot: Snapshot) -> None:
            self.sample()
            handler(snapshot)

        return sampled

    def extra(self) -> dict[str, int | None]:
        """The peaks, for ``Summary.extra``: ``threads``, ``os_threads``, ``open_connections``."""
        return {
            "threads": self.threads,
            "os_threads": self.os_threads,
            "open_connections": self.connections if self._kind else None,
        }


def _sink_socket(url: str | None) -> tuple[str | None, int]:
    """("tcp", port) of a sink URL, ("unix", 0) for a PostgreSQL socket directory, else None."""
    if not url:
        return None, 0
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None, 0
    scheme = parts.scheme.lower()
    if scheme in ("postgresql", "postgres"):
        host = parse_qs(parts.query).get("host", [parts.hostname or ""])[0]
        if not host or host.startswith("/"):
            return "unix", 0
        return "tcp", port or 5432
    if scheme in ("http", "https", "crate"):
        return "tcp", port or 4200
    return None, 0
