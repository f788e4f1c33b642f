"""Translate asyncpg / OS exceptions into async_etl errors at the adapter boundary."""

from __future__ import annotations

import asyncio

import asyncpg

from async_etl.core.classify import classify_sqlstate, load_error
from async_etl.errors import (
    AsyncEtlError,
    ConfigError,
    LoadError,
    network,
)

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
        return load_error(classify_sqlstate(code), text)
    if isinstance(exc, asyncpg.exceptions.ClientConfigurationError):  # e.g. sslmode=bogus
        return ConfigError(f"{where}: {exc}")
    if isinstance(exc, _CONNECTION_ERRORS):
        return network(f"{where}: connection problem: {type(exc).__name__}: {exc}")
    return LoadError(f"{where}: {type(exc).__name__}: {exc}")
