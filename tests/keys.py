"""The summary JSON keys issue 2 promises users (the contract the tests hold the code to)."""

SUMMARY_KEYS = frozenset(
    {
        "sink",
        "mode",
        "records",
        "seconds",
        "rows_per_s",
        "batches",
        "batch_size",
        "concurrency",
        "generators",
        "errors",
        "retries",
        "latency_ms",
        "cpu_percent",
        "peak_rss_mb",
    }
)
