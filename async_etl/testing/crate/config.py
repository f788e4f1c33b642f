"""Configuration and counters of the CrateDB stand-in."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, fields

FAULT_KINDS = ("fail", "busy", "item_fail", "drop_before", "drop_after", "auth")
"""Keys of ``Counters.faults``: 503s, 429s, per-item 5002s, drops before / after applying
the write, and refused credentials."""

HTTP_LAYERS = ("aiohttp", "lean")
"""The stand-in's HTTP layers (``StandInConfig.http``)."""


@dataclass(frozen=True, slots=True)
class StandInConfig:
    """How a stand-in behaves.

    Frozen, but the fault knobs can be changed on the running ``CrateStandIn``
    (``crate.fail_rate = 0.5``).

    - ``host`` / ``port``: where to listen; port 0 picks a free one.
    - ``version``: the CrateDB version to emulate; below 5.10.0 failed bulk items carry no
      ``error`` object, below 5.10.11 a failed single-item bulk is a top-level 409 / 4091.
    - ``latency_ms``: added to every ``/_sql`` request (the service time).
    - ``capacity``: requests served at once, the rest queue (0 = unlimited); with
      ``growth`` the service time rises with the requests in service, and every
      ``stall_every``-th request freezes the server for ``stall_ms`` (see
      ``async_etl.testing.crate.capacity``: a model of a saturating server, not CrateDB).
    - ``fail_rate`` / ``busy_rate``: fraction of requests answered 503 / 5030 or 429 / 4290
      before anything is applied.
    - ``item_fail_rate``: fraction of bulk items failing with a transient 5002 (not written).
    - ``drop_rate``: fraction of requests whose connection is dropped without a response,
      alternately before and after the statement is applied.
    - ``analysis_per_item``: a bulk of several items refused in analysis (400 / 4000
      ``SQLParseException``, e.g. one value that cannot be cast) answers 200 with that error on
      every item instead, as CrateDB 5.10.9 did (crate/crate#18067); nothing is written.
    - ``count_only``: INSERTs are arity-checked and counted, not stored (no PK uniqueness).
    - ``user`` / ``password``: when ``user`` is set, Basic auth is required.
    - ``seed``: seeds the fault random generator, for reproducible runs.
    - ``http``: the HTTP layer: ``"aiohttp"`` (default) or ``"lean"`` (``testing.crate.lean``:
      a plain asyncio Protocol, a fraction of aiohttp's CPU per request; same answers, counters
      and faults; chunked request bodies are refused with a 411).
    - ``head_timeout``: seconds the lean layer waits for a request head to complete once its
      first byte came, then answers 408 and closes (0: no limit; the aiohttp layer has none).
    """

    host: str = "127.0.0.1"
    port: int = 0
    version: str = "5.10.11"
    node_name: str = "standin-1"
    cluster_name: str = "standin"
    latency_ms: float = 0.0
    capacity: int = 0
    growth: float = 0.1
    stall_every: int = 0
    stall_ms: float = 0.0
    fail_rate: float = 0.0
    busy_rate: float = 0.0
    item_fail_rate: float = 0.0
    drop_rate: float = 0.0
    analysis_per_item: bool = False
    count_only: bool = False
    user: str | None = None
    password: str = ""
    seed: int | None = None
    max_body_bytes: int = 100 * 1024 * 1024
    parse_cache_size: int = 1024
    http: str = "aiohttp"
    head_timeout: float = 10.0

    def __post_init__(self) -> None:
        """Validate; raises ``ValueError`` for a bad number, ``http`` layer or negative setting.

        Every float setting is finite; rates lie in [0, 1]; ``http`` is one of ``HTTP_LAYERS``;
        latency, capacity, growth, the stall settings and ``head_timeout`` are not negative;
        ``port`` is within [0, 65535].
        """
        for f in fields(self):  # NaN passes every range check below, inf sleeps for ever
            value = getattr(self, f.name)
            if f.type == "float" and not math.isfinite(value):
                raise ValueError(f"StandInConfig.{f.name} must be a finite number, got {value}")
        for name in ("fail_rate", "busy_rate", "item_fail_rate", "drop_rate"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"StandInConfig.{name} must be within [0, 1], got {rate}")
        if self.http not in HTTP_LAYERS:
            raise ValueError(f"StandInConfig.http must be one of {HTTP_LAYERS}, got {self.http!r}")
        for name in ("latency_ms", "capacity", "growth", "stall_every", "stall_ms", "head_timeout"):
            if getattr(self, name) < 0:
                raise ValueError(f"StandInConfig.{name} must not be negative")
        if not 0 <= self.port <= 65535:  # bind() would raise OverflowError
            raise ValueError(f"StandInConfig.port must be within [0, 65535], got {self.port}")


@dataclass(slots=True)
class Counters:
    """What a stand-in has seen, for tests to assert on.

    ``requests`` counts ``/_sql`` requests, ``bulk_items`` items of ``bulk_args`` bodies,
    ``rows_written`` rows inserted, updated or counted, ``peak_in_service`` the most requests
    served at once, ``peak_connections`` the most client connections open at once (counted at
    every request: each connection that sent one and is not closed yet), ``stalls`` the stalls
    started, ``faults`` injected faults by kind (see ``FAULT_KINDS``).
    """

    requests: int = 0
    bulk_items: int = 0
    rows_written: int = 0
    peak_in_service: int = 0
    peak_connections: int = 0
    stalls: int = 0
    faults: Counter[str] = field(default_factory=Counter)

    def snapshot(self) -> dict[str, object]:
        """A plain-dict copy."""
        return {
            "requests": self.requests,
            "bulk_items": self.bulk_items,
            "rows_written": self.rows_written,
            "peak_in_service": self.peak_in_service,
            "peak_connections": self.peak_connections,
            "stalls": self.stalls,
            "faults": dict(self.faults),
        }
