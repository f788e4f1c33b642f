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

# first: the command's process collects no garbage while it imports (see there)
import async_etl._launch  # noqa: F401

# isort: split
from typing import TYPE_CHECKING

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
from async_etl.log import install_library_default

if TYPE_CHECKING:  # the lazily imported names, for type checkers
    from async_etl.config import BenchSettings, bench_settings
    from async_etl.core.retry import RetryPolicy
    from async_etl.core.schema import Column, Schema, default_schema
    from async_etl.core.stats import Snapshot
    from async_etl.core.summary import Summary
    from async_etl.jobs.api import JobResult
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
    from async_etl.sources.synthetic import Synthetic, load_schema
    from async_etl.typing import Progress

_LAZY: dict[str, str] = {
    "BenchSettings": "async_etl.config",
    "bench_settings": "async_etl.config",
    "RetryPolicy": "async_etl.core.retry",
    "Column": "async_etl.core.schema",
    "Schema": "async_etl.core.schema",
    "default_schema": "async_etl.core.schema",
    "load_schema": "async_etl.sources.synthetic",
    "Snapshot": "async_etl.core.stats",
    "Summary": "async_etl.core.summary",
    "JobResult": "async_etl.jobs.api",
    "Progress": "async_etl.typing",
    "PlanOutcome": "async_etl.orchestrator.driver",
    "job_spec": "async_etl.runs",
    "plan_spec": "async_etl.runs",
    "run_job": "async_etl.runs",
    "run_plan": "async_etl.runs",
    "Engine": "async_etl.runtime.engine",
    "Limits": "async_etl.runtime.engine",
    "RefusedRow": "async_etl.runtime.writer",
    "Writer": "async_etl.runtime.writer",
    "WriterReport": "async_etl.runtime.writer",
    "WriterSnapshot": "async_etl.runtime.writer",
    "open_writer": "async_etl.runtime.writer",
    "open_sink": "async_etl.sinks",
    "Synthetic": "async_etl.sources.synthetic",
}
"""Public name -> the module it lives in, imported on first use (PEP 562): ``import
async_etl`` (and so every ``async-etl`` command) does not pay for aiohttp, the writer and the
orchestrator unless it uses them."""


def __getattr__(name: str) -> object:
    """Import a public name's module on first access; ``AttributeError`` for unknown names."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'async_etl' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


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
