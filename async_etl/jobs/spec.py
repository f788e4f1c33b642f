"""The mapper job file: its frozen model and the one loader that builds it.

Priority, per key: ``--set section.key=value`` > job file > environment
(``ASYNC_ETL_<SECTION>_<KEY>``, ``ASYNC_ETL_<KEY>`` for top-level keys) > defaults.
``parse_job`` is pure (text in, ``JobSpec`` out); ``load_job`` only adds reading the file.
Every problem raises ``ConfigError`` with one line naming the file and the key (URLs masked).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from async_etl.core.auto_workers import parse_auto
from async_etl.core.drift import Evolution
from async_etl.core.modes import (
    COMPARISON_KEYS,
    REFRESH_COMPARES,
    Mode,
    mode_of,
    refresh_compares,
)
from async_etl.core.retry import STRATEGIES, RetryPolicy, delays_problem
from async_etl.core.specs import ParallelSpec, ScdSpec
from async_etl.core.sqltext import Dialect, SqlTextError, limits_rows, source_query
from async_etl.core.urls import dialect_of, mask_url
from async_etl.core.waits import wait_problem
from async_etl.errors import ConfigError, Fail
from async_etl.jobs._spec_values import (
    SCHEMA,
    Gathered,
    check_kind,
    env_name,
    env_values,
    file_values,
    parse_toml,
    set_values,
)
from async_etl.jobs.api import JOB_RETRY
from async_etl.jobs.budget import database_key

__all__ = [
    "FORGET_S",
    "JobSpec",
    "ParallelSpec",
    "ScdSpec",
    "SourceSpec",
    "StateSpec",
    "TargetSpec",
    "env_name",
    "load_job",
    "parse_job",
    "refuse_unused",
]


class _MaskedRepr:
    """A dataclass ``repr`` that masks the password of the ``url`` field (safe to log)."""

    __slots__ = ()

    def __repr__(self) -> str:
        names = getattr(self, "__dataclass_fields__", {})
        parts = [
            f"{n}={mask_url(getattr(self, n)) if n == 'url' else getattr(self, n)!r}" for n in names
        ]
        return f"{type(self).__name__}({', '.join(parts)})"


@dataclass(frozen=True, slots=True, repr=False)
class SourceSpec(_MaskedRepr):
    """The ``[source]`` section: exactly one of ``query`` / ``table``.

    ``query`` is the one statement of the job file's text (``sqltext.source_query``: its
    terminating ``;`` and any comments after it removed).
    """

    url: str
    key: tuple[str, ...]
    query: str | None = None
    table: str | None = None
    incremental: str | None = None
    lookback: int = 0


@dataclass(frozen=True, slots=True, repr=False)
class TargetSpec(_MaskedRepr):
    """The ``[target]`` section.

    ``schema_evolution``: what a source column the existing target lacks does: ``"none"``
    (preflight refuses the run) or ``"add_columns"`` (the run adds it, nullable).
    """

    url: str
    table: str
    schema_evolution: Evolution = "none"


FORGET_S = 5.0
"""Seconds the ledger's forget after a success may take, its one retry included, unless
``[state] forget_timeout`` says otherwise (``runner``'s step 9)."""


@dataclass(frozen=True, slots=True, repr=False)
class StateSpec(_MaskedRepr):
    """The ``[state]`` section: the PostgreSQL database holding runs, chunks and rejects.

    ``forget_timeout``: seconds (finite, > 0) the deletion of a finished job's chunk-ledger
    rows may take once the run SUCCEEDED, its one retry included (None: ``FORGET_S``).  Only
    for a PostgreSQL target keeping that ledger (the state in another database: ``ledger``);
    anywhere else ``refuse_unused`` (and the loader) refuse it: it would do nothing.
    """

    url: str
    forget_timeout: float | None = None


def ledger(state_url: str, target_url: str) -> bool:
    """Whether a run keeps a chunk ledger beside its target (``jobs.pg_checkpoint``).

    A PostgreSQL target whose run state is in another database (``PgTarget.keeps_landed``).
    """
    return dialect_of(target_url) == "postgresql" and database_key(state_url) != database_key(
        target_url
    )


def forget_timeout_problem(spec_state: StateSpec, target_url: str) -> str | None:
    """Why ``[state] forget_timeout`` cannot be taken (not seconds > 0, or no ledger); None."""
    value = spec_state.forget_timeout
    if value is None:
        return None
    if (problem := wait_problem(value)) is not None:
        return problem
    if not ledger(spec_state.url, target_url):
        return (
            "only when the target keeps a chunk ledger (a PostgreSQL target with [state] url "
            "in another database): here nothing is left to forget after a run"
        )
    return None


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A validated mapper job.

    ``mode`` is how the target is loaded (``core.modes``): ``merge`` and ``scd2`` follow
    ``scd.type``; ``append`` and ``full_refresh`` are described there.
    """

    name: str
    source: SourceSpec
    target: TargetSpec
    state: StateSpec  # always set: [state] url, or the PostgreSQL target
    scd: ScdSpec = field(default_factory=ScdSpec)
    parallel: ParallelSpec = field(default_factory=ParallelSpec)
    on_bad_row: Literal["fail", "reject"] = "fail"
    path: str = ""
    mode: Mode = "scd2"
    retry: RetryPolicy | None = None
    """The ``[retry]`` section's policy for every database round trip of a run (chunks, the
    state tables, preflight); None: the caller's (``JobOptions.retry``, by default
    ``JOB_RETRY``)."""


def parse_job(
    text: str,
    *,
    path: str = "<job>",
    overrides: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> JobSpec:
    """Parse and validate job-file ``text``; raises ``ConfigError`` (one line) on any problem."""
    doc = parse_toml(text, Fail("job", path))
    return job_from_mapping(doc, path=path, overrides=overrides, env=env)


def job_from_mapping(
    doc: Mapping[str, Any],
    *,
    path: str = "<job>",
    overrides: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> JobSpec:
    """Validate a job given as a mapping shaped like the job file (same one-line errors).

    ``{"name": ..., "source": {...}, "target": {...}, "scd": {...}}``; raises ``ConfigError``.
    """
    fail = Fail("job", path)
    if isinstance(doc.get("jobs"), list):
        raise fail(
            "[[jobs]]",
            "this is a plan file: run it with async-etl orchestrate (run_plan from code)",
        )
    merged = env_values(env or {}, fail)
    merged.update(file_values(doc, fail))
    sets = set_values(overrides, fail)
    own_refresh = _names_refresh(merged.get(("", "mode")))
    merged.update(_refresh_keeps_type(merged, sets))
    merged.update(sets)
    values: dict[tuple[str, str], Any] = {}
    where: dict[tuple[str, str], str] = {}
    for (section, key), (raw, origin) in merged.items():
        where[(section, key)] = origin
        try:
            values[(section, key)] = check_kind(raw, SCHEMA[section][key])
        except ValueError as exc:
            raise fail(origin, str(exc)) from None
    kept = frozenset(k for k in values if k not in sets and not own_refresh)
    return _build(_Values(values, where, fail, kept), path)


def _names_refresh(given: tuple[Any, str] | None) -> bool:
    """Whether the job's own ``mode`` (file or environment) is a full refresh."""
    try:
        return given is not None and mode_of(str(given[0])) == "full_refresh"
    except ValueError:
        return False  # _mode names the bad value


