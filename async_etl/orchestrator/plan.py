"""The plan file: its frozen model and a validating parser.

``parse_plan`` turns plan-file text into a ``Plan`` and raises ``ConfigError`` with one line
naming the file and the key for every problem (unknown key, bad value, missing job file,
duplicate job name, unknown dependency, dependency cycle).  Job files are read through an
injected ``JobLoader``, so parsing itself stays pure; ``load_plan`` wires in the real one.

Plan keys (``name``, ``local_max``, ``global_max``, ``state``, ``[retry]``, ``[[jobs]] file`` /
``depends_on``) are fixed by the issue; the extras are ``namespace`` (which global slot pool the
plan draws from, default ``"default"``: shared by every plan on the same state store),
``[retry] max_delay``, ``[budgets]`` (URL = connections, ``default`` = N), ``[breaker]``
(``threshold``, ``cooldown``) and the synthetic ``kind = "sleep"`` job (see ``synthetic.py``).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

from async_etl.core import tomltext
from async_etl.core.coerce import did_you_mean
from async_etl.core.dag import find_cycle
from async_etl.core.retry import STRATEGIES, RetryPolicy, Strategy, delays_problem
from async_etl.core.urls import dialect_of, mask_url, url_problem
from async_etl.errors import ConfigError, ErrorKind, Fail
from async_etl.jobs.budget import database_key
from async_etl.jobs.spec import JobSpec, load_job

JobLoader = Callable[[Path], JobSpec]
"""Reads one job file; raises ``FileNotFoundError`` when it is missing, ``ConfigError`` if bad."""

_KEYS: dict[str, frozenset[str]] = {
    "": frozenset(
        {
            "name",
            "local_max",
            "global_max",
            "state",
            "namespace",
            "retry",
            "budgets",
            "breaker",
            "jobs",
        }
    ),
    "retry": frozenset({"max_attempts", "strategy", "base_delay", "max_delay"}),
    "breaker": frozenset({"threshold", "cooldown"}),
    "jobs": frozenset(
        {
            "file",
            "depends_on",
            "name",
            "kind",
            "seconds",
            "fail_times",
            "fail_kind",
            "connections",
            "target",
            "rows",
        }
    ),
}
_SYNTHETIC_ONLY = ("name", "seconds", "fail_times", "fail_kind", "connections", "target", "rows")


@dataclass(frozen=True, slots=True)
class RetrySettings:
    """The ``[retry]`` section: attempts per job for transient failures, and the backoff."""

    max_attempts: int = 3
    strategy: Strategy = "exponential"
    base_delay: float = 1.0
    max_delay: float = 60.0

    def policy(self) -> RetryPolicy:
        """The equivalent ``RetryPolicy`` (full jitter; ``max_retries = max_attempts - 1``)."""
        return RetryPolicy.from_attempts(
            self.max_attempts, self.base_delay, self.max_delay, self.strategy
        )


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """The ``[breaker]`` section: open after ``threshold`` failures, trial after ``cooldown``."""

    threshold: int = 3
    cooldown: float = 30.0


@dataclass(frozen=True, slots=True)
class SyntheticJob:
    """A ``kind = "sleep"`` job: holds connections, sleeps, maybe fails its first attempts."""

    seconds: float = 0.0
    fail_times: int = 0
    fail_kind: ErrorKind = ErrorKind.NETWORK
    connections: int = 0
    rows: int = 0


@dataclass(frozen=True, slots=True)
class PlanJob:
    """One ``[[jobs]]`` entry: a mapper job (``spec``) or a synthetic one (``synthetic``).

    ``target`` is the URL of the database the job writes to (its breaker is keyed by
    ``async_etl.jobs.budget.database_key(target)``).
    """

    name: str
    target: str
    depends_on: tuple[str, ...] = ()
    spec: JobSpec | None = None
    synthetic: SyntheticJob | None = None
    file: str | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """A validated plan: limits, retry policy, budgets, breaker settings and the job graph."""

    name: str
    state: str
    jobs: tuple[PlanJob, ...]
    local_max: int = 4
    global_max: int | None = None  # None: no global limit (no slot connections)
    namespace: str = "default"
    retry: RetrySettings = field(default_factory=RetrySettings)
    breaker: BreakerSettings = field(default_factory=BreakerSettings)
    budgets: Mapping[str, int] = field(default_factory=dict)  # URL -> connections
    default_budget: int = 16
    path: str = "<plan>"

    def deps(self) -> dict[str, tuple[str, ...]]:
        """Every job name mapped to its dependencies (plan order)."""
        return {job.name: job.depends_on for job in self.jobs}

    def job(self, name: str) -> PlanJob:
        """The job called ``name``; raises ``KeyError`` if there is none."""
        for job in self.jobs:
            if job.name == name:
                return job
        raise KeyError(name)

    def with_limits(self, *, local_max: int | None, global_max: int | None) -> Plan:
        """The plan with command-line limits applied; raises ``ConfigError`` if one is < 1."""
        for flag, value in (("--local-max", local_max), ("--global-max", global_max)):
            if value is not None and value < 1:
                raise ConfigError(f"{flag}: must be >= 1, got {value}")
        return replace(
            self, local_max=local_max or self.local_max, global_max=global_max or self.global_max
        )


def _get(
    table: Mapping[str, Any],
    key: str,
    kind: type | tuple[type, ...],
    where: str,
    fail: Fail,
    default: Any = None,
) -> Any:
    if key not in table:
        return default
    value: Any = table[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise fail(f"{where}{key}", f"expected {names}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):  # TOML's nan / inf
        raise fail(f"{where}{key}", f"must be a finite number, got {value!r}")
    return float(cast(float, value)) if float in kinds else value


def _check_keys(table: Mapping[str, Any], section: str, where: str, fail: Fail) -> None:
    allowed = _KEYS[section]
    for key in table:
        if key not in allowed:
            raise fail(f"{where}{key}", "unknown key" + did_you_mean(key, sorted(allowed)))


def _at_least(value: Any, low: float, where: str, fail: Fail) -> None:
    if value is not None and value < low:
        raise fail(where, f"must be >= {low}, got {value}")


def parse_plan(text: str, *, path: str, base_dir: Path, load: JobLoader) -> Plan:
    """Parse and validate plan ``text``; job files resolve against ``base_dir``.

    Raises ``ConfigError`` (one line naming the file and key) on any problem.
    """
    try:
        doc = tomltext.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise Fail("plan", path)("TOML", str(exc)) from None
    return plan_from_mapping(doc, path=path, base_dir=base_dir, load=load)


def plan_from_mapping(
    doc: Mapping[str, Any], *, path: str = "<plan>", base_dir: Path, load: JobLoader
) -> Plan:
    """Validate a plan given as a mapping shaped like the plan file (same one-line errors).

    ``[[jobs]]`` is the ``"jobs"`` list of mappings.  Raises ``ConfigError`` naming the key.
    """
    fail = Fail("plan", path)
    if "jobs" not in doc and isinstance(doc.get("source"), dict):
        raise fail("[source]", "this is a job file: run it with async-etl run (run_job from code)")
    _check_keys(doc, "", "", fail)
    name = _get(doc, "name", str, "", fail)
    if not name or not name.strip():
        raise fail("name", "required key is missing or empty")
    state = _get(doc, "state", str, "", fail)
    if state is None:
        raise fail("state", "required key is missing (the PostgreSQL state store URL)")
    if dialect_of(state) != "postgresql":
        raise fail("state", f"{mask_url(state)} is not a postgresql:// URL")
    if (problem := url_problem(state)) is not None:
        raise fail("state", f"{mask_url(state)}: {problem}")
    local_max = _get(doc, "local_max", int, "", fail, 4)
    global_max = _get(doc, "global_max", int, "", fail)
    _at_least(local_max, 1, "local_max", fail)
    _at_least(global_max, 1, "global_max", fail)
    namespace = _get(doc, "namespace", str, "", fail, "default")
    retry = _retry(_table(doc, "retry", fail), fail)
    breaker = _breaker(_table(doc, "breaker", fail), fail)
    budgets, default_budget = _budgets(_table(doc, "budgets", fail), fail)
    raw_jobs = doc.get("jobs", [])
    if not isinstance(raw_jobs, list) or not all(isinstance(j, dict) for j in raw_jobs):
        raise fail("jobs", "expected [[jobs]] tables")
    if not raw_jobs:
        raise fail("jobs", "the plan has no [[jobs]], so it would run nothing and report success")
    jobs = tuple(_job(j, i, base_dir, state, load, fail) for i, j in enumerate(raw_jobs))
    _check_graph(jobs, fail)
    _check_budgets(budgets, jobs, state, fail)
    return Plan(
        name=name,
        state=state,
        jobs=jobs,
        local_max=local_max,
        global_max=global_max,
        namespace=namespace,
        retry=retry,
        breaker=breaker,
        budgets=budgets,
        default_budget=default_budget,
        path=path,
    )


def _table(doc: Mapping[str, Any], key: str, fail: Fail) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise fail(key, "expected a table")
    return value


def _retry(t: dict[str, Any], fail: Fail) -> RetrySettings:
    _check_keys(t, "retry", "[retry] ", fail)
    strategy = _get(t, "strategy", str, "[retry] ", fail, "exponential")
    if strategy not in STRATEGIES:
        raise fail("[retry] strategy", f"expected {' | '.join(STRATEGIES)}, got {strategy!r}")
    out = RetrySettings(
        max_attempts=_get(t, "max_attempts", int, "[retry] ", fail, 3),
        strategy=strategy,
        base_delay=_get(t, "base_delay", (int, float), "[retry] ", fail, 1.0),
        max_delay=_get(t, "max_delay", (int, float), "[retry] ", fail, 60.0),
    )
    _at_least(out.max_attempts, 1, "[retry] max_attempts", fail)
    _at_least(out.base_delay, 0, "[retry] base_delay", fail)
    _at_least(out.max_delay, 0, "[retry] max_delay", fail)
    problem = delays_problem(out.base_delay, out.max_delay) if "base_delay" in t else None
    if problem is not None:  # max_delay alone below the default base: every wait is max_delay
        raise fail("[retry] base_delay", problem)
    return out


def _breaker(t: dict[str, Any], fail: Fail) -> BreakerSettings:
    _check_keys(t, "breaker", "[breaker] ", fail)
    out = BreakerSettings(
        threshold=_get(t, "threshold", int, "[breaker] ", fail, 3),
        cooldown=_get(t, "cooldown", (int, float), "[breaker] ", fail, 30.0),
    )
    _at_least(out.threshold, 1, "[breaker] threshold", fail)
    _at_least(out.cooldown, 0, "[breaker] cooldown", fail)
    return out


def _budgets(t: dict[str, Any], fail: Fail) -> tuple[dict[str, int], int]:
    default = _get(t, "default", int, "[budgets] ", fail, 16)
    _at_least(default, 1, "[budgets] default", fail)
    out: dict[str, int] = {}
    for url in t:
        if url == "default":
            continue
        if dialect_of(url) is None:
            raise fail(f"[budgets] {mask_url(url)}", "expected a database URL or 'default'")
        where, value = f"[budgets] {mask_url(url)}", t[url]
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail(where, f"expected int, got {value!r}")
        _at_least(value, 1, where, fail)
        out[url] = value
    return out, default


def _job(t: dict[str, Any], i: int, base: Path, state: str, load: JobLoader, fail: Fail) -> PlanJob:
    where = f"jobs[{i}]."
    _check_keys(t, "jobs", where, fail)
    depends = _get(t, "depends_on", list, where, fail, [])
    if not all(isinstance(d, str) for d in depends):
        raise fail(f"{where}depends_on", "expected a list of job names")
    kind = _get(t, "kind", str, where, fail, "mapper")
    if kind == "sleep":
        return _synthetic(t, where, tuple(depends), fail)
    if kind != "mapper":
        raise fail(f"{where}kind", f"expected 'mapper' or 'sleep', got {kind!r}")
    extra = [k for k in _SYNTHETIC_ONLY if k in t]
    if extra:
        raise fail(f"{where}{extra[0]}", 'only for kind = "sleep" jobs')
    file = _get(t, "file", str, where, fail)
    if file is None:
        raise fail(f"{where}file", "required key is missing")
    job_path = (base / file) if not Path(file).is_absolute() else Path(file)
    try:
        spec = load(job_path)
    except FileNotFoundError:
        raise fail(f"{where}file", f"job file {job_path} does not exist") from None
    except ConfigError as exc:
        raise fail(f"{where}file", exc.message) from None
    return PlanJob(
        name=spec.name,
        target=spec.target.url,
        depends_on=tuple(depends),
        spec=spec,
        file=str(job_path),
    )


def _synthetic(t: dict[str, Any], where: str, depends: tuple[str, ...], fail: Fail) -> PlanJob:
    if "file" in t:
        raise fail(f"{where}file", 'a kind = "sleep" job has no job file')
    name = _get(t, "name", str, where, fail)
    if not name:
        raise fail(f"{where}name", 'required for kind = "sleep" jobs')
    fail_kind = _get(t, "fail_kind", str, where, fail, ErrorKind.NETWORK.value)
    try:
        kind = ErrorKind(fail_kind)
    except ValueError:
        kinds = " | ".join(k.value for k in ErrorKind)
        raise fail(f"{where}fail_kind", f"expected {kinds}, got {fail_kind!r}") from None
    job = SyntheticJob(
        seconds=_get(t, "seconds", (int, float), where, fail, 0.0),
        fail_times=_get(t, "fail_times", int, where, fail, 0),
        fail_kind=kind,
        connections=_get(t, "connections", int, where, fail, 0),
        rows=_get(t, "rows", int, where, fail, 0),
    )
    for key in ("seconds", "fail_times", "connections", "rows"):
        _at_least(getattr(job, key), 0, f"{where}{key}", fail)
    target = _get(t, "target", str, where, fail, "synthetic://local")
    if job.connections and dialect_of(target) != "postgresql":
        raise fail(f"{where}target", "connections need a postgresql:// target")
    return PlanJob(name=name, target=target, depends_on=depends, synthetic=job)


def _check_budgets(
    budgets: Mapping[str, int], jobs: tuple[PlanJob, ...], state: str, fail: Fail
) -> None:
    """Refuse a ``[budgets]`` URL that no job (source, target, state) nor the plan uses.

    Budgets are matched by ``database_key``; a misspelt URL would leave the database it meant
    without a limit, without a word.
    """
    used = {database_key(state)}
    for job in jobs:
        if job.spec is None:
            used.add(database_key(job.target))
        else:
            urls = (job.spec.source.url, job.spec.target.url, job.spec.state.url)
            used.update(database_key(u) for u in urls)
    for url in budgets:
        key = database_key(url)
        if key not in used:
            raise fail(f"[budgets] {mask_url(url)}", "no job of the plan uses this database, "
                       "so it would limit nothing" + did_you_mean(key, sorted(used)))  # fmt: skip


def _check_graph(jobs: tuple[PlanJob, ...], fail: Fail) -> None:
    seen: dict[str, int] = {}
    for i, job in enumerate(jobs):
        if job.name in seen:
            raise fail(
                f"jobs[{i}]", f"duplicate job name {job.name!r} (also jobs[{seen[job.name]}])"
            )
        seen[job.name] = i
    for i, job in enumerate(jobs):
        for dep in job.depends_on:
            if dep not in seen:
                raise fail(f"jobs[{i}].depends_on", f"{job.name!r} depends on unknown job {dep!r}")
    cycle = find_cycle({job.name: job.depends_on for job in jobs})
    if cycle is not None:
        raise fail("jobs", "dependency cycle: " + " -> ".join(cycle))


def _read_job(path: Path) -> JobSpec:
    if not path.is_file():
        raise FileNotFoundError(path)
    return load_job(path)


def load_plan(path: str | Path, *, load: JobLoader = _read_job) -> Plan:
    """Read and validate the plan file at ``path``; raises ``ConfigError`` (one line)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"plan file {p}: cannot read it: {exc}") from exc
    return parse_plan(text, path=str(p), base_dir=p.parent, load=load)
