"""Bench settings: built once at the edge (flags > environment > defaults), validated, frozen.

The core never reads the environment; the CLI (or an embedding app) calls
``bench_settings(flags, os.environ)`` and passes the frozen result down.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from async_etl.core.coerce import PARSERS, coerce, did_you_mean
from async_etl.core.schedule import RateSchedule
from async_etl.core.urls import METRICS_HOST as METRICS_HOST  # its home; kept here too
from async_etl.errors import ConfigError

LogFormat = Literal["auto", "console", "json"]
ENV_PREFIX = "ASYNC_ETL_BENCH_"
DEFAULT_RECORDS = 1_000_000
MAX_IDENTIFIER = 63
MAX_ID = 2**63 - 1
"""The largest id a bench row can have: PostgreSQL's and CrateDB's ``bigint``."""
MAX_SLOTS = 65535
"""The most batches in flight: each holds a connection, and one host has 65,535 ports."""
"""PostgreSQL's identifier length (NAMEDATALEN - 1): a longer name is truncated silently."""
_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


@dataclass(frozen=True, slots=True)
class BenchSettings:
    """Everything one ``bench`` run needs; defaults are what ``async-etl bench`` uses."""

    sink: str | None = None
    table: str = "async_etl_bench"
    records: int | None = DEFAULT_RECORDS
    duration: float | None = None
    rate: float | None = None
    ramp: str | None = None
    batch_size: int = 5000
    concurrency: int = 8
    adaptive: bool = False
    concurrency_min: int = 1
    concurrency_max: int = 64
    generators: int = dataclasses.field(default_factory=lambda: os.cpu_count() or 1)
    seed: int = 42
    schema_file: str | None = None
    payload_bytes: int = 0
    max_retries: int = 5
    retry_base: float = 0.05
    retry_cap: float = 5.0
    report_interval: float = 1.0
    warmup: float = 0.0
    log_format: LogFormat = "auto"
    json_out: str | None = None
    uvloop: bool = True
    unlogged: bool = False
    mode: Literal["async", "threads"] = "async"
    gzip_threshold: int = 8192
    request_timeout: float = 60.0
    metrics_port: int | None = None
    metrics_host: str = METRICS_HOST
    ray: str | None = None  # None: local engine; "local", "auto", HOST:PORT or ray://HOST:PORT
    ray_actors: int = 2
    processes: int = 0  # 0: one engine here; N: N shared-nothing worker processes

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # nan passes every comparison below; inf runs forever
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                flag = "--" + f.name.replace("_", "-")
                raise ConfigError(f"{flag}: must be a finite number, got {value!r}")
        _check(self.ray_actors >= 1, "--ray-actors", "must be >= 1", self.ray_actors)
        _check(self.processes >= 0, "--processes", "must be >= 0", self.processes)
        most = max_processes()
        _check(self.processes <= most, "--processes",
               f"at most {most} ({PROCESSES_PER_CPU} per CPU here)", self.processes)  # fmt: skip
        for scale_out, on in (("--ray", self.ray is not None), ("--processes", self.processes)):
            if not on:
                continue
            for given, flag in (
                (self.rate is not None or self.ramp is not None, "--rate / --ramp"),
                (self.adaptive, "--concurrency auto"),
                (self.metrics_port is not None, "--metrics-port"),
                (self.mode == "threads", "--mode threads"),
                (scale_out == "--processes" and self.ray is not None, "--ray"),
            ):
                if given:
                    raise ConfigError(f"{flag} is not supported with {scale_out} yet")
        _check(self.batch_size >= 1, "--batch-size", "must be >= 1", self.batch_size)
        _check(self.concurrency >= 1, "--concurrency", "must be >= 1", self.concurrency)
        _check(
            1 <= self.concurrency_min <= self.concurrency_max,
            "--concurrency auto:MIN-MAX",
            "needs 1 <= MIN <= MAX",
            f"{self.concurrency_min}-{self.concurrency_max}",
        )
        _check(self.generators >= 0, "--generators", "must be >= 0", self.generators)
        _check(self.generators <= most, "--generators",
               f"at most {most} ({PROCESSES_PER_CPU} per CPU here)", self.generators)  # fmt: skip
        _check(self.max_retries >= 0, "--max-retries", "must be >= 0", self.max_retries)
        _check(self.payload_bytes >= 0, "--payload-bytes", "must be >= 0", self.payload_bytes)
        _check(self.gzip_threshold >= 0, "--gzip-threshold", "must be >= 0 (0: never)",
               self.gzip_threshold)  # fmt: skip
        _check(self.report_interval > 0, "--report-interval", "must be > 0", self.report_interval)
        _check(self.warmup >= 0, "--warmup", "must be >= 0", self.warmup)
        _check(self.retry_base >= 0, "retry_base", "must be >= 0", self.retry_base)
        _check(self.retry_cap >= 0, "retry_cap", "must be >= 0", self.retry_cap)
        _check(self.request_timeout > 0, "request_timeout", "must be > 0", self.request_timeout)
        _check(bool(_TABLE.match(self.table)), "--table", "must be name or schema.name", self.table)
        _check(
            all(len(part) <= MAX_IDENTIFIER for part in self.table.split(".")),
            "--table",
            f"a name longer than {MAX_IDENTIFIER} characters (PostgreSQL would cut it short)",
            self.table,
        )
        if self.records is not None:
            _check(self.records >= 0, "--records", "must be >= 0", self.records)
            _check(self.records <= MAX_ID, "--records",
                   f"at most {MAX_ID} (ids are bigint, from 1)", self.records)  # fmt: skip
        for flag, slots in (("--concurrency", self.concurrency),
                            ("--concurrency auto:MIN-MAX", self.concurrency_max)):  # fmt: skip
            _check(slots <= MAX_SLOTS, flag,
                   f"at most {MAX_SLOTS} (one connection each, from one host)", slots)  # fmt: skip
        if self.rate is not None:
            _check(self.rate <= MAX_ID, "--rate",
                   f"at most {MAX_ID} rows/s (ids are bigint)", self.rate)  # fmt: skip
        if self.duration is not None:
            _check(self.duration > 0, "--duration", "must be > 0", self.duration)
        if self.metrics_port is not None:
            _check(
                0 <= self.metrics_port <= 65535,
                "--metrics-port",
                "must be a port number (0-65535)",
                self.metrics_port,
            )
        _check(
            self.log_format in get_args(LogFormat),
            "--log-format",
            "must be auto, console or json",
            self.log_format,
        )
        _check(self.mode in ("async", "threads"), "--mode", "must be async or threads", self.mode)
        if self.adaptive:
            _check(self.mode == "async", "--concurrency auto", "needs --mode async", self.mode)
        self._check_rate()
        self._check_warmup()

    def _check_warmup(self) -> None:
        """A warm-up as long as the run never ends: the figures would silently include it.

        The run's length is ``--duration`` or the ramp's; a ``--records`` run has none known.
        ``sweep`` refuses the same for its steps.
        """
        length = self.duration
        if length is None and self.ramp is not None and (schedule := self.schedule) is not None:
            length = schedule.seconds
        if length is not None and self.warmup > 0:
            _check(
                self.warmup < length,
                "--warmup",
                f"must be shorter than the run ({length:g} s): the figures would include it",
                self.warmup,
            )

    def _check_rate(self) -> None:
        if self.rate is None and self.ramp is None:
            return
        flag = "--rate" if self.ramp is None else "--ramp"
        _check(self.mode == "async", flag, "needs --mode async", self.mode)
        _check(self.rate is None or self.ramp is None, "--rate", "or --ramp, not both", self.rate)
        _check(
            self.ramp is None or self.duration is None,
            "--ramp",
            "sets its own duration: drop --duration",
            self.duration,
        )
        try:
            _ = self.schedule
        except ValueError as exc:
            raise ConfigError(f"{flag}: {exc}") from None

    @property
    def schedule(self) -> RateSchedule | None:
        """The open-loop schedule of ``--rate`` / ``--ramp`` (None: closed loop).

        Raises ``ValueError`` for a malformed ramp or a rate <= 0.
        """
        if self.ramp is not None:
            return RateSchedule.parse_ramp(self.ramp)
        if self.rate is not None:
            return RateSchedule.constant(self.rate, self.duration)
        return None

    @property
    def pool_size(self) -> int:
        """Connections a sink may need: the most batches that can ever be in flight."""
        return self.concurrency_max if self.adaptive else self.concurrency

    def replace(self, **changes: Any) -> BenchSettings:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)