def _refresh_keeps_type(merged: Gathered, sets: Gathered) -> Gathered:
    """The job's own ``[scd] type`` when ``--set mode=full_refresh`` makes it a full refresh.

    ``--full-refresh`` is that override; a ``merge`` / ``scd2`` job (or one with no ``mode``:
    type 2) keeps its type: refreshing an SCD2 job keeps ``valid_from`` / ``valid_to`` /
    ``is_current``, never rebuilds it as a type-1 table.
    """
    if ("", "mode") not in sets or ("scd", "type") in merged or ("scd", "type") in sets:
        return {}
    try:
        if mode_of(str(sets[("", "mode")][0])) != "full_refresh":
            return {}
        written = merged.get(("", "mode"))
        base = "scd2" if written is None else mode_of(str(written[0]))
    except ValueError:
        return {}  # _mode names the bad value
    if base not in ("merge", "scd2"):
        return {}
    where = "mode" if written is None else written[1]
    return {("scd", "type"): (1 if base == "merge" else 2, where)}


class _Values:
    """The merged, type-checked values plus where each came from."""

    def __init__(
        self,
        values: dict[tuple[str, str], Any],
        where: dict[tuple[str, str], str],
        fail: Fail,
        kept: frozenset[tuple[str, str]] = frozenset(),
    ) -> None:
        self.values, self.where, self.fail = values, where, fail
        # the keys a per-run full refresh sets aside: written for the job's own mode (file,
        # environment) when that is not a full refresh; a --set key is the run's own
        self.kept = kept

    def get(self, section: str, key: str, default: Any = None) -> Any:
        return self.values.get((section, key), default)

    def has(self, section: str, key: str) -> bool:
        return (section, key) in self.values

    def require(self, section: str, key: str) -> Any:
        if (section, key) not in self.values:
            label = f"[{section}] {key}" if section else key
            raise self.fail(label, f"required key is missing (or set {env_name(section, key)})")
        return self.values[(section, key)]

    def error(self, section: str, key: str, problem: str) -> ConfigError:
        label = f"[{section}] {key}" if section else key
        return self.fail(self.where.get((section, key), label), problem)


