"""Before the first chunk: preflight (reads only), then the run's plan (new or resumed).

Preflight touches nothing: it reads the source's columns, resolves ``[scd]`` against them,
compares them with an existing target's (``schema_drift``: added / dropped / retyped columns),
reaches the target (and reads its latest ``valid_from``) and the state store, chooses the
collation every statement compares chunk keys in (``core.collation``; a resumed run keeps its
plan's), and decides the run: resume the job's unfinished run (same run id, same as-of T,
same stored chunk plan) unless
``fresh``, else a new run at T = ``options.as_of`` or now.  T is truncated to milliseconds (the
finest precision every target keeps) and may not be earlier than the target's history.  Any
problem here is a ``ConfigError`` naming the key or the URL (password masked).

Incremental jobs: preflight also decides the run's cursor window (``jobs.cursor``): a
resumed run keeps the window stored with its plan; a new one reads from the job's committed
cursor up to the source's current maximum, read here.

``plan_run`` then writes: it records a new run with its chunk plan (estimate, parallel
decision, rows per chunk (``chunk_sizing``), boundary sampling) or marks the resumed run
RUNNING, and checks NULL keys; the runner then records the NULL-key rejects
(``record_null_rejects``), so that a failure there ends the recorded run FAILED.

Every round trip here is retried on a transient failure with the run's policy
(``JobOptions.retry``), each attempt on a new connection.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

from async_etl.core import chunks as ch
from async_etl.core.collation import KeyCollation, key_order
from async_etl.core.compare import chunk_key_problem, key_problem
from async_etl.core.crate_endpoint import Endpoint
from async_etl.core.crate_names import first_column_problem, table_problem
from async_etl.core.incremental import CursorWindow, row_cap
from async_etl.core.modes import indexes_during_load, refresh_problem, resume_problem
from async_etl.core.retry import RetryPolicy
from async_etl.core.run_identity import (
    Place,
    database_identity,
    identity_problem,
    source_identity,
)
from async_etl.core.run_identity import target_identity as stored_target
from async_etl.core.specs import ScdColumns, is_identifier
from async_etl.core.sqltext import limits_rows
from async_etl.core.urls import dialect_of
from async_etl.errors import AsyncEtlError, ConfigError, DataError, unusable
from async_etl.jobs.api import JobOptions
from async_etl.jobs.budget import database_key
from async_etl.jobs.context import Holder, JobContext, key_json
from async_etl.jobs.cursor import new_window, resumed_window, shown, source_holds, source_max
from async_etl.jobs.endpoints import Target, make_target
from async_etl.jobs.schema_drift import check_new_types, drift_to_add, read_columns
from async_etl.jobs.spec import JobSpec
from async_etl.jobs.state import StateStore
from async_etl.log import get_logger
from async_etl.runtime.retrying import retrying
from async_etl.sources.port import Source, source_connection

__all__ = [
    "Decision",
    "Plan",
    "Survey",
    "builds_new_table",
    "chunk_sizing",
    "plan_run",
    "preflight",
    "record_null_rejects",
    "stored_sizing",
    "survey",
]

log = get_logger(__name__)

NULL_KEY_REJECTS = 10_000
"""At most this many NULL-key rows are recorded one by one in ``async_etl_rejects``."""

NULL_KEY_REASON = "NULL in key column(s) "
"""How every NULL-key row's reject reason starts; the row's NULL key columns follow."""


@dataclass(frozen=True, slots=True)
class Decision:
    """What preflight learnt: columns, resolved SCD columns, the run to do."""

    columns: tuple[tuple[str, str], ...]
    cols: ScdColumns
    run_id: str
    as_of: datetime
    resumed_plan: dict[str, Any] | None
    add_columns: tuple[tuple[str, str], ...] = ()
    """Source columns to add to the existing target (``[target] schema_evolution``)."""
    collate: tuple[str | None, ...] = ()
    window: CursorWindow | None = None
    latest: datetime | None = None
    """The target's latest ``valid_from`` before the run (None: type 1, or no table)."""
    target: list[str] = field(default_factory=list)
    """Where the run's committed chunks are (``target_identity``), stored with a new plan."""
    source: dict[str, Any] = field(default_factory=dict)
    """What they are read from (``source_identity_of``), stored with a new plan."""

    @property
    def after_all(self) -> bool:
        """A new run whose as-of is later than every version in the target (type 2)."""
        return self.resumed_plan is None and (self.latest is None or self.latest < self.as_of)


