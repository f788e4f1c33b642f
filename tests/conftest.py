"""Shared fixtures come from the package's pytest plugin (``async_etl.testing.pytest_plugin``).

It is loaded by ``-p`` in ``pyproject.toml`` (and by its ``pytest11`` entry point when the
package is installed): ``pg_server_dsn``, ``pg_dsn`` and ``crate_standin``.  Here only what the
project's own suite needs on top, and ``pg_dsn`` from a pool of reset databases
(``tests/database_pool.py``: a database as empty as a new one, at a fraction of the cost).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
import structlog

from async_etl.log import install_library_default
from tests.database_pool import DatabasePool


@pytest.fixture(autouse=True)
def _library_logging() -> Iterator[None]:
    """A test that ran the CLI in-process configured logging: give the next test the default."""
    yield
    structlog.reset_defaults()
    install_library_default()


@pytest.fixture(scope="session")
def _database_pool(pg_server_dsn: str) -> Iterator[DatabasePool]:
    """The session's databases for ``pg_dsn``, all dropped at its end."""
    pool = DatabasePool(pg_server_dsn)
    yield pool
    asyncio.run(pool.close())


@pytest_asyncio.fixture
async def pg_dsn(_database_pool: DatabasePool) -> AsyncIterator[str]:
    """A DSN to a database with nothing in it but what a new one has; reset (or dropped) after."""
    dsn = await _database_pool.take()
    try:
        yield dsn
    finally:
        await _database_pool.give_back(dsn)