_MAX_INT = 2**63 - 1
"""The largest ``[parallel]`` number: a 64-bit integer (the run's plan and ``--json-out``)."""


def _build(v: _Values, path: str) -> JobSpec:
    name = v.require("", "name")
    if not name.strip():
        raise v.error("", "name", "must not be empty")
    on_bad_row = v.get("", "on_bad_row", "fail")
    if on_bad_row not in ("fail", "reject"):
        raise v.error("", "on_bad_row", f"expected 'fail' or 'reject', got {on_bad_row!r}")
    source = _source(v)
    evolution = v.get("target", "schema_evolution", "none")
    if evolution not in ("none", "add_columns"):
        raise v.error("target", "schema_evolution",
                      f"expected 'none' or 'add_columns', got {evolution!r}")  # fmt: skip
    target = TargetSpec(url=_url(v, "target", ("postgresql", "oracle", "cratedb")),
                        table=v.require("target", "table"), schema_evolution=evolution)  # fmt: skip
    mode, scd = _mode(v, source)
    workers = v.get("parallel", "max_workers", 4)
    low, high = parse_auto(workers) if isinstance(workers, str) else (1, workers)
    parallel = ParallelSpec(
        enabled=v.get("parallel", "enabled", True),
        max_workers=high,
        chunk_size=v.get("parallel", "chunk_size", None),  # unset: the run picks it
        min_rows_for_parallel=v.get("parallel", "min_rows_for_parallel", 100_000),
        adaptive=isinstance(workers, str),
        min_workers=low,
    )
    for key, low in (("max_workers", 1), ("chunk_size", 1), ("min_rows_for_parallel", 0)):
        value = getattr(parallel, key)
        if value is not None and value < low:  # chunk_size None: unset
            raise v.error("parallel", key, f"must be >= {low}, got {value}")
        if value is not None and value > _MAX_INT:  # stored with the run, written as JSON
            raise v.error("parallel", key, f"must be <= {_MAX_INT:,}, got {value:,}")
    if v.has("state", "url"):
        state_url = _url(v, "state", ("postgresql",))
    elif dialect_of(target.url) == "postgresql":
        state_url = target.url
    else:
        raise v.fail("[state] url", "required when the target is not PostgreSQL "
                     f"(target is {mask_url(target.url)})")  # fmt: skip
    state = StateSpec(url=state_url, forget_timeout=v.get("state", "forget_timeout"))
    if (problem := forget_timeout_problem(state, target.url)) is not None:
        raise v.error("state", "forget_timeout", problem)
    if mode == "append" and (
        dialect_of(target.url) != "postgresql"
        or database_key(state.url) != database_key(target.url)
    ):
        raise v.error("", "mode", "append is exactly once only into a PostgreSQL target "
                      "whose database also holds the run state (each chunk commits with "
                      "its checkpoint): use a PostgreSQL target, [state] url unset")  # fmt: skip
    return JobSpec(name=name, source=source, target=target, scd=scd, parallel=parallel,
                   state=state, on_bad_row=on_bad_row, path=path, mode=mode,
                   retry=_retry(v))  # fmt: skip