@dataclass(slots=True)
class Plan:
    """The chunk plan of the run and what is already done."""

    plan: ch.ChunkPlan
    workers: int
    committed: set[int] = field(default_factory=set)
    counters: dict[str, int] = field(default_factory=dict)
    started_at: datetime | None = None
    sizing: ch.ChunkSizing | None = None
    """The rows per chunk the plan was cut for, and why (None: a resumed plan stored without)."""
    null_rejects: list[tuple[str, str]] = field(default_factory=list)
    """The NULL-key rows to record as rejects, (key JSON, reason) (``record_null_rejects``)."""


def utc_ms(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime truncated to milliseconds (naive = UTC)."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    aware = aware.astimezone(UTC)
    return aware.replace(microsecond=aware.microsecond // 1000 * 1000)


def new_run_id(job: str) -> str:
    """A fresh, sortable run id: ``<job>-<UTC time>-<random>``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return f"{job}-{stamp}-{uuid.uuid4().hex[:6]}"


def _plain(name: str) -> str:
    """A plain name to suggest for ``name`` (its ASCII letters, digits and underscores)."""
    kept = "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in name)
    return kept if kept[:1].isalpha() or kept[:1] == "_" else f"c_{kept}"


async def preflight(
    spec: JobSpec,
    options: JobOptions,
    source: Source,
    target: Target,
    store: StateStore,
    holder: Holder,
) -> Decision:
    """Read-only checks and the run decision; raises ``ConfigError`` (one line) on a problem."""
    app = f"{spec.name}:preflight"
    policy = options.retry

    async def read_columns() -> tuple[
        tuple[tuple[str, str], ...], list[KeyCollation | None], Place
    ]:  # fmt: skip
        async with source_connection(source, holder, app) as conn:
            columns, collations = await source.describe(conn)
            return tuple(columns), collations, await source.place(conn)

    try:
        columns, collations, source_place = await retrying(
            read_columns, policy, what="read source columns"
        )
    except AsyncEtlError as exc:
        raise unusable(f"job {spec.name}: cannot read the source: {exc.message}", exc) from exc
    names = [n for n, _ in columns]
    odd = [n for n in names if not is_identifier(n)]
    if odd:  # every statement quotes plain names only: say so before anything is written
        raise ConfigError(f"job {spec.name}: source column {odd[0]!r} is not a plain name "
                          "([A-Za-z_][A-Za-z0-9_]*): rename it in [source] query "
                          f"(... AS {_plain(odd[0])})")  # fmt: skip
    missing = [k for k in spec.source.key if k not in names]
    if missing:
        raise ConfigError(f"[source] key: {', '.join(missing)} not among the source columns "
                          f"({', '.join(names)})")  # fmt: skip
    top = await source_max(spec, columns, source, holder, app, policy)
    cols = spec.scd.resolve(names, [t for _, t in columns])
    _check_key_types(spec, columns, cols)
    _check_target_names(spec, cols)
    _check_column_count(spec, cols)
    _check_locale_text(spec, columns)
    add, existing = await _check_target(spec, columns, cols, source, target, holder, app, policy)
    if add:  # added past the dropped columns' numbers (PostgreSQL's; none elsewhere)
        _check_column_count(spec, cols, target.dropped_columns)
    if dialect_of(spec.target.url) in ("postgresql", "cratedb"):  # the target's types
        cols = cols.with_target(existing)  # compared through (PostgreSQL); VARCHAR(n) checked
    try:
        latest = await retrying(
            lambda: target.max_valid_from(holder, app, cols), policy, what="reach the target"
        )
        available = (  # a key without collations (numbers, dates) is ordered the same anywhere
            await retrying(
                lambda: target.collations(holder, app), policy, what="read the target's collations"
            )
            if any(c is not None for c in collations)
            else None
        )
        place = await retrying(
            lambda: target.place(holder, app, spec.target.table), policy, what="resolve the target"
        )
    except AsyncEtlError as exc:
        raise unusable(f"job {spec.name}: cannot use the target: {exc.message}", exc) from exc
    try:
        unfinished = None if options.fresh else await store.unfinished(spec.name)
    except AsyncEtlError as exc:
        raise unusable(f"job {spec.name}: state store: {exc.message}", exc) from exc
    wanted = utc_ms(options.as_of) if options.as_of is not None else None
    where = target_identity(spec, place)
    if unfinished is not None:
        run_id, as_of, plan = unfinished
        as_of = utc_ms(as_of)
        if wanted is not None and wanted != as_of:
            raise ConfigError(f"job {spec.name}: run {run_id} is unfinished at as-of "
                              f"{as_of.isoformat()}; resume it without --as-of (or with that "
                              "value), or start over with --fresh")  # fmt: skip
        if (problem := resume_problem(plan.get("mode"), spec.mode, spec.scd.type)) is not None:
            raise ConfigError(f"job {spec.name}: run {run_id} {problem}")
        now = source_identity_of(spec, columns, source_place)
        changed = identity_problem(plan.get("target"), where, plan.get("source"), now)
        if changed is not None:  # a plan stored before plans recorded them resumes as before
            raise ConfigError(f"job {spec.name}: run {run_id} {changed}")
    else:
        run_id, as_of, plan = new_run_id(spec.name), wanted or utc_ms(datetime.now(UTC)), None
    if latest is not None and as_of < latest:
        raise ConfigError(f"job {spec.name}: as-of {as_of.isoformat()} is before the latest "
                          f"version in {spec.target.table} ({latest.isoformat()}); a run may "
                          "not rewrite history")  # fmt: skip
    collate = _collate(
        plan, collations, available, database_key(source.url) == database_key(target.url)
    )
    if plan is not None:
        window = resumed_window(spec, run_id, plan)
    else:
        # A target that is not there (dropped, or renamed away, since the cursor was committed)
        # holds none of the rows below the cursor: read them all, as a first run does.
        window = await new_window(
            spec, store, top, whole=bool(add) or existing is None,
            holds=lambda value: source_holds(spec, source, holder, app, policy, value),
        )  # fmt: skip
    return Decision(columns, cols, run_id, as_of, plan, add, collate, window, latest, where,
                    source_identity_of(spec, columns, source_place))  # fmt: skip


def target_identity(spec: JobSpec, place: Place) -> list[str]:
    """Where a run's committed chunks are (``core.run_identity.target_identity``).

    ``[target] url``'s ``database_key`` and table as written, and ``place``'s database and
    ``schema.table`` as the target resolves them (``Target.place``).  Stored with a new
    run's plan; a run that would resume it into another table or database is refused (it
    would skip chunks committed elsewhere).  No credentials.
    """
    key = database_key(spec.target.url)
    return stored_target(key, spec.target.table, database_identity(place, key), str(place[2]))


def source_identity_of(
    spec: JobSpec, columns: Sequence[tuple[str, str]], place: Place
) -> dict[str, Any]:
    """What a run's committed chunks were read from (``core.run_identity.source_identity``).

    Stored with a new run's plan beside ``target_identity``; a run that would resume it over
    another source database, table, query, key or source columns is refused (it would mix
    two sources in one target).  Database and table are compared as the source resolves
    them (``Source.place``).  No credentials (``database_key``).
    """
    src, key = spec.source, database_key(spec.source.url)
    resolved = [database_identity(place, key), place[2]]
    return source_identity(key, src.table, src.query, src.key, columns, resolved)


async def _check_target(
    spec: JobSpec, columns: Sequence[tuple[str, str]], cols: ScdColumns, source: Source,
    target: Target, holder: Holder, app: str, policy: RetryPolicy,
) -> tuple[tuple[tuple[str, str], ...], list[tuple[str, str]] | None]:  # fmt: skip
    """``drift_to_add`` against the table the run ends in: the columns to add, the target's.

    The target's are its (name, type) columns as read (None: no such table yet).

    A full refresh loads a new table but keeps the existing target's definition: its columns
    are checked like a normal run's (a PostgreSQL new table is made from the target's own
    definition, so added columns go there too; CrateDB and Oracle build theirs from the
    source's columns).  It may not drop history either (``core.modes.refresh_problem``).
    """
    if spec.mode != "full_refresh":
        existing = await read_columns(spec, target, holder, app, policy)
        add = drift_to_add(spec, columns, cols, existing)
        await check_new_types(spec, _typed_by_name(columns, add, existing), source, target,
                              holder, app, policy)  # fmt: skip
        return add, existing
    final = make_target(dataclasses.replace(spec, mode="merge"))
    existing = await read_columns(spec, final, holder, app, policy)
    try:
        history = (
            existing is not None
            and cols.type == 2
            and await retrying(
                lambda: final.holds_history(holder, app, cols), policy, what="read target history"
            )
        )
    except AsyncEtlError as exc:
        raise unusable(f"job {spec.name}: cannot use the target: {exc.message}", exc) from exc
    names = None if existing is None else [n for n, _ in existing]
    problem = refresh_problem(spec.target.table, cols, names, history)
    if problem is not None:
        raise ConfigError(f"job {spec.name}: full refresh: {problem}")
    add = drift_to_add(spec, columns, cols, existing)  # the columns read above, not again
    await check_new_types(spec, _typed_by_name(columns, add, existing), source, final, holder,
                          app, policy)  # fmt: skip
    return (add if dialect_of(spec.target.url) == "postgresql" else ()), existing


def _typed_by_name(
    columns: Sequence[tuple[str, str]],
    add: Sequence[tuple[str, str]],
    existing: Sequence[tuple[str, str]] | None,
) -> list[tuple[str, str]]:
    """The source columns whose type the target must define alike (``check_new_types``).

    Every column of a new table; else the added ones and those the target table already
    holds under the same type name: a PostgreSQL user type is matched by name across
    databases, so an existing column of the target's own ``mood`` takes the source's ``mood``
    values, and an enum there without one of their labels would refuse them row by row.
    """
    if existing is None:
        return list(columns)
    theirs = set(existing)
    return [*add, *(c for c in columns if c in theirs)]


async def builds_new_table(
    spec: JobSpec, decision: Decision, target: Target, holder: Holder, app: str,
    policy: RetryPolicy,
) -> bool:  # fmt: skip
    """Whether this merge / SCD2 run is the initial load of a PostgreSQL target not there yet.

    Such a run is a full refresh of the job's SCD shape (``core.modes``: every key's first
    version at the as-of time, as an initial load writes it) into the target's new table,
    whose unique indexes are built after the load, then renamed into place: one write per
    row, no index maintained row by row, and readers never see a half-loaded target.  Only
    with ``on_bad_row = "fail"`` (rejecting rows needs the indexes during the load).  A
    resumed run builds its new table only if it was doing so (the new table exists: a run
    that loaded straight into its target goes on doing so).  Reads only.
    """
    if spec.mode not in ("merge", "scd2") or spec.on_bad_row != "fail":
        return False
    if dialect_of(spec.target.url) != "postgresql":
        return False

    async def absent(t: Target) -> bool:
        return await retrying(lambda: t.columns(holder, app), policy, what="read target") is None

    if not await absent(target):
        return False
    return decision.resumed_plan is None or not await absent(make_target(as_new_build(spec)))


def as_new_build(spec: JobSpec) -> JobSpec:
    """``spec`` run as the full refresh that builds its absent target (``builds_new_table``)."""
    return dataclasses.replace(spec, mode="full_refresh")


def _check_key_types(spec: JobSpec, columns: Sequence[tuple[str, str]], cols: ScdColumns) -> None:
    """``ConfigError`` naming a chunk or business key column whose type has no ``=`` / order."""
    types = dict(columns)
    checks = (("[source] key", spec.source.key, chunk_key_problem),
              ("[scd] business_key", cols.business_key, key_problem))  # fmt: skip
    for section, keys, problem in checks:
        for name in keys:
            if (why := problem(types[name])) is not None:
                raise ConfigError(f"{section}: column {name} {why}; key on another column "
                                  "(or a text / jsonb cast of it in the source query)")  # fmt: skip


def _check_locale_text(spec: JobSpec, columns: Sequence[tuple[str, str]]) -> None:
    """``ConfigError`` naming a money column a CrateDB or Oracle target would store as text.

    ``core.exact.locale_text_problem`` decides (imported only for those targets).
    """
    dialect = str(dialect_of(spec.target.url))
    if dialect not in ("cratedb", "oracle"):
        return
    from async_etl.core.exact import locale_text_problem

    if (problem := locale_text_problem(columns, dialect)) is not None:
        raise ConfigError(f"job {spec.name}: target {spec.target.table}: {problem}")


def _check_column_count(spec: JobSpec, cols: ScdColumns, dropped: int = 0) -> None:
    """``ConfigError`` when a PostgreSQL target would pass its column limit.

    Source + SCD columns, + ``dropped``: the existing target's dropped columns, when the run
    adds columns to it (``core.drift.pg_column_count_problem``).
    """
    if dialect_of(spec.target.url) != "postgresql":
        return
    from async_etl.core.drift import pg_column_count_problem

    scd = 3 if cols.type == 2 else 0
    problem = pg_column_count_problem(spec.target.table, len(cols.data), scd, dropped)
    if problem is not None:
        raise ConfigError(f"job {spec.name}: {problem}")


def _check_target_names(spec: JobSpec, cols: ScdColumns) -> None:
    """``ConfigError`` naming a table, schema or column a CrateDB target refuses.

    ``core.crate_names``: the table or its schema (the URL's ``?schema=`` when the table names
    none) starting with ``_``, with upper case letters or reserved; a column starting with
    ``_``.  Checked before anything is written: CrateDB refuses the table's ``CREATE`` (or a
    new column's ``ADD COLUMN``) only at run time, after the run is recorded.
    """
    if dialect_of(spec.target.url) != "cratedb":
        return
    table = Endpoint.parse(spec.target.url).qualify(spec.target.table)
    if (refused := table_problem(table)) is not None:
        raise ConfigError(f"job {spec.name}: target {spec.target.table}: {refused}")
    meta = {}
    if cols.type == 2:
        meta = {cols.valid_from: "valid_from", cols.valid_to: "valid_to",
                cols.is_current: "is_current"}  # fmt: skip
    for name in (*cols.data, *meta):
        problem = first_column_problem([name])
        if problem is None:
            continue
        hint = (f"set [scd] {meta[name]} to another name" if name in meta and
                name not in cols.data else
                f"rename it in [source] query (... AS {name.lstrip('_') or 'c'})")  # fmt: skip
        raise ConfigError(f"job {spec.name}: target {spec.target.table}: {problem}; {hint}")


def _collate(
    plan: dict[str, Any] | None,
    collations: list[KeyCollation | None],
    available: frozenset[str] | None,
    same_database: bool,
) -> tuple[str | None, ...]:
    """The stored plan's chunk collations (a resumed run), else a new choice."""
    if plan is not None:
        try:
            return ch.ChunkPlan.from_json(plan).collate
        except (KeyError, TypeError, ValueError):
            return ()  # plan_run reports the malformed plan
    return key_order(collations, target=available, same_database=same_database)


