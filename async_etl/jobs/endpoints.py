"""Which adapter serves a job's source and which driver its target.

The source is PostgreSQL (``async_etl.sources.postgres``) or Oracle
(``async_etl.sources.oracle``), both filling ``async_etl.sources.port.Source``; the target is
PostgreSQL (``pg_driver``), CrateDB (``crate_driver``) or Oracle (``oracle_driver``), each
filling ``Target``.  Connections are always opened under the run's budget
(``JobContext.hold``).  The CrateDB and Oracle adapters are imported when a job uses them:
aiohttp alone adds about 0.1 s and 20 MB to the start of every PostgreSQL-only job.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from async_etl.core.chunks import Chunk
from async_etl.core.incremental import CursorWindow
from async_etl.core.modes import new_table
from async_etl.core.run_identity import Place
from async_etl.core.specs import ScdColumns
from async_etl.core.sqltext import SqlTextError, source_query
from async_etl.core.urls import dialect_of, mask_url
from async_etl.errors import ConfigError
from async_etl.jobs.context import ChunkResult, Holder, JobContext
from async_etl.jobs.pg_driver import PgTarget
from async_etl.jobs.spec import JobSpec
from async_etl.sources.port import Source
from async_etl.sources.postgres import PgSource

__all__ = ["Target", "make_source", "make_target"]


def make_source(spec: JobSpec, window: CursorWindow | None = None) -> Source:
    """The adapter for ``[source]`` (reading only ``window`` when given).

    Raises ``ConfigError`` for an unsupported URL or a query that is not one SELECT.
    """
    src = spec.source
    dialect = dialect_of(src.url)
    query = src.query
    if query is not None and dialect in ("postgresql", "oracle"):
        try:  # a no-op for a loaded job file; a JobSpec built by hand is checked here
            query = source_query(query, "oracle" if dialect == "oracle" else "postgresql")
        except SqlTextError as exc:
            raise ConfigError(f"[source] query: {exc}") from exc
    if dialect == "postgresql":
        return PgSource(src.url, src.key, query, src.table, window)
    if dialect == "oracle":
        from async_etl.sources.oracle import OracleSource  # oracledb only when it is one

        return OracleSource(src.url, src.key, query, src.table, window)
    raise ConfigError(f"[source] url: {mask_url(src.url)} cannot be a source")


class Target(Protocol):
    """A mapper job's target driver."""

    url: str
    dropped_columns: int
    """The existing target's dropped columns, which count toward its column limit (PostgreSQL
    keeps their numbers; 0 for CrateDB and Oracle).  Set by ``columns``; 0 before."""

    async def max_valid_from(self, holder: Holder, app: str, cols: ScdColumns) -> datetime | None:
        """Reach the target; the latest version start there (None: no table, or type 1)."""
        ...

    async def holds_history(self, holder: Holder, app: str, cols: ScdColumns) -> bool:
        """Whether the type-2 table holds an expired version (False: no table)."""
        ...

    async def columns(self, holder: Holder, app: str) -> list[tuple[str, str]] | None:
        """(name, type as this target names it) of the target table's columns; None: no table."""
        ...

    async def collations(self, holder: Holder, app: str) -> frozenset[str] | None:
        """Collation names the target can compare keys in; None: code-point order only."""
        ...

    async def place(self, holder: Holder, app: str, table: str) -> Place:
        """Where ``table`` is as this target resolves it (``core.run_identity.Place``).

        What a resumed run must match (``core.run_identity.target_identity``): PostgreSQL
        asks the server (its cluster and database; the table's schema, or where it would be
        created); CrateDB qualifies the name with the URL's schema and Oracle upper-cases it,
        the URL's ``database_key`` standing for the database.  Raises translated driver errors.
        """
        ...

    async def prepare(self, ctx: JobContext) -> None:
        """Create the target table (and what the driver needs) if missing; add ``add_columns``."""
        ...

    async def run_chunk(self, ctx: JobContext, chunk: Chunk, source: Source) -> ChunkResult:
        """Load one chunk; raises translated errors (transient ones are retried by the runner)."""
        ...

    async def swap(self, ctx: JobContext) -> None:
        """Full refresh: replace ``[target] table`` by the loaded new table atomically.

        Safe to repeat: once the swap has committed (no new table left) it does nothing.
        """
        ...

    async def after_load(self, ctx: JobContext) -> None:
        """After the chunks (and a full refresh's swap): what the loaded target needs next.

        PostgreSQL moves identity and serial sequences past the loaded values; the others do
        nothing.  Safe to repeat.
        """
        ...

    async def landed_runs(self, ctx: JobContext) -> list[str]:
        """The runs (of any job) whose chunk-ledger rows this target holds now.

        ``[]`` when it keeps no ledger for the run (connects to nothing then).
        """
        ...

    async def forget_landed(self, ctx: JobContext, run_ids: Sequence[str]) -> None:
        """Delete the chunk-ledger rows of ``run_ids`` (runs recorded finished); safe to repeat.

        Called only once the state store records the run SUCCEEDED.
        """
        ...


def make_target(spec: JobSpec) -> Target:
    """The driver for ``[target]``; raises ``ConfigError`` for an unsupported URL.

    A full refresh loads into the target's new table (``core.modes.new_table``); the driver's
    ``swap`` puts it in place of ``[target] table`` at the end.
    """
    tgt = spec.target
    dialect = dialect_of(tgt.url)
    table = new_table(tgt.table) if spec.mode == "full_refresh" else tgt.table
    if dialect == "postgresql":
        return PgTarget(tgt.url, table)
    if dialect == "cratedb":
        from async_etl.jobs.crate_driver import CrateTarget  # aiohttp: 0.1 s, 20 MB

        return CrateTarget(tgt.url, table)
    if dialect == "oracle":
        from async_etl.jobs.oracle_driver import OracleTarget

        return OracleTarget(tgt.url, table)
    raise ConfigError(f"[target] url: {mask_url(tgt.url)} cannot be a target")
