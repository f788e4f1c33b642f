"""Connection budgets: one ``anyio.CapacityLimiter`` per database, shared by every job.

``LimiterBudget`` is the default ``ConnectionBudget`` (see ``async_etl.jobs.api``).  URLs that
name the same database (same dialect, host, port and database / service, whatever the user,
password, scheme alias or query string) share one limiter, so two jobs reading the same
PostgreSQL through ``postgres://`` and ``postgresql://`` count against one limit.

``database_key`` is pure string work; ``hold`` is the one way drivers take a token: it
borrows on behalf of a fresh object, so one task may hold tokens of several limiters (or of
one limiter twice, e.g. a source and a target connection to the same database).
"""

from __future__ import annotations

import math
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from urllib.parse import parse_qs, urlsplit

import anyio

from async_etl.core.urls import dialect_of
from async_etl.errors import StopRequested

__all__ = ["LimiterBudget", "database_key", "hold", "token_limit"]


def database_key(url: str) -> str:
    """``dialect://host:port/database`` of ``url``: the identity of a database for budgets.

    Credentials, scheme aliases and the rest of the query string are dropped; host and
    database names are lower-cased.  A PostgreSQL URL's ``host``, ``port`` and ``dbname`` /
    ``database`` query parameters count where the URL itself leaves them out, as libpq and
    asyncpg read them (``postgresql:///db?host=/run/pg2`` is another server than
    ``postgresql:///db``).  Never raises: a URL that does not parse is its own key.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return url
    dialect = dialect_of(url) or parts.scheme.lower()
    default = {"postgresql": 5432, "oracle": 1521, "cratedb": 4200}.get(dialect, 0)
    host = (parts.hostname or "localhost").lower()
    database = parts.path.strip("/").lower() if dialect != "cratedb" else ""
    if dialect == "postgresql" and parts.query:
        query = parse_qs(parts.query)
        given = {k: v[0] for k, v in query.items() if v and v[0]}
        if parts.hostname is None and "host" in given:
            host = given["host"]  # a socket directory is a path: its case is kept
        if port is None and given.get("port", "").isdigit():
            port = int(given["port"])
        if not database:
            database = (given.get("dbname") or given.get("database") or "").lower()
    return f"{dialect}://{host}:{port or default}/{database}"


def token_limit(limiter: anyio.CapacityLimiter) -> int:
    """``limiter``'s limit as a whole number of connections: ``sys.maxsize`` for ``math.inf``.

    anyio takes ``math.inf`` as "no limit", and a host may lift a budget so at run time; the
    arithmetic on limits (minimums, shares, the shelf's size) is done in ints.  Raises nothing.
    """
    total = limiter.total_tokens
    return sys.maxsize if math.isinf(total) else int(total)


class LimiterBudget:
    """A ``ConnectionBudget``: ``default`` connections per database unless ``per_url`` says.

    ``per_url`` maps a URL (any spelling of it, see ``database_key``) to its own limit.  The
    limiters are created on first use and live as long as the budget; change a limit at
    runtime through ``limiter(url).total_tokens``.  Raises ``ValueError`` for a limit < 1.
    """

    def __init__(self, default: int, per_url: Mapping[str, int] | None = None) -> None:
        limits = {database_key(u): n for u, n in (per_url or {}).items()}
        for n in (default, *limits.values()):
            if n < 1:
                raise ValueError(f"a connection limit must be at least 1, got {n}")
        self.default = default
        self._limits = limits
        self._limiters: dict[str, anyio.CapacityLimiter] = {}

    def limiter(self, url: str) -> anyio.CapacityLimiter:
        """The limiter for the database at ``url`` (same database, same limiter)."""
        key = database_key(url)
        found = self._limiters.get(key)
        if found is None:
            found = anyio.CapacityLimiter(self._limits.get(key, self.default))
            self._limiters[key] = found
        return found

    def __repr__(self) -> str:
        """Show the limits, never a password (keys carry none)."""
        return f"LimiterBudget(default={self.default}, per_url={self._limits!r})"


@asynccontextmanager
async def hold(
    limiter: anyio.CapacityLimiter, stop: anyio.Event | None = None
) -> AsyncIterator[None]:
    """Hold one token of ``limiter`` for the duration of the block (one connection's worth).

    Raises ``StopRequested`` when ``stop`` is set while still waiting for the token, so a job
    waiting for budget answers a stop request instead of waiting on.
    """
    borrower = object()
    if stop is None:
        await limiter.acquire_on_behalf_of(borrower)
    else:
        await _acquire_unless(limiter, borrower, stop)
    try:
        yield
    finally:
        limiter.release_on_behalf_of(borrower)


async def _acquire_unless(
    limiter: anyio.CapacityLimiter, borrower: object, stop: anyio.Event
) -> None:
    acquired = False

    async def take() -> None:
        nonlocal acquired
        await limiter.acquire_on_behalf_of(borrower)
        acquired = True
        tg.cancel_scope.cancel()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(take)
            await stop.wait()
            tg.cancel_scope.cancel()
    except BaseException:  # cancelled from outside after ``take`` got the token: give it back
        if acquired:
            limiter.release_on_behalf_of(borrower)
        raise
    if not acquired:
        raise StopRequested("stop requested while waiting for a connection budget token")