class Survey(NamedTuple):
    """What ``survey`` read: the estimate, NULL keys, chunk cuts, NULL-key rows, and the size."""

    estimate: int
    nulls: int
    cuts: ch.Cuts
    """A new run's chunk cuts and where they came from (a resumed run: none)."""
    null_rows: list[dict[str, Any]]
    """Key values of rows with a NULL key part: up to ``NULL_KEY_REJECTS`` with ``on_bad_row =
    "reject"``, the first with ``"fail"`` (``null_key_failure``)."""
    sizing: ch.ChunkSizing | None
    """The rows per chunk the cuts were made for, decided once (``chunk_sizing``) and
    recorded in the new plan; None for a resumed run (its stored plan says)."""


async def plan_run(
    ctx: JobContext,
    decision: Decision,
    source: Source,
    store: StateStore,
    surveyed: Survey | None = None,
) -> Plan:
    """Record the new run with its chunk plan, or resume the stored one; check NULL keys.

    ``surveyed``: what ``survey`` read already (None: it is read here, retried with the run's
    policy).  Raises ``DataError`` when the source has NULL keys and ``on_bad_row = "fail"``,
    and the translated driver errors of the source and the state store.  Recording the run
    (``start_run`` / ``resume_run``) is its last step that can fail: what must be written
    after it (the NULL-key rejects, ``record_null_rejects``) is the caller's, once it holds
    the ``Plan`` and so ends the run FAILED on an error.
    """
    spec = ctx.spec
    if surveyed is None:
        surveyed = await retrying(
            lambda: survey(ctx, decision, source), ctx.policy, what="plan chunks"
        )
    estimate, nulls, cuts, null_rows, new_sizing = surveyed
    workers = ch.workers(estimate, spec.parallel)
    if nulls and ctx.on_bad_row == "fail":  # before a new run is recorded: none is left RUNNING
        raise DataError(f"job {spec.name}: {null_key_failure(spec.source.key, nulls, null_rows)}")
    if decision.resumed_plan is not None:
        plan = ch.ChunkPlan.from_json(decision.resumed_plan)
        sizing = stored_sizing(decision.resumed_plan)
        committed, row = await store.resume_run(ctx.run_id)
        counters = {
            "rows_read": row.rows_read,
            "inserted": row.inserted,
            "updated": row.updated,
            "expired": row.expired,
            "deleted": row.deleted,
            "rejected": row.rejected,
        }
        out = Plan(plan, workers, committed, counters, row.started_at, sizing)
        log.info("run_resumed", chunks=len(plan), committed=len(committed), workers=workers,
                 chunk_size=None if sizing is None else sizing.rows,
                 chunk_size_why=None if sizing is None else sizing.why)  # fmt: skip
    else:
        assert new_sizing is not None  # survey sizes every new plan
        sizing = new_sizing
        try:
            plan = ch.plan_chunks(cuts.values, decision.collate)
            bounds = [orjson.dumps(c.to_json()).decode() for c in plan.chunks]
            doc = plan.to_json()
        except ValueError as exc:
            raise DataError(f"job {spec.name}: cannot plan chunks over [source] key "
                            f"{', '.join(spec.source.key)}: {exc}") from exc  # fmt: skip
        doc["chunk_size"] = {"rows": sizing.rows, "why": sizing.why}
        doc["cuts_from"] = cuts.source
        doc["mode"] = [spec.mode, spec.scd.type]  # what a resuming run must match (resume_problem)
        doc["target"] = decision.target  # and where its committed chunks are
        doc["source"] = decision.source  # read from what
        if ctx.window is not None:
            doc["cursor"] = ctx.window.to_json()
        await store.start_run(ctx.run_id, spec.name, ctx.as_of, doc, bounds)
        out = Plan(plan, workers, counters={"rejected": 0}, sizing=sizing)
        log.info("run_started", chunks=len(plan), estimate=estimate, workers=workers,
                 chunk_size=sizing.rows, chunk_size_why=sizing.why, cuts_from=cuts.source,
                 cursor_from=shown(ctx.window, "start"),
                 cursor_to=shown(ctx.window, "high"))  # fmt: skip
    if nulls:  # rows the chunks never read (no chunk holds a NULL key), read all the same
        out.counters["rows_read"] = out.counters.get("rows_read", 0) + nulls
        # and rejected: a resumed run counts them again (its counters are the chunks' sums)
        out.counters["rejected"] = out.counters.get("rejected", 0) + nulls
    out.null_rejects = [(key_json(k), null_key_reason(spec.source.key, k)) for k in null_rows]
    return out


