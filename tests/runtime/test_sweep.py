"""``async-etl sweep`` against the stand-in's capacity model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from async_etl.cli import main
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
