"""async_etl: an asyncio-native ingestion engine.

Embed the load generator in an async app::

    from async_etl import BenchSettings, Engine, Synthetic, open_sink

    settings = BenchSettings(sink="postgresql://postgres@127.0.0.1:5432/test", records=100_000)
    sink = open_sink(settings.sink, settings)
    async with Engine(settings) as engine:
        summary = await engine.run(Synthetic(), sink)
    await sink.aclose()
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