async def record_null_rejects(
    ctx: JobContext, decision: Decision, store: StateStore, plan: Plan
) -> None:
    """Record the NULL-key rejects ``plan_run`` found (``Plan.null_rejects``), once per run.

    A resumed run records them only when its first attempt did not (it failed on them in
    "fail" mode, or was killed before recording them).  Called once the run is recorded and
    its ``Plan`` held, so that a failure here (the state store's translated errors) ends the
    run FAILED instead of leaving it RUNNING.
    """
    if not plan.null_rejects:
        return
    if decision.resumed_plan is None or not await store.has_rejects(ctx.run_id, NULL_KEY_REASON):
        await store.add_rejects(ctx.spec.name, ctx.run_id, plan.null_rejects)


def null_key_reason(key: Sequence[str], row: dict[str, Any]) -> str:
    """A NULL-key row's reject reason: ``NULL_KEY_REASON`` and the key columns NULL in it."""
    return NULL_KEY_REASON + ", ".join(k for k in key if row.get(k) is None)


def null_key_failure(key: Sequence[str], nulls: int, rows: Sequence[dict[str, Any]]) -> str:
    """Why a ``fail``-mode run stops on ``nulls`` NULL-key rows, the first of ``rows`` shown.

    The first row's key and its ``null_key_reason`` (the key columns NULL in it, as a reject
    names them); with no row read (gone since they were counted), the key columns one of
    which is NULL.
    """
    if not rows:
        return f"{nulls} source row(s) have a NULL in one of key column(s) {', '.join(key)}"
    first = rows[0]
    return (f"{nulls} source row(s) have a NULL key, the first: row "
            f"{key_json(first)}: {null_key_reason(key, first)}")  # fmt: skip


