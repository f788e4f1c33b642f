"""async_etl: an asyncio-native ingestion engine.

Stream your own rows from any asyncio app::

    async with open_writer("postgresql://postgres@127.0.0.1:5432/app", table="events") as w:
        await w.write({"id": 1, "kind": "click"})
    print(w.report)          # delivered / rejected (with reasons) / undelivered

Run mapper jobs and plans from code (``run_job``, ``run_plan``), or the load generator::

    async with open_sink(url, table="bench") as sink, Engine(BenchSettings()) as engine:
        summary = await engine.run(Synthetic(), sink)

Silent by default: events go through stdlib ``logging`` (``async_etl.*``, NullHandler).
"""

from __future__ import annotations

from async_etl.config import BenchSettings, bench_settings
from async_etl.core.retry import RetryPolicy
from async_etl.core.schema import Column, Schema, default_schema, load_schema
from async_etl.core.stats import Snapshot
from async_etl.core.summary import Summary
from async_etl.errors import (
    AsyncEtlError,
    CheckpointError,
    ConfigError,
    DataError,
    ErrorKind,
    ExtractError,
    LoadError,
    TransientError,
)
from async_etl.jobs.api import JobResult, Progress
from async_etl.log import install_library_default
from async_etl.orchestrator.driver import PlanOutcome
from async_etl.runs import job_spec, plan_spec, run_job, run_plan
from async_etl.runtime.engine import Engine, Limits
from async_etl.runtime.writer import (
    RefusedRow,
    Writer,
    WriterReport,
    WriterSnapshot,
    open_writer,
)
from async_etl.sinks import open_sink
from async_etl.sources.synthetic import Synthetic

install_library_default()

__version__ = "0.1.0"

__all__ = [
    "AsyncEtlError",
    "BenchSettings",
    "CheckpointError",
    "Column",
    "ConfigError",
    "DataError",
    "Engine",
    "ErrorKind",
    "ExtractError",
    "JobResult",
    "Limits",
    "LoadError",
    "PlanOutcome",
    "Progress",
    "RefusedRow",
    "RetryPolicy",
    "Schema",
    "Snapshot",
    "Summary",
    "Synthetic",
    "TransientError",
    "Writer",
    "WriterReport",
    "WriterSnapshot",
    "__version__",
    "bench_settings",
    "default_schema",
    "job_spec",
    "load_schema",
    "open_sink",
    "open_writer",
    "plan_spec",
    "run_job",
    "run_plan",
]
