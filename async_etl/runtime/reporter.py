"""Rendering throughput snapshots: a live one-line view on a TTY, structlog events otherwise."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.text import Text

from async_etl.core.stats import Snapshot
from async_etl.log import get_logger

log = get_logger("async_etl.reporter")


def format_line(s: Snapshot) -> str:
    """The live line: totals, rates, in-flight (and adaptive limit), latency, trouble counters."""
    limit = f" / limit {s.limit}" if s.limit else ""
    return (
        f"{s.rows_total:>13,} rows  {s.rows_per_s:>11,.0f} rows/s  (avg {s.rows_per_s_total:,.0f})"
        f"  in-flight {s.in_flight:>3}{limit}  p50 {s.p50_ms:.1f} ms  p99 {s.p99_ms:.1f} ms"
        f"  errors {s.errors}  retries {s.retries}  rejected {s.rejected}"
    )


class LiveLine:
    """A rich ``Live`` single line on stderr, updated once per report interval."""

    def __init__(self, console: Console | None = None) -> None:
        self._console = console or Console(stderr=True)
        self._live = Live(Text("starting..."), console=self._console, auto_refresh=False)

    def __enter__(self) -> LiveLine:
        self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._live.__exit__(exc_type, exc, tb)

    def __call__(self, snapshot: Snapshot) -> None:
        """Show ``snapshot`` (also logged at debug level for anyone listening)."""
        self._live.update(Text(format_line(snapshot)), refresh=True)
        log.debug("throughput", **snapshot.as_event())


def log_snapshot(snapshot: Snapshot) -> None:
    """Emit ``snapshot`` as one structlog ``throughput`` event."""
    log.info("throughput", **snapshot.as_event())
