"""What the drivers of one job run share: the frozen run context, counters, the meter.

``JobContext`` is built once per run by the runner (after planning) and handed to the
source adapter and the target driver; it never changes during the run.  ``ChunkResult`` is
what a driver returns for a chunk it committed.  ``ConnectionMeter`` counts the connections a
run holds per database (the ``max_connections`` of ``JobResult``); every connection of a run is
opened under ``ctx.hold(url)``, which takes a budget token and counts it.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import anyio

from async_etl.core.incremental import CursorWindow, tag
from async_etl.core.retry import RetryPolicy
from async_etl.core.specs import ScdColumns
from async_etl.errors import DataError, StopRequested
from async_etl.jobs.api import JOB_RETRY, ConnectionBudget
from async_etl.jobs.budget import database_key, hold
from async_etl.jobs.grant import Grant
from async_etl.jobs.spec import JobSpec
from async_etl.typing import Holder

__all__ = [
    "COUNTERS",
    "BudgetHolder",
    "ChunkResult",
    "ConnectionMeter",
    "Holder",
    "JobContext",
    "Reject",
    "unchanged_rows",
]

COUNTERS = ("inserted", "updated", "expired", "deleted")
"""The change counters a merge reports (``rows_read`` and ``rejected`` are counted apart)."""


def unchanged_rows(counters: dict[str, int]) -> int:
    """Source rows read that changed nothing: read - inserted - updated - rejected.

    Every row read ends inserted (a new key or a new version), updated, unchanged or rejected;
    an expiry goes with its new version and a delete has no source row, so neither counts.
    Negative means the counters disagree (a row counted twice).
    """
    c = counters
    return c["rows_read"] - c["inserted"] - c["updated"] - c["rejected"]


Reject = tuple[str, str]
"""A rejected row: its key as JSON text, and the reason the target gave."""


@dataclass(slots=True)
class ConnectionMeter:
    """Open connections of one run per database, and the peak of each."""

    open: dict[str, int] = field(default_factory=dict)
    peak: dict[str, int] = field(default_factory=dict)

    def opened(self, url: str) -> None:
        """Count one more open connection to the database at ``url``."""
        key = database_key(url)
        self.open[key] = self.open.get(key, 0) + 1
        self.peak[key] = max(self.peak.get(key, 0), self.open[key])

    def closed(self, url: str) -> None:
        """Count one connection to ``url`` closed."""
        key = database_key(url)
        self.open[key] = self.open.get(key, 1) - 1


class BudgetHolder:
    """A ``Holder``: takes one token of ``budget.limiter(url)`` and counts it in ``meter``.

    Once the runner sets ``grant`` (the job's reservation, ``jobs.grant``), the databases it
    covers lend their tokens from it instead: never waiting on the shared budget while
    holding some of it.
    """

    def __init__(self, budget: ConnectionBudget, meter: ConnectionMeter) -> None:
        self.budget = budget
        self.meter = meter
        self.stop: anyio.Event | None = None  # set by the runner: waits for tokens honour it
        self.grant: Grant | None = None

    @asynccontextmanager
    async def __call__(self, url: str) -> AsyncIterator[None]:
        """Hold a token for one connection to ``url`` for the duration of the block."""
        grant = self.grant
        held = (
            grant.hold(url, self.stop)
            if grant is not None and grant.covers(url)
            else hold(self.budget.limiter(url), self.stop)
        )
        async with held:
            self.meter.opened(url)
            try:
                yield
            finally:
                self.meter.closed(url)

    @asynccontextmanager
    async def step(self, urls: Sequence[str]) -> AsyncIterator[None]:
        """A step holding one connection to each of ``urls`` at once (a chunk: target, source).

        Under a grant, its tokens on one database are taken together (``Grant.step``).
        """
        grant = self.grant
        if grant is None:
            yield
            return
        async with grant.step(urls):
            yield


@dataclass(frozen=True, slots=True)
class ChunkResult:
    """A committed chunk: rows read, change counts, rejects, and whether it is checkpointed.

    ``checkpointed`` is True when the driver wrote the checkpoint (and the rejects) in the
    chunk's own transaction; otherwise the runner writes them to the state store.
    """

    index: int
    rows_read: int
    counts: dict[str, int]
    rejects: tuple[Reject, ...] = ()
    checkpointed: bool = False
    rejects_before: int = 0
    """Rows an earlier attempt rejected and recorded with its commit (which went
    unacknowledged): counted here, not in ``rejects``, which would record them again."""

    @property
    def rejected(self) -> int:
        """The chunk's rejected rows: ``rejects`` and ``rejects_before``."""
        return len(self.rejects) + self.rejects_before


@dataclass(frozen=True, slots=True)
class JobContext:
    """The fixed facts of one run that every driver needs."""

    spec: JobSpec
    run_id: str
    as_of: datetime
    columns: tuple[tuple[str, str], ...]
    cols: ScdColumns
    hold: BudgetHolder
    stop: anyio.Event
    state_url: str
    window: CursorWindow | None = None
    policy: RetryPolicy = field(default_factory=lambda: JOB_RETRY)
    add_columns: tuple[tuple[str, str], ...] = ()
    """Source columns the existing target lacks, to add in ``prepare`` (name, target type)."""
    batch_rows: int = 5_000
    collate: tuple[str | None, ...] = ()
    """The collation each chunk-key column compares in (``core.collation``; empty: own)."""
    resumed: bool = False
    """This run resumes an unfinished one (a full refresh keeps its half-loaded new table)."""
    after_all: bool = False
    """A new run later than every target version: none starts at the as-of before a chunk
    merges (``planning.Decision.after_all``; a chunk's retry sees only its own rolled-back or
    committed work, which an idempotent merge repeats harmlessly)."""
    loader: str = field(default_factory=lambda: uuid.uuid4().hex)
    """This ``run_job`` call's name in the checkpoints it writes (random): a chunk found
    committed under it was committed by an earlier attempt of this call whose COMMIT went
    unacknowledged, not by another process (``state_sql.landed_before``)."""

    @property
    def app(self) -> str:
        """The ``application_name`` suffix of this run's connections."""
        return f"{self.spec.name}:{self.run_id}"

    @property
    def chunk_cursor(self) -> str | None:
        """What a chunk's checkpoint records as its cursor: the window's top, as JSON text."""
        if self.window is None or self.window.high is None:
            return None
        return json.dumps(tag(self.window.high))

    @property
    def names(self) -> tuple[str, ...]:
        """Source column names, in order."""
        return tuple(n for n, _ in self.columns)

    @property
    def key_collate(self) -> dict[str, str | None]:
        """Chunk-key column name -> the collation its ranges compare in."""
        return dict(zip(self.spec.source.key, self.collate, strict=False))

    @property
    def on_bad_row(self) -> Literal["fail", "reject"]:
        """What to do with rows the target refuses."""
        return self.spec.on_bad_row

    def same_database(self, a: str, b: str) -> bool:
        """True when two URLs name the same database."""
        return database_key(a) == database_key(b)

    def check_stop(self) -> None:
        """Raise ``StopRequested`` when the run was asked to stop (a safe point)."""
        if self.stop.is_set():
            raise StopRequested(f"run {self.run_id}: stop requested")


def _json_safe(value: Any) -> Any:
    """``value`` with NaN and the infinities as PostgreSQL spells them, in strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def key_json(key: dict[str, Any]) -> str:
    """A key as JSON text for ``async_etl_rejects`` (values that JSON lacks become strings).

    NaN and the infinities too: ``-Infinity`` is not JSON, and the reject must be recorded.
    """
    safe = {k: _json_safe(v) for k, v in key.items()}
    return json.dumps(safe, default=str, allow_nan=False)


def null_key_rejects(ctx: JobContext, where: str, keys: list[dict[str, Any]]) -> list[Reject]:
    """One reject per row whose business key (``keys``, one per row) has a NULL part.

    Such a row has no key to merge by.  Raises ``DataError`` naming the first of them (``where``
    first) unless ``on_bad_row = "reject"``.
    """
    out = []
    for key in keys:
        nulls = ", ".join(c for c, v in key.items() if v is None)
        out.append((key_json(key), f"NULL in business key column(s) {nulls}"))
    if out and ctx.on_bad_row != "reject":
        raise DataError(f"{where}: row {out[0][0]} refused: {out[0][1]}")
    return out