def _retry(v: _Values) -> RetryPolicy | None:
    """The ``[retry]`` section as a ``RetryPolicy`` (the plan file's keys); None if absent.

    ``max_attempts`` (>= 1) tries per round trip, ``strategy`` exponential | linear | fixed,
    ``base_delay`` / ``max_delay`` in seconds (>= 0): the defaults are ``JOB_RETRY``'s.
    """
    if not any(s == "retry" for s, _ in v.values):
        return None
    attempts = v.get("retry", "max_attempts", JOB_RETRY.max_retries + 1)
    if attempts < 1:
        raise v.error("retry", "max_attempts", f"must be >= 1, got {attempts}")
    strategy = v.get("retry", "strategy", JOB_RETRY.strategy)
    if strategy not in STRATEGIES:
        raise v.error("retry", "strategy",
                      f"expected {' | '.join(STRATEGIES)}, got {strategy!r}")  # fmt: skip
    base = v.get("retry", "base_delay", JOB_RETRY.base)
    cap = v.get("retry", "max_delay", JOB_RETRY.cap)
    for key, value in (("base_delay", base), ("max_delay", cap)):
        if value < 0:
            raise v.error("retry", key, f"must be >= 0, got {value}")
    problem = delays_problem(base, cap) if v.has("retry", "base_delay") else None
    if problem is not None:  # max_delay alone below the default base: every wait is max_delay
        raise v.error("retry", "base_delay", problem)
    return RetryPolicy.from_attempts(attempts, base, cap, strategy)


def _mode(v: _Values, source: SourceSpec) -> tuple[Mode, ScdSpec]:
    """The load mode and the ``[scd]`` settings it implies.

    ``merge`` / ``scd2`` set ``[scd] type`` (a different type given too is an error);
    ``append`` takes no ``[scd]`` key; ``full_refresh`` keeps the table shape of
    ``[scd] type`` (1 unless given; ``--set mode=full_refresh`` over a ``merge`` / ``scd2`` job
    keeps that job's type, ``_refresh_keeps_type``).  It compares nothing: ``[scd]``
    deletes / tracked / overwrite are refused in a job whose own mode it is (or set with
    ``--set`` for the run), and set aside when the run's override makes it one.
    """
    if not v.has("", "mode"):
        scd = _scd(v, source)
        return ("merge" if scd.type == 1 else "scd2"), scd
    try:
        mode = mode_of(v.get("", "mode"))
    except ValueError as exc:
        raise v.error("", "mode", str(exc)) from None
    given = sorted(k for (s, k) in v.values if s == "scd")
    if mode in ("merge", "scd2"):
        kind = 1 if mode == "merge" else 2
        if v.get("scd", "type", kind) != kind:
            raise v.error("scd", "type", f"mode {mode} is SCD type {kind}, "
                          f"got type {v.get('scd', 'type')}")  # fmt: skip
        v.values[("scd", "type")] = kind
        return mode, _scd(v, source)
    if mode == "append":
        if given:
            raise v.error("scd", given[0], "mode append takes no [scd] keys "
                          "(rows are inserted, never compared)")  # fmt: skip
        if source.incremental is not None:
            raise v.error("source", "incremental", "not with mode append: an incremental "
                          "run re-reads the rows at its cursor (>=, look-back) and those with "
                          "a NULL cursor, which append would insert again")  # fmt: skip
        return mode, ScdSpec(type=1, business_key=source.key)
    if source.incremental is not None:
        raise v.error("", "mode", "full_refresh reads the whole source: remove "
                      "[source] incremental")  # fmt: skip
    v.values.setdefault(("scd", "type"), 1)
    for key in COMPARISON_KEYS:  # the fresh table holds the source's rows: nothing compared
        if ("scd", key) not in v.values:
            continue
        if ("scd", key) not in v.kept:
            raise v.error("scd", key, REFRESH_COMPARES)
        del v.values[("scd", key)]  # --full-refresh of a merge / scd2 job: not for this run
    return mode, _scd(v, source)


def _url(v: _Values, section: str, dialects: tuple[str, ...]) -> str:
    url: str = v.require(section, "url")
    if dialect_of(url) not in dialects:
        raise v.error(section, "url", f"{mask_url(url)} cannot be a {section} "
                      f"(use {' or '.join(dialects)})")  # fmt: skip
    return url


def _source(v: _Values) -> SourceSpec:
    url = _url(v, "source", ("postgresql", "oracle"))
    query, table = v.get("source", "query"), v.get("source", "table")
    if (query is None) == (table is None):
        raise v.fail("[source] query / table", "give exactly one of them")
    dialect: Dialect = "oracle" if dialect_of(url) == "oracle" else "postgresql"
    if query is not None:
        try:
            query = source_query(query, dialect)
        except SqlTextError as exc:
            raise v.error("source", "query", str(exc)) from None
    incremental = v.get("source", "incremental")
    if incremental is not None and query is not None and limits_rows(query, dialect):
        # the window wraps the query, so the limit picks its rows before the cursor filters
        # them: the cursor would stop at the top of the first rows and never move again
        also = " / ROWNUM / SAMPLE" if dialect == "oracle" else ""
        raise v.error("source", "incremental", "not with a source query that has a top-level "
                      f"LIMIT / OFFSET / FETCH{also}: the window is applied around the query, "
                      "after the limit, so the cursor would stop at the limited rows and later "
                      "rows would never be read; remove the limit")  # fmt: skip
    lookback = v.get("source", "lookback", 0)
    if lookback < 0:
        raise v.error("source", "lookback", f"must be >= 0, got {lookback}")
    if v.has("source", "lookback") and incremental is None:
        raise v.error("source", "lookback", "only with [source] incremental")
    return SourceSpec(url=url, key=v.require("source", "key"), query=query, table=table,
                      incremental=incremental, lookback=lookback)  # fmt: skip


