"""``async-etl bench --mode`` and ``async-etl compare`` as a user runs them: real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from async_etl.testing.crate import CrateStandIn, StandInConfig

MODES = ["threads", "async"]
PNG = b"\x89PNG\r\n\x1a\n"


def bench(*args: str) -> list[str]:
    return [sys.executable, "-m", "async_etl", "bench", *args]


@pytest.mark.parametrize("mode", MODES)
def test_sigint_mid_run_stops_gracefully_with_summary(mode: str, tmp_path: Path) -> None:
    """SIGINT during a --duration run: exit 0, summary printed, every reported row in target."""
    out = tmp_path / "summary.json"
    with CrateStandIn(StandInConfig(latency_ms=5, count_only=True)) as crate:
        cmd = bench("--sink", crate.url, "--mode", mode, "--duration", "30", "--batch-size", "200")
        cmd += ["--concurrency", "8", "--generators", "1", "--log-format", "json"]
        cmd += ["--report-interval", "0.2", "--json-out", str(out)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # wait until rows flow, then ~2 s of sending
            line = proc.stderr.readline()
            if '"throughput"' in line and '"rows_total":0,' not in line:
                break
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)
        stdout, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, stdout
    assert "async-etl bench" in stdout and "signal" in stdout
    data = json.loads(out.read_text())
    assert data["mode"] == mode and data["stopped_by"] == "signal"
    assert data["records"] == data["reconciled"] == data["generated"] > 0


@pytest.mark.parametrize("mode", MODES)
def test_bad_credentials_exit_2_with_one_line(mode: str) -> None:
    """A sink refusing the credentials at start: one `async-etl: error:` line, exit 2 (as run)."""
    with CrateStandIn(StandInConfig(user="crate", password="right")) as crate:
        url = crate.url.replace("http://", "http://crate:s3cret@")
        cmd = bench("--sink", url, "--mode", mode, "--records", "1000", "--generators", "0")
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2
    prefix = "async-etl: error: cannot use the sink: CrateDB http://crate@"
    assert len(lines) == 1 and lines[0].startswith(prefix)
    assert "401" in lines[0] and "s3cret" not in done.stderr


def test_compare_end_to_end_writes_results_table_and_plots(tmp_path: Path) -> None:
    """compare on a tiny workload: both modes per level in results.json, a table, two PNGs."""
    out = tmp_path / "cmp"
    cmd = [sys.executable, "-m", "async_etl", "compare", "--concurrency", "1,4"]
    cmd += ["--records", "2000", "--latency-ms", "1", "--generators", "1", "--warmup", "0"]
    cmd += ["--out", str(out)]
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, env=env)
    assert done.returncode == 0, done.stderr
    rows = json.loads((out / "results.json").read_text())
    assert sorted((r["level"], r["mode"]) for r in rows) == [
        (1, "async"),
        (1, "threads"),
        (4, "async"),
        (4, "threads"),
    ]
    for row in rows:
        assert row["records"] == row["reconciled"] == 2000 and row["ok"]
        assert row["threads"] >= 1 and 1 <= row["open_connections"] <= row["level"]
        assert row["rows_per_s"] > 0 and row["peak_rss_mb"] > 0
    table = (out / "results.md").read_text()
    assert "| concurrency | mode | rows/s |" in table and "async/threads" in table
    assert table.strip() in done.stdout
    assert "[4/4] network concurrency=4 async" in done.stderr
    for name in ("throughput.png", "memory.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000


def test_compare_bad_flags_are_one_line_config_errors(tmp_path: Path) -> None:
    """A bad --concurrency list is refused with one line and exit status 2."""
    cmd = [sys.executable, "-m", "async_etl", "compare", "--concurrency", "1,x"]
    cmd += ["--records", "10", "--out", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "async-etl: error: --concurrency: expected comma-separated integers, got '1,x'"
    )


def test_compare_plots_of_only_failed_runs_warn_nothing(tmp_path: Path) -> None:
    """Every run failed (no figures): both PNGs are written and matplotlib prints no warning."""
    import warnings

    from async_etl.cli.compare import Plan, write_plots

    plan = Plan(scenario="database", sink=None, levels=(1, 4), concurrency=4, records=10,
                duration=None, batch_size=10, generators=0, latency_ms=0.0, payload_bytes=0,
                gzip_threshold=0, warmup=0.0, uvloop=False, out=tmp_path)  # fmt: skip
    rows = [{"level": c, "mode": m, "ok": False} for c in (1, 4) for m in MODES]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_plots(plan, rows)
    assert [str(w.message) for w in caught] == []
    for name in ("throughput.png", "memory.png"):
        assert (tmp_path / name).read_bytes().startswith(PNG)


@pytest.mark.parametrize("mode", MODES)
def test_a_run_ending_inside_its_warmup_says_so(mode: str, tmp_path: Path) -> None:
    """-n 2000 --warmup 30 ends long before 30 s: table and JSON say the warm-up never ended."""
    out = tmp_path / "summary.json"
    cmd = bench("--sink", "null://", "--mode", mode, "-n", "2000", "--warmup", "30")
    done = subprocess.run(
        [*cmd, "--json-out", str(out)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    assert data["warmup_reached"] is False and data["records"] == 2000
    table = " ".join(done.stdout.replace("│", " ").split())  # a long cell wraps
    assert "warm-up not reached (ran " in table and " s of 30 s); figures include it" in table
