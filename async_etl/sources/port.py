"""The port every mapper-job source adapter fills, and how a source's connection is opened.

``Source`` is what the job's planner and target drivers call: inspection, chunk cuts and chunk
reads, each on a connection they are handed.  ``source_connection`` opens that connection
through the database's module in ``async_etl.drivers`` under a budget token (``holder``), with
the driver's errors translated at that boundary.  The adapters are ``sources.postgres`` and
``sources.oracle``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any, NamedTuple, Protocol

from async_etl.core.chunks import Chunk, Cuts
from async_etl.core.collation import KeyCollation
from async_etl.core.run_identity import Place
from async_etl.core.scd_sql_common import Sql
from async_etl.core.urls import mask_url
from async_etl.drivers.postgres_connections import pg_connection
from async_etl.errors import AsyncEtlError, extract_error
from async_etl.typing import Holder

__all__ = ["Estimate", "Source", "source_connection"]


class Estimate(NamedTuple):
    """A source's row estimate, and the plan it was read from."""

    rows: int
    """Rows the source returns, about (-1: unknown; exact for a window with a lower bound)."""
    plan: Any
    """PostgreSQL's ``EXPLAIN (FORMAT JSON)`` of the source when the estimate read one (a
    query, a view, a table without statistics), for ``incremental.row_cap``; else None."""


class Source(Protocol):
    """A mapper job's source: inspection, planning and chunk reads on a given connection."""

    dialect: str
    url: str
    plan_read: Any
    """The ``EXPLAIN`` document ``query_plan`` read, for ``estimate`` to take (None: none)."""

    async def columns(self, conn: Any) -> list[tuple[str, str]]:
        """(name, PostgreSQL-compatible type) of each source column, in order."""
        ...

    async def estimate(self, conn: Any) -> Estimate:
        """A cheap row estimate (-1 when unknown), with the plan it read (``Estimate``)."""
        ...

    async def describe(self, conn: Any) -> tuple[list[tuple[str, str]], list[KeyCollation | None]]:
        """``columns``, and the collation of each key column (None: a type without one).

        Both in as few round trips as the driver can.
        """
        ...

    async def boundaries(
        self, conn: Any, n: int, collate: tuple[str | None, ...] = (), estimate: int = -1
    ) -> Cuts:
        """Cuts of ``n`` about equal chunks over the key, in the order of ``collate``.

        ``estimate``: the source's estimated rows (a large table may be cut by a sample, or
        at its key's statistics).  ``Cuts.source`` says which.
        """
        ...

    async def place(self, conn: Any) -> Place:
        """Where the source is as its database resolves it (``core.run_identity.Place``).

        PostgreSQL asks the server; Oracle knows no more than the URL (the table upper-cased).
        """
        ...

    async def null_keys(self, conn: Any) -> int:
        """Rows with a NULL key part."""
        ...

    async def null_key_rows(self, conn: Any, limit: int) -> list[dict[str, Any]]:
        """Keys of up to ``limit`` rows with a NULL key part."""
        ...

    async def query_plan(self, conn: Any) -> Any:
        """The database's plan of reading the whole source, for ``incremental.row_cap``.

        PostgreSQL's ``EXPLAIN (FORMAT JSON)``; None where no plan is read (Oracle).
        """
        ...

    async def holds(self, conn: Any, column: str, value: Any) -> bool:
        """Whether a row holds the cursor ``column`` at the date or time ``value`` itself.

        Asked of a committed cursor at 9999-12-31 that may have been ``infinity``
        (``incremental.unsure``).
        """
        ...

    async def max_cursor(self, conn: Any, column: str) -> tuple[Any, bool]:
        """The highest value of ``column`` in the whole source, and whether it is NaN / +inf.

        (None, False): no value.  ``incremental.is_endless`` decides the second.
        """
        ...

    def extract(self, chunk: Chunk) -> tuple[Sql, list[Any]]:
        """The statement that reads ``chunk`` (in key order) and its bound values."""
        ...

    def batches(self, conn: Any, chunk: Chunk, size: int) -> AsyncIterator[list[tuple[Any, ...]]]:
        """The chunk's rows in key order, ``size`` at a time."""
        ...


@asynccontextmanager
async def source_connection(source: Source, holder: Holder, app: str) -> AsyncIterator[Any]:
    """A connection to the source under a budget token (``holder``), errors translated.

    A failure to connect is an ``ExtractError`` (``TransientExtractError`` when worth
    retrying); so is a failed read, translated by the adapter (``SourceBase.reading``).  What
    else the block raises passes unchanged: a target's driver error, raised while the source
    connection is open, is translated and named by the target's own connection.
    """
    where = f"source {mask_url(source.url)}"
    opening: AbstractAsyncContextManager[Any]
    if source.dialect == "postgresql":
        opening = pg_connection(source.url, holder, app=app, where=where, translate_inside=False)
    else:  # the Oracle driver's module is imported for an Oracle source only
        from async_etl.drivers.oracle import oracle_connection

        opening = oracle_connection(source.url, holder, where=where, translate_inside=False)
    async with AsyncExitStack() as stack:
        try:
            conn = await stack.enter_async_context(opening)
        except AsyncEtlError as exc:
            err = extract_error(exc)
            if err is exc:
                raise
            raise err from exc
        yield conn
