"""Progress of a running job: the numbers (``RateMeter``) and how they are shown.

``RateMeter`` turns chunk and row counts into ``Progress`` events (rows/s over this process's
work, ETA from the chunk rate).  ``ProgressBar`` draws them with rich on a TTY (chunks, rows,
rows/s, ETA); ``ProgressLog`` emits one structlog ``progress`` event at most every
``interval`` seconds otherwise, plus the last one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

from async_etl.jobs.api import Progress
from async_etl.log import get_logger

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["ProgressBar", "ProgressLog", "RateMeter"]

log = get_logger("async_etl.jobs.progress")


class RateMeter:
    """Rates and ETA of one run from ``chunks_before`` already-committed chunks onwards."""

    def __init__(
        self,
        job: str,
        run_id: str,
        total: int,
        chunks_before: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.job, self.run_id, self.total = job, run_id, total
        self.before = chunks_before
        self._clock = clock
        self._start = clock()

    def progress(self, chunks_done: int, rows_read: int, rows_this_process: int) -> Progress:
        """The ``Progress`` after ``chunks_done`` chunks in all (``rows_read`` in all)."""
        elapsed = max(self._clock() - self._start, 1e-9)
        here = chunks_done - self.before
        left = max(self.total - chunks_done, 0)
        eta = (elapsed / here) * left if here > 0 else None
        return Progress(
            job=self.job,
            run_id=self.run_id,
            chunks_done=chunks_done,
            chunks_total=self.total,
            rows_read=rows_read,
            rows_per_s=rows_this_process / elapsed,
            eta_s=eta,
        )


class ProgressBar:
    """A rich progress bar on stderr: chunks, rows, rows/s and ETA."""

    def __init__(self, console: Console | None = None) -> None:
        from rich.console import Console  # here: a run without a TTY never imports rich
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress

        self._bar = RichProgress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("chunks  {task.fields[rows]:>12,} rows  {task.fields[rate]:>10,.0f} rows/s"),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            transient=False,
        )
        self._task = self._bar.add_task("starting", total=None, rows=0, rate=0.0)

    def __enter__(self) -> ProgressBar:
        """Start drawing."""
        self._bar.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop drawing."""
        self._bar.__exit__(exc_type, exc, tb)

    def __call__(self, p: Progress) -> None:
        """Show ``p``."""
        self._bar.update(
            self._task,
            description=p.job,
            total=p.chunks_total,
            completed=p.chunks_done,
            rows=p.rows_read,
            rate=p.rows_per_s,
        )


class ProgressLog:
    """structlog ``progress`` events, at most one per ``interval`` seconds (and the last)."""

    def __init__(self, interval: float = 2.0, *, clock: Callable[[], float] = time.monotonic):
        self.interval = interval
        self._clock = clock
        self._last = -float("inf")

    def __call__(self, p: Progress) -> None:
        """Log ``p`` unless one was logged less than ``interval`` ago (the last always is)."""
        now = self._clock()
        if now - self._last < self.interval and p.chunks_done < p.chunks_total:
            return
        self._last = now
        log.info(
            "progress",
            chunks_done=p.chunks_done,
            chunks_total=p.chunks_total,
            rows_read=p.rows_read,
            rows_per_s=round(p.rows_per_s, 1),
            eta_s=None if p.eta_s is None else round(p.eta_s, 1),
        )
