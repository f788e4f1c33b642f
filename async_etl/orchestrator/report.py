"""What a plan run shows while it runs (a view) and leaves behind (the JSON report).

Views receive ``started`` / ``progress`` / ``finished`` calls from the driver and a ``refresh``
once a second.  ``LiveView`` draws one rich line per running job (rows/s, chunk progress) on a
TTY; ``LogView`` emits one structlog ``job progress`` event per running job per refresh instead.
``build_report`` is the ``--json-out`` document: every job (status, attempts, started_at,
finished_at, rows, error), the critical path by measured run time and the bottleneck jobs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from async_etl.core import dag
from async_etl.jobs.api import Progress
from async_etl.log import get_logger

if TYPE_CHECKING:
    from async_etl.orchestrator.driver import PlanOutcome
    from async_etl.orchestrator.plan import Plan

log = get_logger(__name__)


class View(Protocol):
    """Receives what the driver sees happen."""

    def started(self, job: str, attempt: int) -> None:
        """A job attempt started (it holds its slots)."""

    def progress(self, event: Progress) -> None:
        """A running job reported progress."""

    def finished(self, job: str, status: str) -> None:
        """A job reached a status other than RUNNING."""

    def refresh(self) -> None:
        """Called once a second: redraw or log."""


class NullView:
    """Shows nothing (tests, benchmarks)."""

    def started(self, job: str, attempt: int) -> None:
        """Ignore."""

    def progress(self, event: Progress) -> None:
        """Ignore."""

    def finished(self, job: str, status: str) -> None:
        """Ignore."""

    def refresh(self) -> None:
        """Ignore."""


class _Running:
    """The running jobs and their latest progress (shared by both real views)."""

    def __init__(self) -> None:
        self.running: dict[str, tuple[int, Progress | None]] = {}
        self.done: dict[str, int] = {}
        self.listeners: list[Callable[[Progress], None]] = []  # e.g. the metrics collector

    def started(self, job: str, attempt: int) -> None:
        self.running[job] = (attempt, None)

    def progress(self, event: Progress) -> None:
        for listener in self.listeners:
            listener(event)
        if event.job in self.running:
            self.running[event.job] = (self.running[event.job][0], event)

    def finished(self, job: str, status: str) -> None:
        self.running.pop(job, None)
        self.done[status] = self.done.get(status, 0) + 1


def format_job_line(job: str, attempt: int, p: Progress | None) -> str:
    """One live line: job, attempt, chunk progress, rows and rows/s, ETA."""
    if p is None:
        return f"{job:<28} attempt {attempt}  starting"
    eta = f"  eta {p.eta_s:,.0f}s" if p.eta_s is not None else ""
    return (
        f"{job:<28} attempt {attempt}  chunks {p.chunks_done}/{p.chunks_total}"
        f"  {p.rows_read:>12,} rows  {p.rows_per_s:>10,.0f} rows/s{eta}"
    )


class LiveView(_Running):
    """One rich line per running job plus a totals line, on stderr."""

    def __init__(self, console: Console | None = None) -> None:
        """A live view drawing on ``console`` (default: stderr)."""
        super().__init__()
        self._live = Live(Text(""), console=console or Console(stderr=True), auto_refresh=False)

    def __enter__(self) -> LiveView:
        """Start drawing."""
        self._live.__enter__()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop drawing (the last frame stays)."""
        self.refresh()
        self._live.__exit__(et, e, tb)

    def refresh(self) -> None:
        """Redraw every running job's line."""
        lines = [Text(format_job_line(j, a, p)) for j, (a, p) in sorted(self.running.items())]
        totals = "  ".join(f"{k.lower()} {v}" for k, v in sorted(self.done.items()))
        lines.append(Text(f"running {len(self.running)}  {totals}", style="bold"))
        self._live.update(Group(*lines), refresh=True)


class LogView(_Running):
    """One structlog ``job progress`` event per running job per refresh."""

    def refresh(self) -> None:
        """Log every running job's latest progress."""
        for job, (attempt, p) in sorted(self.running.items()):
            if p is not None:
                log.info(
                    "job progress",
                    job=job,
                    attempt=attempt,
                    chunks_done=p.chunks_done,
                    chunks_total=p.chunks_total,
                    rows=p.rows_read,
                    rows_per_s=round(p.rows_per_s, 1),
                )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def build_report(plan: Plan, outcome: PlanOutcome) -> dict[str, Any]:
    """The JSON report of a plan run (see the module doc)."""
    durations: Mapping[str, float] = {n: s.busy_s for n, s in outcome.jobs.items()}
    path, length = dag.critical_path(plan.deps(), durations)
    return {
        "plan": plan.name,
        "plan_run_id": outcome.plan_run_id,
        "status": outcome.status,
        "wall_s": round(outcome.wall_s, 3),
        "local_max": plan.local_max,
        "global_max": plan.global_max,
        "jobs": [
            {
                "job": name,
                "status": s.status,
                "attempts": s.attempts,
                "started_at": _iso(s.started_at),
                "finished_at": _iso(s.finished_at),
                "run_s": round(s.busy_s, 3),
                "rows": s.rows,
                "error": s.error,
                "error_kind": s.error_kind.value if s.error_kind else None,
                "resumed": s.resumed,
            }
            for name, s in outcome.jobs.items()
        ],
        "critical_path": {"jobs": path, "seconds": round(length, 3)},
        "degradation": outcome.degradation,
        "bottlenecks": [
            {"job": b.job, "seconds": round(b.seconds, 3), "share_of_wall": round(b.share, 3)}
            for b in dag.bottlenecks(plan.deps(), durations, outcome.wall_s)
        ],
    }
