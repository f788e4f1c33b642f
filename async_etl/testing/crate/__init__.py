"""A protocol-faithful CrateDB HTTP ``/_sql`` stand-in, for tests and benchmarks.

``CrateStandIn`` serves the request rules and response / error shapes of
``shared/reference/cratedb-http.md`` from memory, with seeded fault injection (latency, 503,
429, per-item 5002, dropped connections before or after applying) and a counting mode for
benchmarks.  Run it in a loop (``async with``), in a background thread (``with``) or as a
process (``python -m async_etl.testing.crate --port 4200``).
"""

from __future__ import annotations

from async_etl.testing.crate.config import FAULT_KINDS, Counters, StandInConfig
from async_etl.testing.crate.protocol import CrateError
from async_etl.testing.crate.server import CrateStandIn
from async_etl.testing.crate.sql import SQLParseError, parse

__all__ = [
    "FAULT_KINDS",
    "Counters",
    "CrateError",
    "CrateStandIn",
    "SQLParseError",
    "StandInConfig",
    "parse",
]
