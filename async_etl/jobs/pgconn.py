"""PostgreSQL connections for mapper jobs: one budget token per open connection.

``pg_connection`` takes a budget token for the URL (``holder``), connects with an
``application_name`` that names the job and run (so operators, and tests, can find a job's
backends in ``pg_stat_activity``), yields the connection and closes it under a shielded cancel
scope.  Every asyncpg / socket failure inside the block is translated at this boundary into an
``async_etl.errors`` exception (``translate_pg``), chained to the original.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import asyncpg

from async_etl.core.urls import mask_url
from async_etl.errors import AsyncEtlError
from async_etl.sinks.pg_errors import PG_ERRORS, translate_pg

__all__ = ["APP_PREFIX", "connect", "pg_connection"]

APP_PREFIX = "async-etl"
"""Every job connection's ``application_name`` starts with this."""

CONNECT_TIMEOUT = 15.0


async def connect(url: str, app: str) -> Any:
    """Open one asyncpg connection (no budget); raises a translated ``AsyncEtlError``."""
    try:
        return await asyncpg.connect(
            url,
            timeout=CONNECT_TIMEOUT,
            server_settings={"application_name": f"{APP_PREFIX}:{app}"[:63]},
        )
    except PG_ERRORS as exc:
        raise translate_pg(exc, f"PostgreSQL {mask_url(url)}") from exc


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
    holder: Callable[[str], AbstractAsyncContextManager[None]],
    *,
    app: str,
    where: str = "",
) -> AsyncIterator[Any]:
    """A connection to ``url``, opened while ``holder(url)`` holds its budget token.

    Raises ``TransientLoadError`` (lost connection, server restarting, ...), ``DataError`` or
    ``LoadError`` for failures inside the block, each prefixed by ``where`` (default: the
    masked URL) and chained to the driver's exception.
    """
    label = where or f"PostgreSQL {mask_url(url)}"
    async with holder(url):
        conn = await connect(url, app)
        try:
            yield conn
        except AsyncEtlError:
            raise
        except PG_ERRORS as exc:
            raise translate_pg(exc, label) from exc
        finally:
            await close_quietly(conn)