PROCESSES_PER_CPU = 4
"""``--processes`` and ``-j`` / ``--generators`` are refused above this many processes per CPU:
each is a Python interpreter (a worker with its own event loop and sink connections, or a
generator), started before the first batch, so a mistyped N (``100000``) would fork-bomb the
machine; more processes than cores only add contention."""


def max_processes() -> int:
    """The most ``--processes`` (or ``-j``) this machine accepts (``PROCESSES_PER_CPU`` per CPU)."""
    return PROCESSES_PER_CPU * (os.cpu_count() or 1)


def _check(ok: bool, name: str, rule: str, value: object) -> None:
    if not ok:
        raise ConfigError(f"{name}: {rule}, got {value!r}")


def _kind(hint: Any) -> tuple[type, tuple[str, ...] | None]:
    """A field's annotation as (value type in ``PARSERS``, allowed values or None).

    ``int | None`` -> ``(int, None)``; ``Literal["a", "b"]`` -> ``(str, ("a", "b"))``.
    """
    if get_origin(hint) in (Union, types.UnionType):
        (hint,) = [arg for arg in get_args(hint) if arg is not type(None)]
    if get_origin(hint) is Literal:
        return str, tuple(str(arg) for arg in get_args(hint))
    if hint not in PARSERS:
        raise TypeError(f"BenchSettings: no parser for {hint!r}")
    return hint, None


