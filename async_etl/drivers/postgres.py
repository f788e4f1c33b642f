"""PostgreSQL: connecting (asyncpg; psycopg for the thread runner) and translating its errors.

Every asyncpg / psycopg / socket failure is translated here into an ``async_etl.errors``
exception and chained to the original by the caller (``raise translate_pg(exc, where) from
exc``): SQLSTATE classes through ``core.classify``, a broken connection as a transient network
error, a bad client setting as a ``ConfigError``.

- ``connect`` opens one asyncpg connection with an ``application_name`` (so operators, and
  tests, can find a job's or the orchestrator's backends in ``pg_stat_activity``);
- ``pg_connection`` takes a budget token for the URL (``holder``), connects, yields the
  connection, translates what fails inside the block and closes it under a shielded cancel
  scope (``close_quietly``);
- ``pooled`` borrows a connection of an asyncpg pool and terminates it, rather than reusing it,
  when an operation on it broke;
- ``connect_blocking`` / ``translate_psycopg``: the same for psycopg 3, used by the thread
  runner's sink.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import anyio
import asyncpg
import psycopg

from async_etl.core.classify import fatal_sqlstate, load_error, pg_kind
from async_etl.core.urls import mask_url
from async_etl.errors import (
    AsyncEtlError,
    ConfigError,
    ErrorKind,
    LoadError,
    network,
)
from async_etl.typing import Holder

__all__ = [
    "APP_PREFIX",
    "CONNECT_TIMEOUT",
    "PG_ERRORS",
    "close_quietly",
    "connect",
    "connect_blocking",
    "connect_job",
    "open_pool",
    "pg_connection",
    "pooled",
    "translate_pg",
    "translate_psycopg",
]

APP_PREFIX = "async-etl"
"""Every job connection's ``application_name`` starts with this."""

CONNECT_TIMEOUT = 15.0
"""Seconds a job connection may take to open."""

_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.InternalClientError,  # e.g. releasing a connection broken mid-COPY
)

PG_ERRORS: tuple[type[BaseException], ...] = (asyncpg.PostgresError, *_CONNECTION_ERRORS)
"""Everything a PostgreSQL adapter should catch and pass through ``translate_pg``."""


def translate_pg(exc: BaseException, where: str) -> AsyncEtlError:
    """The async_etl error for an asyncpg (or socket) failure at ``where``; chain it yourself."""
    if isinstance(exc, asyncpg.PostgresError):
        code = str(getattr(exc, "sqlstate", "") or "")
        text = f"{where}: {type(exc).__name__}: {exc} (SQLSTATE {code})"
        severity = getattr(exc, "severity_en", None) or getattr(exc, "severity", None)
        return _classified(pg_kind(code, fatal=severity == "FATAL"), text)
    if isinstance(exc, asyncpg.exceptions.ClientConfigurationError):  # e.g. sslmode=bogus
        return ConfigError(f"{where}: {exc}")
    if isinstance(exc, _CONNECTION_ERRORS):
        return _connection_problem(exc, where)
    return LoadError(f"{where}: {type(exc).__name__}: {exc}")


def _connection_problem(exc: BaseException, where: str) -> AsyncEtlError:
    """A broken or refused connection (either driver), translated one way.

    A server's ``FATAL`` is classified by the SQLSTATE it stands for
    (``core.classify.fatal_sqlstate``, as asyncpg's coded errors are, ``pg_kind``); anything
    else is a network failure.
    """
    text = " ".join(str(exc).split())
    code = fatal_sqlstate(text)
    if code is not None:
        return _classified(pg_kind(code, fatal=True), f"{where}: {text}")
    return network(f"{where}: connection problem: {type(exc).__name__}: {text}")


def _classified(kind: ErrorKind, text: str) -> AsyncEtlError:
    """``load_error`` for ``kind``, keeping ``NETWORK`` (a lost session) as its kind."""
    return network(text) if kind is ErrorKind.NETWORK else load_error(kind, text)


