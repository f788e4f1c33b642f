"""``bench --rate``: open-loop sends against the stand-in, corrected latency, infeasible targets."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from async_etl.config import BenchSettings, bench_settings
from async_etl.core.schedule import RateSchedule
from async_etl.core.summary import Summary
from async_etl.errors import ConfigError
from async_etl.runtime.engine import Engine
from async_etl.runtime.pacing import Pacer
from async_etl.sinks import open_sink
from async_etl.sources.synthetic import Synthetic
from async_etl.testing.crate import CrateStandIn, StandInConfig


async def _bench(config: StandInConfig, **kw: Any) -> tuple[Summary, CrateStandIn]:
    async with CrateStandIn(config) as crate:
        settings = BenchSettings(
            sink=crate.url, records=None, generators=0, report_interval=10.0, **kw
        )
        sink = open_sink(crate.url, settings)
        try:
            async with Engine(settings) as engine:
                summary = await engine.run(Synthetic(), sink, on_snapshot=lambda _: None)
        finally:
            await sink.aclose()
    return summary, crate


async def test_a_feasible_rate_is_held_within_two_percent() -> None:
    """5,000 rows/s for 4 s in batches of 100: 20,000 rows at 5,000 rows/s ± 2 %, all on time."""
    summary, _ = await _bench(
        StandInConfig(count_only=True), rate=5000.0, duration=4.0, batch_size=100, concurrency=8
    )
    rate = summary.extra["rate"]
    assert summary.ok and summary.records == 20_000
    assert rate["met"] and rate["target_rows_per_s"] == 5000.0
    assert abs(rate["achieved_rows_per_s"] - 5000.0) <= 0.02 * 5000.0, rate


async def test_a_batch_longer_than_the_schedule_does_not_count_as_a_rate() -> None:
    """1 row/s for 2 s in batches of 5,000: both rows go at once, achieved 1 row/s, not 10,000."""
    summary, _ = await _bench(
        StandInConfig(count_only=True), rate=1.0, duration=2.0, batch_size=5000, concurrency=8
    )
    rate = summary.extra["rate"]
    assert summary.ok and summary.records == 2
    assert rate["achieved_rows_per_s"] == 1.0, rate
    assert rate["met"], rate


async def test_a_stall_shows_in_latency_from_the_due_time_not_in_service_time() -> None:
    """One 1 s stall: p99 from the due time >= 1 s; service-time p99 stays near 70 ms."""
    # 25 batches/s, two in flight, 70 ms each: the two caught in the stall take >= 1 s of
    # service (2 of 200: under the p99's rank); the batches due during it wait in the client and
    # are sent late, so from their due time several more take >= 1 s (a closed loop would not
    # have sent them, and would report 70 ms).
    config = StandInConfig(count_only=True, latency_ms=70, stall_every=150, stall_ms=1000)
    summary, crate = await _bench(config, rate=5000.0, duration=8.0, batch_size=200, concurrency=2)
    due = summary.extra["rate"]["latency_from_due_ms"]
    assert crate.counters.stalls == 1
    assert summary.batches == 200
    assert due["p99"] >= 1000.0, due
    assert due["p50"] < 500.0, due
    assert summary.latency_ms["p99"] < 500.0, summary.latency_ms


async def test_an_infeasible_target_is_reported_with_the_shortfall() -> None:
    """20,000 rows/s into a server that takes ~10,000: not met, said in one line with the share."""
    config = StandInConfig(count_only=True, capacity=1, latency_ms=50, growth=0)
    summary, _ = await _bench(config, rate=20_000.0, duration=1.0, batch_size=500, concurrency=4)
    rate = summary.extra["rate"]
    assert summary.ok and summary.records == 20_000
    assert not rate["met"]
    assert rate["achieved_rows_per_s"] < 0.95 * 20_000
    share = round(rate["achieved_rows_per_s"] / 20_000 * 100)
    assert rate["verdict"].startswith(
        f"target 20,000 rows/s not met: achieved {rate['achieved_rows_per_s']:,.0f} rows/s "
        f"({share} % of it)"
    )
    assert rate["late_batches"] > 0
    assert dict(summary.table_rows())["rate"] == rate["verdict"]


async def test_a_ramp_sends_each_steps_rows() -> None:
    """--ramp 2000:1s,6000:1s sends 8,000 rows, the mean target being 4,000 rows/s."""
    summary, _ = await _bench(
        StandInConfig(count_only=True), ramp="2000:1s,6000:1s", batch_size=100, concurrency=8
    )
    assert summary.ok and summary.records == 8000
    assert summary.extra["rate"]["target_rows_per_s"] == 4000.0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"rate": 100.0, "ramp": "1:1s"}, "--rate: or --ramp, not both"),
        ({"ramp": "100:1s", "duration": 5.0}, "--ramp: sets its own duration"),
        ({"ramp": "100:fast"}, "--ramp: expected RATE:LENGTH"),
        ({"rate": -5.0}, "--rate: step 1: the rate must be > 0"),
        ({"rate": 100.0, "mode": "threads"}, "--rate: needs --mode async"),
    ],
)
def test_bad_rate_flags_are_one_line(flags: dict[str, Any], message: str) -> None:
    """Conflicting or malformed --rate / --ramp flags are a ConfigError naming the flag."""
    with pytest.raises(ConfigError) as info:
        bench_settings(flags, {})
    assert str(info.value).startswith(message.split(": ", 1)[0])
    assert message.split(": ", 1)[1] in str(info.value)


async def test_a_stop_ends_the_wait_for_a_batch_not_yet_due() -> None:
    """A stop hands out the next batch (due 50 s later) at once, outside the schedule's rows."""
    pacer = Pacer(RateSchedule.constant(100.0), clock=lambda: 0.0)
    stop = anyio.Event()
    assert await pacer.wait(5000, stop) == 0.0
    stop.set()
    assert await pacer.wait(5000, stop) is None
    assert pacer.rows == 5000 and pacer.unscheduled == 5000
