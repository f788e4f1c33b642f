"""``--metrics-port``: Prometheus metrics scraped during a run agree with its summary."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from async_etl.cli import main
from async_etl.config import BenchSettings
from async_etl.core.stats import Snapshot
from async_etl.errors import ConfigError
from async_etl.jobs.api import Progress
from async_etl.runtime.engine import Engine
from async_etl.runtime.metrics import BenchCollector, JobCollector, serve_metrics
from async_etl.sinks import open_sink
from async_etl.sources.synthetic import Synthetic
from async_etl.testing.crate import CrateStandIn, StandInConfig


def scrape(port: int) -> dict[str, float]:
    """Every sample on ``/metrics`` as name{labels} -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


async def test_bench_metrics_agree_with_the_summary() -> None:
    """Scrapes during the run grow; the one after the last batch equals the summary's figures."""
    config = StandInConfig(count_only=True, latency_ms=5, busy_rate=0.05, seed=3)
    scrapes: list[dict[str, float]] = []
    async with CrateStandIn(config) as crate:
        settings = BenchSettings(
            sink=crate.url,
            records=20_000,
            batch_size=200,
            concurrency=4,
            generators=0,
            report_interval=0.2,
            retry_base=0.001,
            retry_cap=0.01,
            max_retries=20,
        )
        sink = open_sink(crate.url, settings)
        try:
            async with Engine(settings) as engine:
                collector = BenchCollector(
                    lambda: engine.stats, lambda: engine.limits.sends.total_tokens
                )
                with serve_metrics(0, [collector]) as port:
                    assert port is not None

                    def on_snapshot(_: Snapshot) -> None:
                        scrapes.append(scrape(port))

                    summary = await engine.run(Synthetic(), sink, on_snapshot=on_snapshot)
        finally:
            await sink.aclose()
    last = scrapes[-1]
    rows = [s["async_etl_rows_total"] for s in scrapes]
    assert summary.ok and rows == sorted(rows)
    assert last["async_etl_rows_total"] == summary.records == 20_000
    assert last["async_etl_batches_total"] == summary.batches
    assert last["async_etl_errors_total"] == summary.errors > 0
    assert last["async_etl_retries_total"] == summary.retries
    assert last["async_etl_rows_rejected_total"] == summary.rejected
    assert last["async_etl_rows_undelivered_total"] == summary.undelivered
    assert last["async_etl_concurrency_limit"] == 4
    assert last["async_etl_in_flight"] == 0
    attempts = summary.batches + summary.retries
    assert last["async_etl_request_latency_seconds_count"] == attempts
    assert last["async_etl_request_latency_seconds_bucket{le=+Inf}"] == attempts


def test_job_metrics_follow_the_last_progress_per_job() -> None:
    """Each job's rows read and chunks are its latest progress event, labelled by job."""
    collector = JobCollector()
    for done, rows in ((1, 100), (3, 350)):
        collector.observe(Progress("a", "r1", done, 4, rows, 1000.0, None))
    collector.observe(Progress("b", "r2", 1, 1, 7, 5.0, 0.0))
    with serve_metrics(0, [collector]) as port:
        assert port is not None
        got = scrape(port)
    assert got["async_etl_job_rows_read_total{job=a}"] == 350
    assert got["async_etl_job_chunks_done{job=a}"] == 3
    assert got["async_etl_job_chunks_total{job=a}"] == 4
    assert got["async_etl_job_rows_read_total{job=b}"] == 7


def test_a_busy_metrics_port_is_one_line() -> None:
    """A port already taken is a ConfigError naming --metrics-port and the address."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = pytest.raises(
            ConfigError, match=rf"^--metrics-port {port} on 127\.0\.0\.1: cannot listen"
        )
        with refused, serve_metrics(port, []):
            pass


def test_a_free_port_picked_for_port_0_is_announced() -> None:
    """--metrics-port 0: bench says on stderr which port it picked (else nobody could scrape)."""
    proc = subprocess.run(
        [sys.executable, "-m", "async_etl", "bench", "--sink", "null://", "-n", "10",
         "-j", "0", "--metrics-port", "0"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    found = re.search(r"serving metrics .*http://[^ ]*:(\d+)/metrics", proc.stderr)
    assert found is not None, proc.stderr
    assert int(found.group(1)) > 0


def _accepts(address: str, port: int) -> bool:
    """Whether a TCP connection to ``address``:``port`` is accepted."""
    try:
        socket.create_connection((address, port), timeout=5).close()
    except ConnectionRefusedError:
        return False
    return True


def test_metrics_listen_on_this_machine_only_by_default() -> None:
    """Without a host /metrics is bound to 127.0.0.1: another local address is refused."""
    with serve_metrics(0, []) as port:
        assert port is not None
        # 127.0.0.2 is this machine too (all of 127/8 is loopback): only a wildcard bind takes it
        assert _accepts("127.0.0.1", port)
        assert not _accepts("127.0.0.2", port)


def test_metrics_host_0_0_0_0_listens_on_every_interface() -> None:
    """host 0.0.0.0 (--metrics-host 0.0.0.0) serves /metrics on every local address."""
    with serve_metrics(0, [], "0.0.0.0") as port:
        assert port is not None
        assert _accepts("127.0.0.1", port) and _accepts("127.0.0.2", port)


def test_an_empty_metrics_host_is_refused() -> None:
    """An empty host (every interface to the socket layer) is a ConfigError, not a wildcard bind."""
    refused = pytest.raises(ConfigError, match=r"^--metrics-host: must be a host name")
    with refused, serve_metrics(0, [], " "):
        pass


def test_bench_metrics_host_is_announced() -> None:
    """bench --metrics-host 127.0.0.2: the serving metrics event names that address."""
    proc = subprocess.run(
        [sys.executable, "-m", "async_etl", "bench", "--sink", "null://", "-n", "10",
         "-j", "0", "--metrics-port", "0", "--metrics-host", "127.0.0.2"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"serving metrics .*http://127\.0\.0\.2:\d+/metrics", proc.stderr), proc.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["bench", "--sink", "null://", "-n", "10", "-j", "0"],
        ["run", "no-such-job.toml"],
        ["orchestrate", "no-such-plan.toml"],
        [
            "copy",
            "--source",
            "postgresql://127.0.0.1:1/none",
            "--source-table",
            "a",
            "--target",
            "postgresql://127.0.0.1:1/none",
            "--target-table",
            "b",
        ],
    ],
)
def test_metrics_host_without_a_port_is_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """--metrics-host alone (bench, run, orchestrate, copy): exit 2, one line naming both flags."""
    code = main([*argv, "--metrics-host", "0.0.0.0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "--metrics-host needs --metrics-port" in err[0]


def test_run_passes_an_empty_metrics_host_on_to_be_refused() -> None:
    """run/copy/orchestrate --metrics-host "": kept as given (serving refuses it), not 127.0.0.1."""
    from argparse import Namespace

    from async_etl.cli.run import metrics_address

    assert metrics_address(Namespace(metrics_port=9, metrics_host="")) == (9, "")
    assert metrics_address(Namespace(metrics_port=9, metrics_host=None)) == (9, "127.0.0.1")
