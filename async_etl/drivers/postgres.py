"""PostgreSQL: connecting with asyncpg and translating its errors.

Every asyncpg / psycopg / socket failure is translated here into an ``async_etl.errors``
exception and chained to the original by the caller (``raise translate_pg(exc, where) from
exc``): SQLSTATE classes through ``core.classify``, a broken connection as a transient network
error, a bad client setting as a ``ConfigError``.

- ``connect`` opens one asyncpg connection with an ``application_name`` (so operators, and
  tests, can find a job's or the orchestrator's backends in ``pg_stat_activity``);
- the connections a job keeps open between uses (``pg_connection``, ``reusing``, ``Shelf`` /
  ``shelved``) are ``drivers.postgres_connections``;
- ``pooled`` borrows a connection of an asyncpg pool and terminates it, rather than reusing it,
  when an operation on it broke;
- ``is_data_error`` tells an error about a row's content (SQLSTATE classes 22 and 23) from the
  rest, and ``PostgresError`` / ``UniqueViolation`` name the driver's exceptions, so the job
  drivers catch them without importing asyncpg;
- ``close_quietly`` closes a connection gracefully (asyncpg waits for its backend to exit),
  except at the end of the ``async-etl`` process (``process_ends_after``, ``last_closes``);
- ``use_exact_codecs`` makes a connection read dates, timestamps, intervals and bit strings
  exactly (``core.pg_values``), for a target that stores Python values (CrateDB, Oracle);
- the psycopg 3 twin (the thread runner's sink) is ``drivers.postgres_blocking``: psycopg is
  the optional ``threads`` extra, so nothing here imports it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from contextvars import ContextVar
from typing import Any, TypeVar

import anyio
import asyncpg

from async_etl.core.pg_values import TEXT_SESSION_SQL, TEXT_TYPES, TUPLE_CODECS
from async_etl.core.urls import mask_url
from async_etl.errors import (
    AsyncEtlError,
    ConfigError,
    ErrorKind,
    LoadError,
    network,
)

_T = TypeVar("_T")

__all__ = [
    "APP_PREFIX",
    "CONNECT_TIMEOUT",
    "PG_ERRORS",
    "Connection",
    "Pool",
    "PostgresError",
    "UniqueViolation",
    "close_quietly",
    "connect",
    "connect_job",
    "is_data_error",
    "keep_session",
    "last_closes",
    "open_pool",
    "pooled",
    "process_ends_after",
    "translate_pg",
    "use_exact_codecs",
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

_FILE_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)
"""OSErrors of a local file (a certificate the URL names), not of the connection: asyncpg
raises ``ssl``'s bare ``FileNotFoundError: [Errno 2] No such file or directory`` for a missing
``sslrootcert`` (the shape of ClickHouse/clickhouse-connect#742, MagicStack/asyncpg#1014)."""
_URL_FILES = "sslrootcert, sslcert, sslkey, sslcrl, passfile"

UNDECODABLE_HINT = (
    "asyncpg cannot read a composite holding a field it reads only as text (an interval, a bit "
    "string, tsvector, an extension's type): cast the column in [source] query "
    "(col::text AS col)"
)
"""Why asyncpg's ``UnsupportedClientFeatureError`` (MagicStack/asyncpg#710, #779) is no
connection problem, and what to do: retrying cannot help, the same column fails every time."""

PG_ERRORS: tuple[type[BaseException], ...] = (asyncpg.PostgresError, *_CONNECTION_ERRORS)
"""Everything a PostgreSQL adapter should catch and pass through ``translate_pg``."""


PostgresError = asyncpg.PostgresError
"""Base of every error the server sends back through asyncpg (it has a ``sqlstate``)."""
UniqueViolation = asyncpg.UniqueViolationError
"""SQLSTATE 23505: a unique index refused a key."""
Pool = asyncpg.Pool
Connection = asyncpg.Connection


def is_data_error(exc: BaseException) -> bool:
    """True for a PostgreSQL error about a row's content (SQLSTATE classes 22 and 23)."""
    if not isinstance(exc, asyncpg.PostgresError):
        return False
    from async_etl.core.classify import classify_sqlstate  # here: only a failure needs it

    return classify_sqlstate(str(getattr(exc, "sqlstate", "") or "")) is ErrorKind.DATA


def translate_pg(exc: BaseException, where: str) -> AsyncEtlError:
    """The async_etl error for an asyncpg (or socket) failure at ``where``; chain it yourself."""
    if isinstance(exc, asyncpg.PostgresError):
        from async_etl.core.classify import pg_kind  # here: only a failure needs it

        code = str(getattr(exc, "sqlstate", "") or "")
        text = f"{where}: {type(exc).__name__}: {exc} (SQLSTATE {code})"
        severity = getattr(exc, "severity_en", None) or getattr(exc, "severity", None)
        return classified(pg_kind(code, fatal=severity == "FATAL"), text)
    if isinstance(exc, asyncpg.exceptions.ClientConfigurationError):  # e.g. sslmode=bogus
        return ConfigError(f"{where}: {exc}")
    if isinstance(exc, asyncpg.exceptions.UnsupportedClientFeatureError):  # not the connection
        hint = f"; {UNDECODABLE_HINT}" if "composite" in str(exc) else ""
        return LoadError(f"{where}: {exc}{hint}")
    if isinstance(exc, _CONNECTION_ERRORS):
        return connection_problem(exc, where)
    return LoadError(f"{where}: {type(exc).__name__}: {exc}")


def connection_problem(exc: BaseException, where: str) -> AsyncEtlError:
    """A broken or refused connection (either driver), translated one way.

    A server's ``FATAL`` is classified by the SQLSTATE it stands for
    (``core.classify.fatal_sqlstate``, as asyncpg's coded errors are, ``pg_kind``); a local
    file that cannot be read (a missing ``sslrootcert``) is a ``ConfigError``; anything else is
    a network failure.
    """
    from async_etl.core.classify import fatal_sqlstate, pg_kind, tls_refusal

    text = " ".join(str(exc).split())
    if isinstance(exc, _FILE_ERRORS):  # an OSError, but of a local file: retrying cannot help
        return ConfigError(f"{where}: cannot read a file the URL names ({_URL_FILES}): "
                           f"{type(exc).__name__}: {text}")  # fmt: skip
    if (cure := tls_refusal(text)) is not None:  # no retry cures it (core.classify)
        return ConfigError(f"{where}: {type(exc).__name__}: {text}; {cure}")
    code = fatal_sqlstate(text)
    if code is not None:
        return classified(pg_kind(code, fatal=True), f"{where}: {text}")
    return network(f"{where}: connection problem: {type(exc).__name__}: {text}")


def classified(kind: ErrorKind, text: str) -> AsyncEtlError:
    """``load_error`` for ``kind``, keeping ``NETWORK`` (a lost session) as its kind."""
    from async_etl.core.classify import load_error

    return network(text) if kind is ErrorKind.NETWORK else load_error(kind, text)


async def connect(url: str, *, application_name: str, timeout: float, where: str) -> Any:
    """Open one asyncpg connection (no budget); raises a translated ``AsyncEtlError``.

    ``application_name`` is cut to PostgreSQL's 63 characters; ``where`` prefixes the error.
    """
    try:
        return await _settled(
            asyncpg.connect(
                url, timeout=timeout, server_settings={"application_name": application_name[:63]}
            ),
            close_quietly,
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
    """An asyncpg pool (``options`` as ``asyncpg.create_pool`` takes them); untranslated errors.

    Cancelled while it connects, it is closed once its connections are made (see ``_settled``).
    """
    pool = asyncpg.create_pool(url, min_size=min_size, max_size=max_size, **options)
    return await _settled(pool, _close_pool)  # awaiting a Pool connects it


async def _close_pool(pool: asyncpg.Pool) -> None:
    """Close ``pool`` (``SETTLE_S`` at most), terminating it when a clean close fails."""
    try:
        with anyio.fail_after(SETTLE_S):
            await pool.close()
    except Exception:
        pool.terminate()


SETTLE_S = 5.0
"""How long a cancelled connect may still run to its end, so that it can be closed cleanly."""


async def _settled(opening: Awaitable[_T], close: Callable[[_T], Awaitable[None]]) -> _T:
    """Await ``opening`` (a connect); cancelled, let it finish (``SETTLE_S`` at most), close it.

    asyncpg cancelled in the loop turn between a socket's connect and its protocol's
    ``connection_made`` leaves a future holding ``ConnectionError('unexpected connection_lost()
    call')`` that nobody retrieves, and asyncio's logger prints "Future exception was never
    retrieved" in a host that configured no logging (asyncpg issues #1211, #1310).  So the
    connect is never cancelled halfway: it runs shielded to its end, its connection is closed
    (or its error dropped, the caller being cancelled anyway) and the cancel goes on.  Only a
    connect still running after ``SETTLE_S`` is cancelled.  Raises what ``opening`` raises.
    """
    task = asyncio.ensure_future(opening)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with anyio.CancelScope(shield=True):
            await asyncio.wait((task,), timeout=SETTLE_S)
            if task.done() and not task.cancelled() and task.exception() is None:
                with suppress(Exception):
                    await close(task.result())
        if not task.done():
            task.cancel()
        task.add_done_callback(_retrieve)
        raise


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Take a finished task's outcome, so asyncio has no unretrieved exception to report."""
    if not task.cancelled():
        task.exception()


async def keep_session(conn: Any) -> None:
    """A pool's ``reset=`` that sends nothing when a connection goes back to the pool.

    asyncpg's default sends ``SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET
    ALL`` at every release: a round trip each time.  For a pool whose connections never change
    their session (no ``SET``, ``LISTEN``, advisory lock or open cursor) it does nothing;
    asyncpg still rolls back a transaction left open before it calls this.  Raises nothing.
    """


_ENDING: ContextVar[str] = ContextVar("async_etl_pg_ending", default="")
"""``""``: every close waits for its backend; ``"armed"``: the process ends once this task's
run is over (``process_ends_after``); ``"now"``: it is over (``last_closes``)."""

UNLOCK_ALL = "SELECT pg_advisory_unlock_all()"
"""Release the session's advisory locks (a job's lock is one: ``jobs.state``)."""


def process_ends_after() -> None:
    """Say, for this task and those it starts, that the process ends after its run.

    The ``async-etl`` command's run calls it; ``last_closes`` then takes effect.  A library
    caller never does: its closes all wait for their backends (a budget counts connections
    until their backends are gone).
    """
    _ENDING.set("armed")


def last_closes() -> None:
    """From here on in this task, ``close_quietly`` ends a connection without waiting.

    Called once a run's end is recorded; a no-op unless ``process_ends_after`` was called.
    What is left then is closes and the process's exit: asyncpg's ``close`` sends Terminate
    and waits for the server to close the socket, that is for the backend to exit (2-6 ms a
    connection on a loaded 2-core machine, most of a 10-row job's last 10 ms), where the
    protocol's normal termination is that "the frontend sends a Terminate message and
    immediately closes the connection" (PostgreSQL manual, "Message Flow: Termination").
    """
    if _ENDING.get() == "armed":
        _ENDING.set("now")


async def close_quietly(conn: Any) -> None:
    """Close ``conn`` (shielded, 5 s at most), terminating it when a clean close fails.

    After ``last_closes``: its session's advisory locks are released (one statement, so the
    next process finds the job's lock free), then the socket is closed without waiting for
    the backend (``terminate``); the server ends an idle session at the end of its input
    ("unexpected EOF on client connection" at DEBUG1, PostgreSQL's ``SocketBackend``), as at
    a Terminate message.
    """
    with anyio.CancelScope(shield=True):
        try:
            with anyio.fail_after(5):
                if _ENDING.get() == "now":
                    await conn.execute(UNLOCK_ALL)
                    conn.terminate()
                    return
                await conn.close()
        except Exception:
            conn.terminate()


def is_lost_connection(exc: BaseException) -> bool:
    """True when ``exc`` is asyncpg's error for an operation on a connection that died."""
    return isinstance(exc, asyncpg.exceptions.ConnectionDoesNotExistError)


async def use_exact_codecs(conn: Any) -> None:
    """Decode ``interval`` / bit strings as text and dates / timestamps exactly on ``conn``.

    See ``core.pg_values``: no value is changed on the way in (a month stays a month,
    ``'infinity'`` is not 9999-12-31), and a BC date or a year past 9999 reads as a
    ``PgMoment`` instead of failing the whole read.  Bound values are exact too: ``date.max``
    is 9999-12-31, not asyncpg's ``infinity``.  Intervals read under ``IntervalStyle``
    ``postgres`` (``core.pg_values.TEXT_SESSION_SQL``, a session setting of ``conn``), so a role
    or database that sets another style does not change their text.  Untranslated driver errors.
    """
    await conn.execute(TEXT_SESSION_SQL)
    for name in TEXT_TYPES:
        await conn.set_type_codec(
            name, schema="pg_catalog", encoder=str, decoder=str, format="text"
        )
    for name, (encoder, decoder) in TUPLE_CODECS.items():
        await conn.set_type_codec(
            name, schema="pg_catalog", encoder=encoder, decoder=decoder, format="tuple"
        )


CANCEL_ACK_S = 5.0
"""How long a cancelled ``pooled`` operation waits for the server to answer asyncpg's cancel."""


@asynccontextmanager
async def pooled(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A pool connection that is terminated, not reused, when an operation on it broke.

    Cancelled mid-query, the connection goes back through asyncpg's release (shielded,
    ``CANCEL_ACK_S`` at most, then terminated), which waits for the server's answer to the
    CancelRequest asyncpg sent: cutting the socket at once would also cut that request, and a
    statement whose input was all sent (a COPY after its last row, a query waiting on a lock)
    would run on alone, to its commit.
    """
    conn = await pool.acquire()
    released = False
    try:
        yield conn
    except BaseException as exc:
        if isinstance(exc, asyncio.CancelledError) and not _broken(conn):
            await _release_cancelled(pool, conn)
            released = True
        elif not isinstance(exc, asyncpg.PostgresError) or _broken(conn):
            with suppress(*PG_ERRORS):
                conn.terminate()
        raise
    finally:
        if not released:
            try:
                await pool.release(conn)
            except PG_ERRORS:  # a broken connection: the pool replaces it
                with suppress(*PG_ERRORS):
                    conn.terminate()


async def _release_cancelled(pool: asyncpg.Pool, conn: asyncpg.Connection) -> None:
    """Release ``conn`` once the server has answered the cancel (see ``pooled``); else cut it."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(CANCEL_ACK_S), suppress(*PG_ERRORS):
        await pool.release(conn)
        return
    with suppress(*PG_ERRORS):
        conn.terminate()


def _broken(conn: asyncpg.Connection) -> bool:
    try:
        return bool(conn.is_closed())
    except asyncpg.InterfaceError:  # the pool already took it back
        return True
