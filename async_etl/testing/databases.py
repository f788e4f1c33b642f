"""Fresh PostgreSQL databases for tests: created on a server, dropped (forcibly) after."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg


def with_database(dsn: str, database: str) -> str:
    """Swap the database name in a postgresql:// DSN (keeping ?host=... query parts)."""
    head, _, query = dsn.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{database}" + (f"?{query}" if query else "")


@asynccontextmanager
async def fresh_database(server_dsn: str, options: str = "") -> AsyncIterator[str]:
    """A DSN to a brand-new database (``options`` for CREATE DATABASE), dropped after.

    Raises ``asyncpg.PostgresError`` when the server cannot create it (e.g. no ICU).
    """
    name = f"aetl_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" {options}')
    finally:
        await admin.close()
    try:
        yield with_database(server_dsn, name)
    finally:
        admin = await asyncpg.connect(server_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