async def connect(url: str, *, application_name: str, timeout: float, where: str) -> Any:
    """Open one asyncpg connection (no budget); raises a translated ``AsyncEtlError``.

    ``application_name`` is cut to PostgreSQL's 63 characters; ``where`` prefixes the error.
    """
    try:
        return await asyncpg.connect(
            url, timeout=timeout, server_settings={"application_name": application_name[:63]}
        )
    except PG_ERRORS as exc:
        raise translate_pg(exc, where) from exc


async def connect_job(url: str, app: str) -> Any:
    """A job's connection (``application_name`` ``async-etl:<app>``); no budget, see ``connect``."""
    return await connect(
        url,
        application_name=f"{APP_PREFIX}:{app}",
        timeout=CONNECT_TIMEOUT,
        where=f"PostgreSQL {mask_url(url)}",
    )


async def open_pool(url: str, *, min_size: int, max_size: int, **options: Any) -> asyncpg.Pool:
    """An asyncpg pool (``options`` as ``asyncpg.create_pool`` takes them); untranslated errors."""
    return await asyncpg.create_pool(url, min_size=min_size, max_size=max_size, **options)


async def close_quietly(conn: Any) -> None:
    """Close ``conn`` (shielded, 5 s at most), terminating it when a clean close fails."""
    with anyio.CancelScope(shield=True):
        try:
            with anyio.fail_after(5):
                await conn.close()
        except Exception:
            conn.terminate()


@asynccontextmanager
async def pg_connection(
    url: str,
    holder: Holder,
    *,
    app: str,
    where: str = "",
) -> AsyncIterator[Any]:
    """A job's connection to ``url``, opened while ``holder(url)`` holds its budget token.

    Raises ``TransientLoadError`` (lost connection, server restarting, ...), ``DataError`` or
    ``LoadError`` for failures inside the block, each prefixed by ``where`` (default: the
    masked URL) and chained to the driver's exception.
    """
    label = where or f"PostgreSQL {mask_url(url)}"
    async with holder(url):
        conn = await connect_job(url, app)
        try:
            yield conn
        except AsyncEtlError:
            raise
        except PG_ERRORS as exc:
            raise translate_pg(exc, label) from exc
        finally:
            await close_quietly(conn)


@asynccontextmanager
async def pooled(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A pool connection that is terminated, not reused, when an operation on it broke."""
    conn = await pool.acquire()
    try:
        yield conn
    except BaseException as exc:
        if not isinstance(exc, asyncpg.PostgresError) or _broken(conn):
            with suppress(*PG_ERRORS):
                conn.terminate()
        raise
    finally:
        try:
            await pool.release(conn)
        except PG_ERRORS:  # a broken connection: the pool replaces it
            with suppress(*PG_ERRORS):
                conn.terminate()


def _broken(conn: asyncpg.Connection) -> bool:
    try:
        return bool(conn.is_closed())
    except asyncpg.InterfaceError:  # the pool already took it back
        return True


# psycopg 3 (the thread runner)

_BROKEN = (psycopg.OperationalError, psycopg.InterfaceError, OSError)


def translate_psycopg(exc: BaseException, where: str) -> AsyncEtlError:
    """The async_etl error for a psycopg (or socket) failure at ``where``; chain it yourself."""
    code = str(getattr(exc, "sqlstate", "") or "")
    if isinstance(exc, psycopg.Error) and code:
        text = f"{where}: {type(exc).__name__}: {exc} (SQLSTATE {code})"
        fatal = getattr(exc.diag, "severity_nonlocalized", None) == "FATAL"
        return _classified(pg_kind(code, fatal=fatal), text)
    if isinstance(exc, _BROKEN):  # libpq reports a refusal at connect time as "FATAL: ..."
        return _connection_problem(exc, where)
    return LoadError(f"{where}: {type(exc).__name__}: {exc}")


def connect_blocking(dsn: str) -> psycopg.Connection[Any]:
    """One autocommit psycopg connection taking ``$n`` placeholders (``RawCursor``), 30 s at most.

    Raises the driver's exception (pass it through ``translate_psycopg``).
    """
    return psycopg.connect(
        dsn, autocommit=True, cursor_factory=psycopg.RawCursor, connect_timeout=30
    )
