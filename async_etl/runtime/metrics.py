"""Prometheus metrics for dashboards: ``--metrics-port N`` serves ``/metrics`` while a run goes.

The endpoint listens on 127.0.0.1 unless ``--metrics-host`` names another address (0.0.0.0:
every interface): a run's figures are not offered to the whole network by default.

Theory of operation
-------------------
Nothing is counted twice.  The runners already keep their figures (``RunStats`` for bench, the
``Progress`` events for jobs); a custom collector reads them **when Prometheus scrapes**, so the
hot paths pay nothing and a scrape agrees with the summary printed at the end.  The server is
``prometheus_client``'s own, on a daemon thread; ``collect`` runs on that thread and only reads
(dict copies are atomic under the GIL).  Each run gets its own ``CollectorRegistry``: two runs in
one process never share metrics.

Bench metrics (counters end in ``_total``): ``async_etl_rows_total`` (delivered),
``async_etl_batches_total``, ``async_etl_errors_total`` (failed attempts),
``async_etl_retries_total``, ``async_etl_rows_rejected_total``,
``async_etl_rows_undelivered_total``, gauges ``async_etl_in_flight`` and
``async_etl_concurrency_limit`` (the send limiter's tokens: fixed, or the adaptive limit now),
and the histogram ``async_etl_request_latency_seconds`` (per attempt; its buckets are read from
the run's log-bucketed histogram, within 1 % of the bucket bounds; the warm-up's samples are
dropped when it ends, which Prometheus sees as a counter reset).  Job metrics (``run`` and
``orchestrate``), labelled by ``job``: ``async_etl_job_rows_read_total``,
``async_etl_job_chunks_done``, ``async_etl_job_chunks_total``, ``async_etl_job_rows_per_second``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from async_etl.core.stats import RunStats
from async_etl.core.urls import METRICS_HOST
from async_etl.errors import ConfigError
from async_etl.log import get_logger
from async_etl.typing import Progress

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds of the latency histogram's buckets, in seconds (then +Inf)."""

log = get_logger(__name__)


class BenchCollector:
    """Reads a bench run's ``RunStats`` (and limit) at scrape time."""

    def __init__(
        self, stats: Callable[[], RunStats | None], limit: Callable[[], float] | None = None
    ) -> None:
        self._stats, self._limit = stats, limit

    def collect(self) -> Iterator[Any]:
        """The metric families (none before the run has started)."""
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        stats = self._stats()
        if stats is None:
            return
        for name, text, value in (
            ("async_etl_rows", "rows delivered", stats.rows),
            ("async_etl_batches", "batches fully accounted for", stats.batches),
            ("async_etl_errors", "failed attempts (retried or not)", stats.errors),
            ("async_etl_retries", "attempts that were retries", stats.retries),
            ("async_etl_rows_rejected", "rows the sink refused for good", stats.rejected),
            ("async_etl_rows_undelivered", "rows given up after retries", stats.undelivered),
        ):
            yield CounterMetricFamily(name, text, value=value)
        yield GaugeMetricFamily("async_etl_in_flight", "requests in flight", value=stats.in_flight)
        if self._limit is not None:
            yield GaugeMetricFamily(
                "async_etl_concurrency_limit", "batches allowed in flight", value=self._limit()
            )
        hist = stats.latency
        counts = hist.counts_at_most([bound * 1000.0 for bound in LATENCY_BUCKETS_S])
        buckets = [(repr(b), c) for b, c in zip(LATENCY_BUCKETS_S, counts, strict=True)]
        yield HistogramMetricFamily(
            "async_etl_request_latency_seconds",
            "latency of each request (attempt)",
            buckets=[*buckets, ("+Inf", hist.count)],
            sum_value=hist.total / 1000.0,
        )


class JobCollector:
    """Reads the last ``Progress`` of each job at scrape time (``observe`` is the callback)."""

    def __init__(self) -> None:
        self.last: dict[str, Progress] = {}

    def observe(self, progress: Progress) -> None:
        """Remember ``progress`` (called by the runner on each progress event)."""
        self.last[progress.job] = progress

    def collect(self) -> Iterator[Any]:
        """One sample per job and metric."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        last = dict(self.last)
        rows = CounterMetricFamily(
            "async_etl_job_rows_read", "rows read from the source", labels=["job"]
        )
        done = GaugeMetricFamily("async_etl_job_chunks_done", "chunks committed", labels=["job"])
        total = GaugeMetricFamily("async_etl_job_chunks_total", "chunks planned", labels=["job"])
        rate = GaugeMetricFamily("async_etl_job_rows_per_second", "rows/s now", labels=["job"])
        for job, p in sorted(last.items()):
            rows.add_metric([job], p.rows_read)
            done.add_metric([job], p.chunks_done)
            total.add_metric([job], p.chunks_total)
            rate.add_metric([job], p.rows_per_s)
        yield from (rows, done, total, rate)


@contextmanager
def serve_metrics(
    port: int | None, collectors: Iterable[Any], host: str = METRICS_HOST
) -> Iterator[int | None]:
    """Serve ``/metrics`` on ``host``:``port`` (0: any free one) while inside; yields the port.

    Logs one ``serving metrics`` event with the port bound (the CLI shows it on stderr).

    ``port`` None serves nothing.  ``host`` is the address to listen on (default 127.0.0.1,
    this machine only; 0.0.0.0 every interface).  Raises ``ConfigError`` when prometheus-client
    is missing, ``host`` is empty or the address cannot be bound.
    """
    if port is None:
        yield None
        return
    if not host.strip():  # the socket layer would take "" for every interface
        raise ConfigError(f"--metrics-host: must be a host name or address, got {host!r}")
    try:
        from prometheus_client import CollectorRegistry, start_http_server
    except ImportError:
        raise ConfigError(
            "--metrics-port needs prometheus-client: pip install 'async-etl[metrics]'"
        ) from None
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        why = exc.strerror or exc
        raise ConfigError(f"--metrics-port {port} on {host}: cannot listen ({why})") from None
    bound = int(server.server_port)
    # the one place a port picked for 0 shows: without it nothing could find the endpoint
    log.info(
        "serving metrics", host=host, port=bound, url=f"http://{_url_host(host)}:{bound}/metrics"
    )
    try:
        yield bound
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _url_host(host: str) -> str:
    """``host`` as it goes in a URL: a wildcard is reached here as localhost; IPv6 in brackets."""
    if host in ("0.0.0.0", "::"):
        return "localhost"
    return f"[{host}]" if ":" in host else host
