"""Example 3: a mapper job started from an async app, with a progress callback.

    python -m examples.embedding.job_from_app postgresql://postgres@127.0.0.1/app

The job copies ``src.customers`` into ``dw.customers`` as SCD type 2 (history kept) with the
spec built in code — the same validation and one-line errors as a job file.  Progress events
arrive while the app keeps serving other work; a stop event (here: SIGTERM / SIGINT) ends the
run at a safe point, and running it again resumes.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

import anyio

from async_etl import AsyncEtlError, ConfigError, JobResult, Progress, run_job


def customers_job(dsn: str) -> dict[str, Any]:
    """The job spec, shaped like a job file's TOML."""
    return {
        "name": "customers",
        "source": {"url": dsn, "query": "SELECT id, name, city FROM src.customers", "key": ["id"]},
        "target": {"url": dsn, "table": "dw.customers"},
        "scd": {"type": 2, "tracked": ["name", "city"]},
        "parallel": {"chunk_size": 1000, "max_workers": 2, "min_rows_for_parallel": 0},
    }


async def run(dsn: str, *, on_progress: Any = None) -> JobResult:
    """Run the job next to the app's other tasks; SIGTERM / SIGINT stop it at a safe point."""
    stop = anyio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def show(p: Progress) -> None:
        eta = f"{p.eta_s:.0f}s" if p.eta_s is not None else "?"
        print(f"{p.job}: {p.chunks_done}/{p.chunks_total} chunks, {p.rows_read} rows, eta {eta}")

    try:
        return await run_job(customers_job(dsn), stop=stop, on_progress=on_progress or show)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def main(argv: list[str] | None = None) -> int:
    """Run once; exit status 0 when the run succeeded, 2 for bad input (one line)."""
    p = argparse.ArgumentParser(
        prog="python -m examples.embedding.job_from_app",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    p.add_argument("url", metavar="POSTGRES_URL", help="postgresql://... (source and target)")
    args = p.parse_args(argv)
    try:
        result = asyncio.run(run(args.url))
    except AsyncEtlError as exc:
        print(f"job_from_app: error: {exc.message}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    print(f"{result.status}: inserted {result.inserted}, updated {result.updated}, "
          f"expired {result.expired}")  # fmt: skip
    return 0 if result.status == "SUCCEEDED" else 1


if __name__ == "__main__":
    sys.exit(main())
