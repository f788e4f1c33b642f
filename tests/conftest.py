"""Shared fixtures: a real PostgreSQL (given, local, or embedded) and a fresh database per test."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Iterator

import pytest

from async_etl.testing.pg import embedded_postgres
from tests.databases import fresh_database

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


@pytest.fixture
async def pg_dsn(pg_server_dsn: str) -> AsyncIterator[str]:
    """A DSN to a brand-new database, dropped after the test."""
    async with fresh_database(pg_server_dsn) as dsn:
        yield dsn
