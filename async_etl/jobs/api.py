"""The contract between mapper jobs and whoever runs them (the CLI, the orchestrator, Ray).

``run_job(spec, options=..., stop=..., budget=..., on_progress=...) -> JobResult`` lives in
``async_etl.jobs.runner``; these are the values that cross that boundary.  All frozen and
picklable: a job run is a self-contained unit that could be shipped to another process.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any, Literal, Protocol

import anyio

from async_etl.core.retry import RetryPolicy
from async_etl.errors import ErrorKind
from async_etl.typing import Progress as Progress  # re-exported: part of the job contract

JOB_RETRY = RetryPolicy(max_retries=6, base=0.2, cap=5.0)
"""The default retry policy of a mapper job run."""

RunStatus = Literal["RUNNING", "SUCCEEDED", "FAILED", "STOPPED"]


@dataclass(frozen=True, slots=True)
class JobOptions:
    """How to run a job: the as-of time (None: run start, or the resumed run's), fresh start.

    ``retry`` is the run's retry policy: every database round trip of the run (preflight,
    estimate, chunk planning, target preparation, each chunk, the state tables) meets a
    transient failure with it.
    """

    as_of: datetime | None = None
    fresh: bool = False
    retry: RetryPolicy = field(default_factory=lambda: JOB_RETRY)

    def with_job_retry(self, job_retry: RetryPolicy | None) -> JobOptions:
        """These options with the job file's ``[retry]`` policy, unless the caller chose one.

        A ``retry`` other than the default ``JOB_RETRY`` (given in code, ``run_job(retry=)``)
        wins over the job file; the job file's wins over the default.
        """
        if job_retry is None or self.retry is not JOB_RETRY:
            return self
        return replace(self, retry=job_retry)


@dataclass(frozen=True, slots=True)
class JobResult:
    """The outcome of one job run (what ``async_etl_runs`` holds, and ``--json-out`` writes)."""

    run_id: str
    job: str
    status: RunStatus
    as_of: datetime
    started_at: datetime
    finished_at: datetime | None
    rows_read: int = 0
    inserted: int = 0
    updated: int = 0
    expired: int = 0
    deleted: int = 0
    rejected: int = 0
    chunks_total: int = 0
    chunks_done: int = 0
    resumed: bool = False
    error: str | None = None
    error_kind: ErrorKind | None = None
    max_connections: dict[str, int] | None = None
    cursor: str | None = None
    """The incremental cursor committed by this run, as text (None: not incremental)."""
    chunk_size: int | None = None
    """The rows per chunk the run's plan was cut for (None: no plan, one stored without, or
    one chunk of every row: ``chunk_size_why`` says so)."""
    chunk_size_why: str | None = None
    """Why that size: ``set: [parallel] chunk_size``, or how ``auto`` chose it."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (datetimes as ISO strings)."""
        data = asdict(self)
        for key in ("as_of", "started_at", "finished_at"):
            value = data[key]
            data[key] = value.isoformat() if value is not None else None
        data["error_kind"] = self.error_kind.value if self.error_kind else None
        return data


class ConnectionBudget(Protocol):
    """Per-database connection limits shared by every job of a process.

    A job holds one token of ``limiter(url)`` for every connection it has open to ``url``
    (take the token before connecting, give it back after closing).  Limiters are
    ``anyio.CapacityLimiter`` objects, so their size can change at runtime.
    """

    def limiter(self, url: str) -> anyio.CapacityLimiter:
        """The limiter for the database at ``url`` (same database, same limiter)."""
        ...