async def survey(ctx: JobContext, decision: Decision, source: Source) -> Survey:
    """On one source connection: the estimate, NULL keys, chunk cuts (new runs), NULL-key rows.

    NULL-key rows: those recorded as rejects, or (``fail``) the first, named by the error.

    A new run's rows per chunk are decided here, once (``chunk_sizing``): the cuts are made
    for it and ``plan_run`` records it.
    """
    async with source_connection(source, ctx.hold, ctx.app) as conn:
        estimate, plan = await source.estimate(conn)
        nulls = await source.null_keys(conn)
        cuts = ch.Cuts([], ch.NO_CUTS)
        sizing = None
        if decision.resumed_plan is None:
            sizing = chunk_sizing(ctx, estimate, plan)
            if sizing.rows is not None:  # else read whole (``WHOLE``): no cuts
                n = ch.chunk_count(estimate, sizing)
                cuts = await source.boundaries(conn, n, decision.collate, estimate)
        null_rows: list[dict[str, Any]] = []
        if nulls:  # reject: each is recorded (up to the cap); fail: the first names the error
            limit = NULL_KEY_REJECTS if ctx.on_bad_row == "reject" else 1
            null_rows = await source.null_key_rows(conn, limit)
    return Survey(estimate, nulls, cuts, null_rows, sizing)


