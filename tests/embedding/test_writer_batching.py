"""The writer's batches close on rows, bytes or linger, and ``flush`` settles what came before."""

from __future__ import annotations

import anyio
import pytest

from async_etl import ConfigError, open_writer


async def test_linger_ships_a_partial_batch_without_a_flush() -> None:
    """Three rows and no flush: the linger time alone delivers them."""
    async with open_writer("null://", table="t", batch_rows=1000, linger_ms=20) as writer:
        await writer.write_many([(1,), (2,), (3,)])
        with anyio.fail_after(10):
            while writer.snapshot().delivered < 3:
                await anyio.sleep(0.01)
        assert writer.report.batches == 1


async def test_rows_and_bytes_close_batches() -> None:
    """1,000 rows in batches of 100 rows make 10 batches; a 1 KiB byte limit makes more."""
    async with open_writer("null://", table="t", batch_rows=100, linger_ms=60_000) as by_rows:
        await by_rows.write_many((i, "x" * 50) for i in range(1000))
    assert (by_rows.report.batches, by_rows.report.delivered) == (10, 1000)
    async with open_writer(
        "null://", table="t", batch_rows=100, batch_bytes=1024, linger_ms=60_000
    ) as by_bytes:
        await by_bytes.write_many((i, "x" * 50) for i in range(1000))
    # a row is estimated at 8 + (50 + 4) + 8 = 70 bytes: 15 rows reach 1,024
    assert (by_bytes.report.batches, by_bytes.report.delivered) == (67, 1000)


async def test_flush_waits_for_every_row_written_before_it() -> None:
    """After ``flush`` every earlier row is settled, even with a long linger."""
    async with open_writer("null://", table="t", batch_rows=1000, linger_ms=60_000) as writer:
        await writer.write_many((i,) for i in range(2500))
        await writer.flush()
        snap = writer.snapshot()
        assert (snap.delivered, snap.buffered, snap.in_flight_rows) == (2500, 0, 0)


def test_bad_limits_are_one_line_config_errors() -> None:
    """Zero rows, a negative linger, zero in flight or an unknown scheme: ConfigError."""
    with pytest.raises(ConfigError, match="batch_rows must be at least 1"):
        open_writer("null://", table="t", batch_rows=0)
    with pytest.raises(ConfigError, match="linger_ms must be >= 0"):
        open_writer("null://", table="t", linger_ms=-1)
    with pytest.raises(ConfigError, match="max_in_flight must be at least 1"):
        open_writer("null://", table="t", max_in_flight=0)
    with pytest.raises(ConfigError, match="unknown scheme 'ftp'"):
        open_writer("ftp://x", table="t")


@pytest.mark.parametrize(
    ("limit", "problem"),
    [
        ({"linger_ms": float("nan")}, "linger_ms must be >= 0, got nan"),
        ({"snapshot_interval": 0}, "snapshot_interval must be > 0 seconds, got 0"),
        ({"snapshot_interval": float("nan")}, "snapshot_interval must be > 0 seconds, got nan"),
    ],
)
def test_a_limit_that_is_nan_or_zero_time_is_refused(limit: dict[str, float], problem: str) -> None:
    """A NaN linger (it crashed the writer's task) or a snapshot interval 0 / NaN: ConfigError."""
    with pytest.raises(ConfigError, match=problem):
        open_writer("null://", table="t", on_snapshot=lambda snap: None, **limit)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "problem"),
    [("ftp://x", "unknown scheme 'ftp'"), ("localhost:5432", "not a URL"), ("http://", "no host")],
)
def test_a_bad_url_names_the_url_argument_not_a_cli_flag(url: str, problem: str) -> None:
    """From the library a bad URL is refused under ``url`` (the argument), never ``--sink``."""
    with pytest.raises(ConfigError) as info:
        open_writer(url, table="t")
    assert str(info.value).startswith(f"url {url!r}: {problem}")
