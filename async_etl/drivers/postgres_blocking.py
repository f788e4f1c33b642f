"""PostgreSQL through psycopg 3, for the thread runner: connecting and translating its errors.

The blocking twin of ``drivers.postgres`` (asyncpg), sharing its decisions: SQLSTATE classes
through ``core.classify``, a broken connection as a transient network error.  psycopg is the
optional ``threads`` extra (``pip install 'async-etl[threads]'``), so only the thread runner's
sink imports this module.

- ``connect_blocking`` / ``translate_psycopg``: one autocommit connection; the async_etl error
  for a psycopg (or socket) failure;
- ``BlockingPool``: at most ``size`` connections shared by the runner's threads (a
  ``BoundedSemaphore`` in front of a LIFO of idle ones; a broken one is closed, not reused).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeAlias

import psycopg

from async_etl.core.classify import pg_kind
from async_etl.drivers.postgres import classified, connection_problem
from async_etl.errors import AsyncEtlError, LoadError

__all__ = [
    "PSYCOPG_ERRORS",
    "BlockingConnection",
    "BlockingCursor",
    "BlockingPool",
    "connect_blocking",
    "translate_psycopg",
]

_BROKEN = (psycopg.OperationalError, psycopg.InterfaceError, OSError)

PSYCOPG_ERRORS: tuple[type[BaseException], ...] = (psycopg.Error, OSError)
"""Everything a blocking PostgreSQL adapter should catch and pass through ``translate_psycopg``."""

BlockingConnection: TypeAlias = "psycopg.Connection[Any]"
BlockingCursor: TypeAlias = "psycopg.Cursor[Any]"


def translate_psycopg(exc: BaseException, where: str) -> AsyncEtlError:
    """The async_etl error for a psycopg (or socket) failure at ``where``; chain it yourself."""
    code = str(getattr(exc, "sqlstate", "") or "")
    if isinstance(exc, psycopg.Error) and code:
        text = f"{where}: {type(exc).__name__}: {exc} (SQLSTATE {code})"
        fatal = getattr(exc.diag, "severity_nonlocalized", None) == "FATAL"
        return classified(pg_kind(code, fatal=fatal), text)
    if isinstance(exc, _BROKEN):  # libpq reports a refusal at connect time as "FATAL: ..."
        return connection_problem(exc, where)
    return LoadError(f"{where}: {type(exc).__name__}: {exc}")


def connect_blocking(dsn: str) -> BlockingConnection:
    """One autocommit psycopg connection taking ``$n`` placeholders (``RawCursor``), 30 s at most.

    Raises the driver's exception (pass it through ``translate_psycopg``).
    """
    return psycopg.connect(
        dsn, autocommit=True, cursor_factory=psycopg.RawCursor, connect_timeout=30
    )


_IDLE = psycopg.pq.TransactionStatus.IDLE


class BlockingPool:
    """At most ``size`` psycopg connections, opened on demand and shared between threads."""

    def __init__(self, dsn: str, size: int) -> None:
        self._dsn = dsn
        self._slots = threading.BoundedSemaphore(size)
        self._idle: queue.LifoQueue[BlockingConnection] = queue.LifoQueue()

    def _take(self) -> BlockingConnection:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        return connect_blocking(self._dsn)

    def _drop(self, conn: BlockingConnection) -> None:
        conn.close()

    @contextmanager
    def connection(self) -> Iterator[BlockingConnection]:
        """Borrow a connection (waiting for a free slot); a broken one is closed, not returned."""
        with self._slots:
            conn = self._take()
            try:
                yield conn
            except BaseException:
                if conn.broken or conn.closed or conn.info.transaction_status != _IDLE:
                    self._drop(conn)
                else:
                    self._idle.put(conn)
                raise
            self._idle.put(conn)

    def close(self) -> None:
        """Close every idle connection (callers have returned theirs)."""
        while True:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                return
            self._drop(conn)
