"""``async-etl sweep`` against the stand-in's capacity model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from async_etl.cli import find_knee_alias, main
from tests.runtime.standin_process import standin_process


@pytest.fixture
def stand_in_32() -> Iterator[str]:
    """A stand-in process, capacity 32 at 200 ms: the client (sharing a busy machine) must
    stay far from its own CPU limit, or the knee measured would be the client's."""
    with standin_process("--capacity", "32", "--latency-ms", "200", "--growth", "0.1") as url:
        yield url


@pytest.mark.slow
def test_sweep_finds_the_stand_ins_capacity(
    stand_in_32: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Capacity 32: the reported knee is 32 ± 25 %, with sweep.json and throughput.png written."""
    args = "--batch-size 20 --generators 0 --step-seconds 1.5 --warmup 0.4 --start 8"
    args += f" --max-concurrency 64 --out {tmp_path}"
    code = main(["sweep", "--sink", stand_in_32, *args.split()])
    out = capsys.readouterr().out
    result = json.loads((tmp_path / "sweep.json").read_text())
    knee = result["knee"]
    assert code == 0, out
    assert abs(knee["concurrency"] - 32) <= 0.25 * 32, result["points"]
    assert f"knee: concurrency {knee['concurrency']}," in out
    assert (tmp_path / "throughput.png").stat().st_size > 0
    levels = [p["concurrency"] for p in result["points"]]
    assert levels == sorted(levels) and {8, 16, 32, 64} <= set(levels)


def test_sweep_refuses_a_warmup_longer_than_a_step(capsys: pytest.CaptureFixture[str]) -> None:
    """--warmup at or past --step-seconds is one line and exit status 2."""
    code = main(["sweep", "--sink", "null://", "--step-seconds", "1", "--warmup", "2"])
    err = capsys.readouterr().err
    assert code == 2
    assert err == "async-etl: error: --warmup: must be >= 0 and below --step-seconds, got 2.0\n"


@pytest.mark.slow
def test_bench_find_knee_by_rate_finds_the_stand_ins_rate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """bench --find-knee rate: the highest rate held is the stand-in's less 25 %, in sweep.json."""
    # Capacity 4 x 50 ms x 100 rows (8,000 rows/s): the highest rate held is 8,000 rows/s - 25 %,
    # and the rate above it fell short.
    with standin_process("--capacity", "4", "--latency-ms", "50", "--growth", "0") as url:
        args = (
            f"--batch-size 100 --generators 0 --step-seconds 2 --start-rate 1000 --out {tmp_path}"
        )
        code = main(["bench", "--find-knee", "rate", "--sink", url, *args.split()])
    out = capsys.readouterr().out
    result = json.loads((tmp_path / "sweep.json").read_text())
    knee = result["knee"]
    assert code == 0, out
    assert result["by"] == "rate"
    assert 0.75 * 8000 <= knee["target"] <= 8000, result["points"]
    targets = [p["target_rows_per_s"] for p in result["points"]]
    assert {1000, 2000, 4000} <= set(targets)
    above = [p for p in result["points"] if p["target_rows_per_s"] > knee["target"]]
    assert above and not any(p["held"] for p in above)
    assert above[0]["achieved_rows_per_s"] < 0.95 * above[0]["target_rows_per_s"]
    assert f"knee: rate {knee['target']:,.0f} rows/s held" in out
    assert "only" in knee["reason"] and "were achieved" in knee["reason"]


def test_find_knee_is_another_spelling_of_sweep() -> None:
    """bench --find-knee MODE FLAGS is sweep FLAGS --by MODE; plain bench and sweep unchanged."""
    assert find_knee_alias(["bench", "--find-knee", "--sink", "x"]) == [
        "sweep", "--sink", "x", "--by", "concurrency",
    ]  # fmt: skip
    assert find_knee_alias(["bench", "-b", "5", "--find-knee", "rate"]) == [
        "sweep", "-b", "5", "--by", "rate",
    ]  # fmt: skip
    assert find_knee_alias(["bench", "--find-knee=rate"]) == ["sweep", "--by", "rate"]
    assert find_knee_alias(["bench", "--sink", "x"]) == ["bench", "--sink", "x"]
    assert find_knee_alias(["sweep", "--by", "rate"]) == ["sweep", "--by", "rate"]


def test_sweep_by_rate_refuses_a_bad_start_rate(capsys: pytest.CaptureFixture[str]) -> None:
    """--start-rate above --max-rate is one line and exit status 2."""
    code = main(
        ["sweep", "--sink", "null://", "--by", "rate", "--start-rate", "10", "--max-rate", "5"]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err == "async-etl: error: sweep: need 0 < start rate <= maximum rate, got 10.0..5.0\n"


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--slo-p99-ms", "-5"], "--slo-p99-ms: must be > 0, got -5.0"),
        (["--slo-p99-ms", "nan"], "--slo-p99-ms: must be a finite number, got nan"),
        (["--max-rate", "inf"], "--max-rate: must be a finite number, got inf"),
        (["--threshold", "0"], "--threshold: must be > 0, got 0.0"),
        (["--out", "/proc/x"], "--out /proc/x/sweep.json: cannot write there"),
        (["--step-seconds", "inf"], "--step-seconds: must be a finite number, got inf"),
        (["--max-retries", "-1"], "--max-retries: must be >= 0, got -1"),
    ],
)
def test_sweep_refuses_bad_numbers_and_paths_naming_the_flag(
    capsys: pytest.CaptureFixture[str], args: list[str], line: str
) -> None:
    """A negative or non-finite number, an unwritable --out: one line naming that flag, exit 2."""
    code = main(["sweep", "--sink", "null://", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"async-etl: error: {line}") and err.count("\n") == 1, err


def test_sweep_refuses_a_step_in_which_no_batch_finished(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Batches of 1 s against 0.5 s steps: one line naming --step-seconds, exit 2, no knee."""
    # One batch per generation unit (4,000 rows): a stop delivers the units already generated,
    # and at 10 rows a unit was 32 batches, so the level drained ~64 batches one by one (100 s).
    with standin_process("--capacity", "64", "--latency-ms", "1000", "--growth", "0") as url:
        args = "--batch-size 4000 --generators 0 --step-seconds 0.5 --max-concurrency 2"
        args += f" --out {tmp_path}"
        code = main(["sweep", "--sink", url, *args.split()])
    captured = capsys.readouterr()
    assert code == 2, captured.out
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("async-etl: error: --step-seconds: "), lines
    assert "no batch finished inside the measured window" in lines[0]
    assert "knee:" not in captured.out


@pytest.mark.parametrize("retries", [0, 2])
def test_sweep_retries_an_unreachable_sink_as_bench_max_retries_says(
    retries: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--max-retries N (bench's flag): a sink refusing connections is retried N times, one line."""
    sink = "postgresql://postgres:hunter2@127.0.0.1:1/x"
    code = main(["sweep", "--sink", sink, "--max-retries", str(retries), "--log-format", "json",
                 "--out", str(tmp_path)])  # fmt: skip
    lines = capsys.readouterr().err.splitlines()
    assert code == 2, lines
    assert sum('"retrying"' in line for line in lines) == retries, lines
    assert lines[-1].startswith("async-etl: error: cannot use the sink: PostgreSQL "
                                "postgresql://postgres:***@127.0.0.1:1/x"), lines  # fmt: skip
