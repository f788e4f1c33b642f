"""What a writer reports: its limits, the final report, live snapshots, refused rows."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio


@dataclass(frozen=True, slots=True)
class WriterLimits:
    """The writer's runtime-adjustable limits: change ``total_tokens`` while it runs."""

    in_flight: anyio.CapacityLimiter  # batches being delivered at once
    encoding: anyio.CapacityLimiter  # encoding threads at once


@dataclass(frozen=True, slots=True)
class RefusedRow:
    """A row that was rejected or not delivered, and why."""

    row: Any
    reason: str


@dataclass(frozen=True, slots=True)
class WriterReport:
    """Where every row handed to the writer ended (counts are rows).

    ``accepted == delivered + rejected + undelivered`` once the writer is closed;
    ``reasons`` counts rejected and undelivered rows by reason; ``rejected_rows`` and
    ``undelivered_rows`` keep the first ``keep_rows`` of each.
    """

    accepted: int
    delivered: int
    rejected: int
    undelivered: int
    batches: int
    retries: int
    elapsed_s: float
    reasons: Mapping[str, int]
    rejected_rows: tuple[RefusedRow, ...]
    undelivered_rows: tuple[RefusedRow, ...]

    @property
    def ok(self) -> bool:
        """True when every accepted row was delivered."""
        return self.delivered == self.accepted


@dataclass(frozen=True, slots=True)
class WriterSnapshot:
    """The writer's figures at one moment (for a metrics callback; rows, seconds, ms)."""

    elapsed_s: float
    accepted: int
    delivered: int
    rejected: int
    undelivered: int
    buffered: int
    in_flight_rows: int
    in_flight_batches: int
    rows_per_s: float
    retries: int
    p50_ms: float
    p95_ms: float
    p99_ms: float


SnapshotCallback = Callable[[WriterSnapshot], None]


@dataclass(slots=True)
class BatchOutcome:
    """How one batch's rows ended so far."""

    delivered: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    undelivered: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return self.delivered + self.rejected.total() + self.undelivered.total()


class Refusals:
    """The first ``keep`` rejected rows and the first ``keep`` undelivered rows, with reasons."""

    __slots__ = ("keep", "rejected", "undelivered")

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.rejected: list[RefusedRow] = []
        self.undelivered: list[RefusedRow] = []

    def reject(self, rows: Iterable[Any], reason: str) -> None:
        """Keep ``rows`` as rejected for ``reason`` (while there is room)."""
        self._keep(self.rejected, rows, reason)

    def undeliver(self, rows: Iterable[Any], reason: str) -> None:
        """Keep ``rows`` as undelivered for ``reason`` (while there is room)."""
        self._keep(self.undelivered, rows, reason)

    def _keep(self, into: list[RefusedRow], rows: Iterable[Any], reason: str) -> None:
        for row in rows:
            if len(into) >= self.keep:
                return
            into.append(RefusedRow(row, reason))
