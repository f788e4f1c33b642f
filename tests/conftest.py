"""Shared fixtures: a real PostgreSQL (given, local, or embedded) and a fresh database per test."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from async_etl.testing.pg import embedded_postgres

LOCAL_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def _local_server_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def pg_server_dsn() -> Iterator[str]:
    """DSN of a server we may create databases on: $ASYNC_ETL_TEST_DSN, local :5432, or embedded."""
    given = os.environ.get("ASYNC_ETL_TEST_DSN")
    if given:
        yield given
    elif _local_server_up() and not os.environ.get("ASYNC_ETL_TEST_EMBEDDED"):
        yield LOCAL_DSN
    else:
        with embedded_postgres() as dsn:
            yield dsn


def _with_database(dsn: str, database: str) -> str:
    """Swap the database name in a postgresql:// DSN (keeping ?host=... query parts)."""
    head, _, query = dsn.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{database}" + (f"?{query}" if query else "")


@pytest.fixture
async def pg_dsn(pg_server_dsn: str) -> AsyncIterator[str]:
    """A DSN to a brand-new database, dropped after the test."""
    name = f"aetl_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_server_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield _with_database(pg_server_dsn, name)
    finally:
        admin = await asyncpg.connect(pg_server_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
