from __future__ import annotations

import io

from rich.console import Console
from structlog.testing import capture_logs

from async_etl.config import BenchSettings
from async_etl.core.stats import Snapshot
from async_etl.runtime.engine import Engine
from async_etl.runtime.reporter import LiveLine, format_line, log_snapshot
from async_etl.sources.synthetic import Synthetic
from tests.runtime.scripted import ScriptedSink

SNAP = Snapshot(
    elapsed_s=2.0,
    rows_total=1_234_567,
    rows_per_s=300_000.0,
    rows_per_s_total=617_283.5,
    batches=247,
    in_flight=8,
    errors=2,
    retries=2,
    rejected=0,
    p50_ms=12.3,
    p95_ms=30.0,
    p99_ms=45.6,
)


def test_live_line_shows_totals_rates_latency_and_trouble() -> None:
    """The one-line view carries rows, both rates, in-flight, p50/p99 and error counters."""
    line = format_line(SNAP)
    for part in (
        "1,234,567 rows",
        "300,000 rows/s",
        "avg 617,284",
        "in-flight   8",
        "p50 12.3 ms",
        "p99 45.6 ms",
        "errors 2",
        "retries 2",
    ):
        assert part in line, part


def test_live_line_renders_on_a_terminal() -> None:
    """On a (forced) terminal the LiveLine redraws the latest snapshot."""
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=200)
    with LiveLine(console) as live:
        live(SNAP)
    assert "1,234,567 rows" in buf.getvalue()


def test_log_snapshot_emits_one_throughput_event_with_every_field() -> None:
    """Off a terminal each interval is one structlog 'throughput' event with all fields."""
    with capture_logs() as logs:
        log_snapshot(SNAP)
    assert len(logs) == 1 and logs[0]["event"] == "throughput"
    assert logs[0].keys() >= {
        "rows_total",
        "rows_per_s",
        "rows_per_s_total",
        "batches",
        "in_flight",
        "errors",
        "retries",
        "p50_ms",
        "p95_ms",
        "p99_ms",
    }


async def test_engine_reports_every_interval_and_once_at_the_end() -> None:
    """A run emits a throughput event per interval plus a final one, rows_total rising to all."""
    settings = BenchSettings(
        records=40_000, batch_size=1_000, concurrency=2, generators=0, report_interval=0.05
    )
    with capture_logs() as logs:
        async with Engine(settings) as engine:
            await engine.run(Synthetic(), ScriptedSink(delay=0.01))
    totals = [e["rows_total"] for e in logs if e["event"] == "throughput"]
    assert len(totals) >= 3
    assert totals == sorted(totals) and totals[-1] == 40_000
