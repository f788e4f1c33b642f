"""Preflight's schema-drift check: the source's columns against the existing target's.

Reads only (one target connection).  The decision is ``core.drift``'s; this module picks the
target's type mapping (PostgreSQL: the source's own types; CrateDB: ``crate_type``; Oracle:
``oracle_type``) and turns a refusal into a ``ConfigError`` (exit status 2, before anything is
written or any run is recorded).  ``check_new_types``: a PostgreSQL target that must create
columns (a new table, added ones) has each one's type (an enum, a composite of the source's),
defined alike (``core.pg_user_types``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from async_etl.core import drift
from async_etl.core.pg_user_types import UserType, user_type_problem
from async_etl.core.retry import RetryPolicy
from async_etl.core.specs import ScdColumns
from async_etl.core.urls import dialect_of, mask_url
from async_etl.errors import AsyncEtlError, ConfigError, unusable
from async_etl.jobs.context import Holder
from async_etl.jobs.endpoints import Target
from async_etl.jobs.pg_driver import PgTarget
from async_etl.jobs.spec import JobSpec
from async_etl.log import get_logger
from async_etl.runtime.retrying import retrying
from async_etl.sources.port import Source, source_connection
from async_etl.sources.postgres import PgSource

__all__ = ["check_new_types", "drift_to_add", "read_columns"]

log = get_logger(__name__)


def _crate_type(pg_type: str) -> str:
    """``coltypes.crate_type``, imported for a CrateDB target only (see ``_oracle_type``)."""
    from async_etl.jobs.coltypes import crate_type

    return crate_type(pg_type)


def _oracle_type(pg_type: str) -> str:
    """``coltypes.oracle_type``, imported for an Oracle target only.

    A PostgreSQL target never needs ``jobs.coltypes`` or the exact-value module it imports
    (about 2.5 ms of a job's start).
    """
    from async_etl.jobs.coltypes import oracle_type

    return oracle_type(pg_type)


_TYPES: dict[str, tuple[Callable[[str], str], Callable[[str, str], bool]]] = {
    "postgresql": (lambda t: t, drift.sql_fits),
    "cratedb": (_crate_type, drift.crate_fits),
    "oracle": (_oracle_type, drift.oracle_fits),
}


async def read_columns(
    spec: JobSpec, target: Target, holder: Holder, app: str, policy: RetryPolicy
) -> list[tuple[str, str]] | None:
    """The target's (name, type) columns, None when it does not exist.

    Raises ``ConfigError`` for a merge or a type-2 run into a partitioned PostgreSQL table
    whose partition key is not part of ``[source] key`` (``drift.pg_partition_key_problem``),
    and for a full refresh into any partitioned one (``drift.pg_partitioned_refresh_problem``)
    or one with what a drop-and-rename cannot keep (``PgTarget.refresh_problem``).

    Transient failures are retried with ``policy``; raises ``unusable(...)`` naming the job
    when the target cannot be read.
    """
    try:
        found = await retrying(
            lambda: target.columns(holder, app), policy, what="read target columns"
        )
    except AsyncEtlError as exc:
        raise unusable(f"job {spec.name}: cannot use the target: {exc.message}", exc) from exc
    if isinstance(target, PgTarget) and spec.mode in ("merge", "scd2"):  # keyed, into it
        problem = drift.pg_partition_key_problem(spec.source.key, target.partition_key)
        if problem is not None:
            raise ConfigError(f"job {spec.name}: {target.where} is partitioned: {problem}")
    if isinstance(target, PgTarget) and spec.mode == "full_refresh":  # swaps in a LIKE table
        problem = drift.pg_partitioned_refresh_problem(target.partition_key)
        if problem is not None:
            raise ConfigError(f"job {spec.name}: {target.where} is partitioned: {problem}")
        if found is not None:  # what prepare would refuse, asked before the run is recorded
            await _refuse_refresh(spec, target, holder, app, policy)
    return found


async def _refuse_refresh(
    spec: JobSpec, target: PgTarget, holder: Holder, app: str, policy: RetryPolicy
) -> None:
    """``ConfigError`` when a full refresh may not replace ``target`` (its ``refresh_problem``)."""
    try:
        problem = await retrying(
            lambda: target.refresh_problem(holder, app), policy, what="read the target's objects"
        )
    except AsyncEtlError as exc:
        raise unusable(f"job {spec.name}: cannot use the target: {exc.message}", exc) from exc
    if problem is not None:
        raise ConfigError(f"job {spec.name}: {target.where}: {problem}")


def drift_to_add(
    spec: JobSpec,
    columns: Sequence[tuple[str, str]],
    cols: ScdColumns,
    existing: Sequence[tuple[str, str]] | None,
) -> tuple[tuple[str, str], ...]:
    """The columns to add to the target (name, target type), from its columns (``read_columns``).

    () when none or no table yet (``existing`` None).

    Raises ``ConfigError`` naming the first added, dropped or retyped column when the run may
    not proceed.
    """
    if existing is None:
        return ()
    dialect = str(dialect_of(spec.target.url))
    expect, fits = _TYPES[dialect]
    meta = (cols.valid_from, cols.valid_to, cols.is_current) if cols.type == 2 else ()
    found = drift.compare(columns, existing, meta, expect, fits, fold=dialect == "oracle")
    problem, add = drift.decide(found, spec.target.table, spec.target.schema_evolution)
    if problem is None and meta and dialect == "postgresql":
        problem = drift.pg_scd_type_problem(existing, *meta, spec.target.table)
    if problem is not None:
        raise ConfigError(f"job {spec.name}: schema drift: {problem}")
    if add:
        log.info("schema_evolution", table=spec.target.table, add=[n for n, _ in add])
    return add


async def check_new_types(
    spec: JobSpec,
    made: Sequence[tuple[str, str]],
    source: Source,
    target: Target,
    holder: Holder,
    app: str,
    policy: RetryPolicy,
) -> None:
    """``ConfigError`` naming a column of ``made`` whose type the target lacks or differs.

    ``made``: the (name, source type) columns the run will create in the target (all of them
    for a new table, the added ones for an existing one).  A type not built in (an enum, a
    composite: ``drift.pg_types_to_check``) is read in the target database and, for a
    PostgreSQL source, in the source one: one round trip each, and only then; a source in
    another database may have types this one lacks or defines otherwise (an enum without a
    label, a composite's fields in another order).  ``core.pg_user_types.user_type_problem``
    decides; ``[source] key`` columns keep their enum label order.  Raises ``unusable(...)``
    when either side cannot be read.
    """
    types = drift.pg_types_to_check(made)
    if not types or not isinstance(target, PgTarget):
        return

    async def read_source() -> dict[str, UserType]:
        if not isinstance(source, PgSource):
            return {}
        async with source_connection(source, holder, app) as conn:
            return await source.user_types(conn, types)

    try:
        theirs = await retrying(
            lambda: target.user_types(holder, app, types), policy, what="read target types"
        )
    except AsyncEtlError as exc:
        raise unusable(f"job {spec.name}: cannot use the target: {exc.message}", exc) from exc
    try:
        ours = await retrying(read_source, policy, what="read source types")
    except AsyncEtlError as exc:
        raise unusable(f"job {spec.name}: cannot read the source: {exc.message}", exc) from exc
    checked = [(n, t) for n, t in made if t.strip() in types]
    problem = user_type_problem(checked, ours, theirs, ordered=spec.source.key)
    if problem is None:
        return
    column = problem.split(" ", 2)[1]
    hint = ("create it there first (CREATE TYPE ...)" if "target database does not have" in
            problem else "make the target's type match the source's (ALTER TYPE ...)")  # fmt: skip
    raise ConfigError(f"job {spec.name}: target {mask_url(spec.target.url)}: {problem}; {hint} "
                      f"or cast it in [source] query (... {column}::text AS {column})")  # fmt: skip