def _kept_indexes(spec: JobSpec) -> str | None:
    """Why the run's load keeps the target's indexes (None: a new table, ``core.modes``)."""
    return indexes_during_load(spec.mode, spec.on_bad_row, dialect_of(spec.target.url) or "")


def chunk_sizing(ctx: JobContext, estimate: int, plan: Any = None) -> ch.ChunkSizing:
    """The rows per chunk a new plan of the run is cut for, and why (``core.chunks``).

    A source query that limits its rows is read as one chunk, whatever the size and mode: at
    the top level (``_reads_whole``, the job file's text) or inside it, in a subquery, a CTE
    or a view (``incremental.row_cap`` of ``plan``, the source's ``EXPLAIN`` that the
    estimate read; None: none read, a table with statistics or a windowed count).
    ``estimate``: the source's row estimate (negative: unknown).
    """
    kept = _kept_indexes(ctx.spec)
    cap = None if plan is None else row_cap(plan)
    return ch.chunk_sizing(estimate, ctx.spec.parallel, kept=kept, whole=_reads_whole(ctx),
                           cap=cap)  # fmt: skip


def stored_sizing(plan: dict[str, Any]) -> ch.ChunkSizing | None:
    """The rows per chunk a stored plan records (None: stored before plans recorded it)."""
    found = plan.get("chunk_size")
    if not isinstance(found, dict):
        return None
    try:
        rows = found["rows"]
        return ch.ChunkSizing(None if rows is None else int(rows), str(found["why"]))
    except (KeyError, TypeError, ValueError):
        return None


def _reads_whole(ctx: JobContext) -> bool:
    """A source query with a top-level LIMIT / OFFSET / FETCH is read as one chunk."""
    query = ctx.spec.source.query
    if query is None:
        return False
    oracle = dialect_of(ctx.spec.source.url) == "oracle"
    return limits_rows(query, "oracle" if oracle else "postgresql")