def _scd(v: _Values, source: SourceSpec) -> ScdSpec:
    kind = v.get("scd", "type", 2)
    if kind not in (1, 2):
        raise v.error("scd", "type", f"must be 1 or 2, got {kind}")
    bkey: tuple[str, ...] = v.get("scd", "business_key", source.key)
    if not set(source.key) <= set(bkey):
        raise v.error("scd", "business_key", f"must include every [source] key column "
                      f"({', '.join(source.key)}) so each key stays in one chunk")  # fmt: skip
    deletes = v.get("scd", "deletes", "ignore")
    allowed = ("ignore", "expire") if kind == 2 else ("ignore", "delete")
    if deletes not in allowed:
        raise v.error("scd", "deletes", f"type {kind} allows {' | '.join(allowed)}, "
                      f"got {deletes!r}")  # fmt: skip
    if source.incremental is not None and deletes != "ignore":
        raise v.error("scd", "deletes", f"{deletes!r} cannot be used with [source] incremental: "
                      "an incremental run reads only rows past its cursor, so a missing key "
                      "is not a deleted one; use 'ignore', or a full (non-incremental) "
                      "job to detect deletes")  # fmt: skip
    tracked: tuple[str, ...] | None = v.get("scd", "tracked")
    overwrite: tuple[str, ...] = v.get("scd", "overwrite", ())
    if overwrite and kind == 1:
        raise v.error("scd", "overwrite", "only for type 2 (type 1 overwrites every column)")
    keys = set(bkey) | set(source.key)
    for key, cols in (("tracked", tracked or ()), ("overwrite", overwrite)):
        inside = [c for c in cols if c in keys]
        if inside:
            raise v.error("scd", key, f"must not contain key column(s) {', '.join(inside)}")
    both = sorted(set(tracked or ()) & set(overwrite))
    if both:
        raise v.error("scd", "overwrite", f"{', '.join(both)} also in tracked")
    names = {k: v.get("scd", k, k) for k in ("valid_from", "valid_to", "is_current")}
    named = [k for k in names if v.has("scd", k)]
    if named and kind == 1:  # accepted, they would name columns a type-1 target never has
        raise v.error("scd", named[0], "only for type 2 (a type-1 target has no validity "
                      "columns)")  # fmt: skip
    used = keys | set(tracked or ()) | set(overwrite)
    for key, col in names.items():
        if col in used or list(names.values()).count(col) > 1:
            raise v.error("scd", key, f"column name {col!r} is already used")
    return ScdSpec(type=kind, business_key=bkey, tracked=tracked, overwrite=overwrite,
                   deletes=deletes, **names)  # fmt: skip


def refuse_unused(spec: JobSpec) -> None:
    """Raise ``ConfigError`` when ``spec`` carries a setting its mode never uses.

    For a ``JobSpec`` built in code (the loader refuses the same in a job file, naming it):
    a ``full_refresh`` with ``ScdSpec`` deletes / tracked / overwrite (``core.modes``), and a
    ``StateSpec.forget_timeout`` that is not seconds > 0 or has no ledger to bound.
    """
    problem = refresh_compares(spec.mode, spec.scd)
    if problem is not None:
        raise ConfigError(f"job {spec.name}: {problem}")
    if (problem := forget_timeout_problem(spec.state, spec.target.url)) is not None:
        raise ConfigError(f"job {spec.name}: [state] forget_timeout: {problem}")


def load_job(
    path: str | Path,
    *,
    overrides: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> JobSpec:
    """Read and validate the job file at ``path`` (see ``parse_job``).

    Raises ``ConfigError`` when the file cannot be read or is invalid.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"job file {path}: cannot read it: {exc}") from exc
    return parse_job(text, path=str(path), overrides=overrides, env=env)
