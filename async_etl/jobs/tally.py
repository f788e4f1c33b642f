"""What a job run has done so far, and how it is reported: ``RunTally``.

``jobs.runner._JobRun`` builds on it.  It holds the run's counters (rows read and rejected,
``COUNTERS``), the contiguous ``Watermark`` of committed chunks, the first failure, the run's
context and chunk plan once known, and turns them into:

- the values of the ``async_etl_runs`` row (``_values``; the committed cursor as JSON) and the
  final update of that row with the ``run_finished`` event (``_finish``; a read count that the
  other counters exceed is logged as ``counters_disagree``);
- the ``Progress`` handed to the caller's callback (``_report``; a callback that raises is
  logged, never breaks the load);
- the ``JobResult`` that ``run_job`` returns (``_result``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from async_etl.core.chunks import Watermark
from async_etl.core.incremental import cursor_text, run_cursor, tag
from async_etl.errors import AsyncEtlError, ErrorKind
from async_etl.jobs.api import JobResult, Progress, RunStatus
from async_etl.jobs.context import COUNTERS, ConnectionMeter, JobContext, unchanged_rows
from async_etl.jobs.planning import Plan
from async_etl.jobs.progress import RateMeter
from async_etl.jobs.spec import JobSpec
from async_etl.jobs.state import StateStore
from async_etl.log import get_logger

__all__ = ["RunTally"]

log = get_logger(__name__)


class RunTally:
    """One run's counters, watermark and failure, and the reports made from them."""

    def __init__(
        self,
        spec: JobSpec,
        on_progress: Callable[[Progress], None] | None,
        meter: ConnectionMeter,
    ) -> None:
        self.spec = spec
        self.on_progress = on_progress
        self.meter = meter
        self.started = datetime.now(UTC)
        self.counters: dict[str, int] = dict.fromkeys(("rows_read", "rejected", *COUNTERS), 0)
        self.rows_here = 0
        self.failure: AsyncEtlError | None = None
        self.ctx: JobContext | None = None
        self.plan: Plan | None = None
        self.watermark = Watermark(0)
        self.rates: RateMeter | None = None
        self.recorded: RunStatus | None = None
        """The run's end as ``_finish`` wrote it in the state store (None: not yet)."""

    def _report(self) -> None:
        if self.on_progress is None or self.rates is None or self.plan is None:
            return
        p = self.rates.progress(len(self.plan.committed), self.counters["rows_read"],
                                self.rows_here)  # fmt: skip
        try:
            self.on_progress(p)
        except Exception as exc:  # a broken progress callback must not break the load
            log.warning("progress_callback_failed", error=repr(exc))

    def _values(self, status: RunStatus) -> dict[str, Any]:
        assert self.ctx is not None
        c = self.counters
        return {
            "run_id": self.ctx.run_id,
            "status": status,
            "rows_read": c["rows_read"],
            "rows_inserted": c["inserted"],
            "rows_updated": c["updated"],
            "rows_expired": c["expired"],
            "rows_deleted": c["deleted"],
            "rows_rejected": c["rejected"],
            "watermark": self.watermark.value,
            "error": self.failure.message if self.failure is not None else None,
            "cursor": _cursor_json(self._cursor()),
        }

    def _cursor(self) -> Any:
        """The cursor this run has committed so far (None: not incremental, or none yet)."""
        window = self.ctx.window if self.ctx is not None else None
        if window is None or self.plan is None:
            return None
        done = dict.fromkeys(self.plan.committed, window.high)
        return run_cursor(window, range(len(self.plan.plan)), done)

    def _cursor_text(self) -> str | None:
        """``_cursor`` for people (``incremental.cursor_text``)."""
        value = self._cursor()
        if value is None or self.ctx is None or self.ctx.window is None:
            return None
        return cursor_text(self.ctx.window, value)

    async def _finish(self, store: StateStore, status: RunStatus) -> None:
        """Record the run's end in ``store``; ``recorded`` says it once written."""
        if self.plan is None or self.ctx is None:
            return
        try:
            await store.update_run(self._values(status))
            self.recorded = status
            if status == "STOPPED":
                await store.clear_stop(self.ctx.run_id)
        except AsyncEtlError as exc:
            log.error("final_update_failed", error=exc.message)
        unchanged = unchanged_rows(self.counters)
        log.info("run_finished", status=status, **self.counters, unchanged=unchanged,
                 error=self.failure.message if self.failure else None)  # fmt: skip
        if unchanged < 0:  # read = inserted + updated + unchanged + rejected must hold
            log.error("counters_disagree", **self.counters)

    def _result(self, status: RunStatus, resumed: bool) -> JobResult:
        assert self.ctx is not None
        c = self.counters
        kind: ErrorKind | None = self.failure.kind if self.failure is not None else None
        sizing = self.plan.sizing if self.plan is not None else None
        return JobResult(
            run_id=self.ctx.run_id,
            job=self.spec.name,
            status=status,
            as_of=self.ctx.as_of,
            started_at=self.started,
            finished_at=datetime.now(UTC),
            rows_read=c["rows_read"],
            inserted=c["inserted"],
            updated=c["updated"],
            expired=c["expired"],
            deleted=c["deleted"],
            rejected=c["rejected"],
            chunks_total=len(self.plan.plan) if self.plan else 0,
            chunks_done=len(self.plan.committed) if self.plan else 0,
            resumed=resumed,
            error=self.failure.message if self.failure is not None else None,
            error_kind=kind,
            max_connections=dict(self.meter.peak),
            cursor=self._cursor_text(),
            chunk_size=sizing.rows if sizing is not None else None,
            chunk_size_why=sizing.why if sizing is not None else None,
        )


def _cursor_json(value: Any) -> str | None:
    """A committed cursor as the JSON text ``async_etl_runs.cursor`` holds (None: SQL NULL)."""
    return None if value is None else orjson.dumps(tag(value)).decode()
