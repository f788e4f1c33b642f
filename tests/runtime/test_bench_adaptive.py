"""``bench --concurrency auto`` against the stand-in's capacity model."""

from __future__ import annotations

from typing import Any

from structlog.testing import capture_logs

from async_etl.config import BenchSettings, bench_settings
from async_etl.core.stats import Snapshot
from async_etl.runtime.engine import Engine
from async_etl.sinks import open_sink
from async_etl.sources.synthetic import Synthetic
from tests.runtime.standin_process import standin_process

KNEE = 16


async def test_auto_concurrency_settles_near_the_stand_ins_capacity() -> None:
    """With capacity 16 the limit settles within ±25 % of 16; each change logged and shown live."""
    flags = ("--capacity", str(KNEE), "--latency-ms", "200", "--growth", "0.05")
    shown: list[Snapshot] = []
    with standin_process(*flags) as url:
        settings = BenchSettings(
            sink=url,
            records=None,
            duration=10.0,
            batch_size=50,
            generators=0,
            adaptive=True,
            concurrency_min=1,
            concurrency_max=128,
            concurrency=1,
            report_interval=0.25,
        )
        sink = open_sink(url, settings)
        try:
            with capture_logs() as logs:
                async with Engine(settings) as engine:
                    summary = await engine.run(Synthetic(), sink, on_snapshot=shown.append)
        finally:
            await sink.aclose()
    auto: dict[str, Any] = summary.extra["adaptive"]
    changes = [e for e in logs if e["event"] == "concurrency_changed"]
    assert summary.ok, summary.problems()
    settled = sorted(snap.limit for snap in shown if snap.elapsed_s >= 7.0)
    steps = [(h["elapsed_s"], h["new"], h["reason"], h["throughput"]) for h in auto["history"]]
    assert abs(settled[len(settled) // 2] - KNEE) <= 0.25 * KNEE, steps
    assert len(changes) == auto["changes"] > 0
    assert [c["new"] for c in changes] == [h["new"] for h in auto["history"]]
    assert shown[-1].limit == auto["final"]
    assert "auto 1-128: final" in dict(summary.table_rows())["concurrency / generators"]


def test_auto_is_parsed_from_the_flag_and_the_environment() -> None:
    """--concurrency auto:2-50 and ASYNC_ETL_BENCH_CONCURRENCY=auto set the adaptive bounds."""
    flag = bench_settings({"concurrency": "auto:2-50"}, {})
    env = bench_settings({}, {"ASYNC_ETL_BENCH_CONCURRENCY": "auto"})
    assert (flag.adaptive, flag.concurrency_min, flag.concurrency_max) == (True, 2, 50)
    assert (env.adaptive, env.concurrency_min, env.concurrency_max) == (True, 1, 64)
    assert flag.pool_size == 50 and bench_settings({"concurrency": "12"}, {}).pool_size == 12