ENV_KINDS: dict[str, tuple[type, tuple[str, ...] | None]] = {
    name: _kind(hint)
    for name, hint in get_type_hints(BenchSettings).items()
    if name in {f.name for f in dataclasses.fields(BenchSettings)}
}
"""Each ``BenchSettings`` field's value type and choices, read from its annotation."""


def _coerce(name: str, raw: str, source: str) -> Any:
    """An environment string as field ``name``'s type, or a one-line ConfigError naming it."""
    kind, choices = ENV_KINDS[name]
    try:
        return coerce(raw, kind, choices)
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def parse_concurrency(text: str, source: str = "--concurrency") -> dict[str, Any]:
    """``"16"`` or ``"auto"`` / ``"auto:MIN-MAX"`` as BenchSettings fields.

    ``auto`` starts at MIN (default 1) and lets the adaptive controller move the limit within
    [MIN, MAX] (default 1-64).  Raises ``ConfigError`` naming ``source`` for anything else.
    """
    raw = text.strip().lower()
    if raw.isdigit():
        return {"concurrency": int(raw), "adaptive": False}
    match = re.fullmatch(r"auto(?::(\d+)-(\d+))?", raw)
    if match is None:
        raise ConfigError(f"{source}: expected a number, auto or auto:MIN-MAX, got {text!r}")
    low, high = (int(match[1]), int(match[2])) if match[1] else (1, 64)
    return {"adaptive": True, "concurrency_min": low, "concurrency_max": high, "concurrency": low}


def bench_settings(flags: Mapping[str, Any], env: Mapping[str, str]) -> BenchSettings:
    """Merge command-line ``flags`` (None = not given) over ``ASYNC_ETL_BENCH_*`` env over defaults.

    Raises ``ConfigError`` naming the flag or variable at fault.
    """
    fields = {f.name: f for f in dataclasses.fields(BenchSettings)}
    values: dict[str, Any] = {}
    known = {ENV_PREFIX + name.upper() for name in fields}
    for var in sorted(v for v in env if v.startswith(ENV_PREFIX) and v not in known):
        hint = did_you_mean(var, sorted(known))
        raise ConfigError(f"{var}: unknown setting{hint}")
    for name in fields:
        var = ENV_PREFIX + name.upper()
        if var in env and name == "concurrency":
            values.update(parse_concurrency(env[var], var))
        elif var in env:
            values[name] = _coerce(name, env[var], var)
    for name, value in flags.items():
        if name not in fields:
            raise ConfigError(f"unknown setting {name!r}")
        if name == "concurrency" and isinstance(value, str):
            values.update(parse_concurrency(value))
        elif value is not None:
            values[name] = value
    if (
        (values.get("duration") is not None or values.get("ramp") is not None)
        and flags.get("records") is None
        and (ENV_PREFIX + "RECORDS" not in env)
    ):
        values["records"] = None  # --duration (or --ramp) alone runs until the deadline
    return BenchSettings(**values)
