"""The built-in synthetic job (``kind = "sleep"`` in a plan): a stand-in for a mapper job.

Useful to dry-run a plan's shape (dependencies, limits, budgets, breaker) before the real jobs
exist, and to measure the orchestrator's own overhead.  A synthetic job:

1. opens ``connections`` real connections to its ``target`` PostgreSQL, each holding one token
   of the connection budget, all taken at once as a mapper job takes its minimum
   (``jobs.grant.reserved``: under the database's gate), so jobs never deadlock each other
   holding one token apiece;
2. fails at once with ``fail_kind`` while its attempt number is <= ``fail_times``;
3. otherwise sleeps ``seconds`` in ten progress steps, ending STOPPED (resumable) if its stop
   event is set, SUCCEEDED with ``rows`` rows otherwise.

Like ``run_job``, it never raises for a job failure: it returns a ``JobResult``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import anyio

from async_etl.core.urls import mask_url
from async_etl.drivers.postgres import PG_ERRORS, connect, translate_pg
from async_etl.errors import AsyncEtlError, ErrorKind, StopRequested
from async_etl.jobs.api import ConnectionBudget, JobResult, Progress
from async_etl.jobs.grant import Grant, reserved
from async_etl.orchestrator.plan import SyntheticJob

APP_PREFIX = "async-etl:synthetic"
"""``application_name`` prefix of a synthetic job's connections."""

STEPS = 10
"""Progress events per synthetic job (one per simulated chunk)."""


class SyntheticRunner:
    """Runs synthetic jobs (each attempt on its own connections)."""

    async def run(
        self,
        name: str,
        job: SyntheticJob,
        target: str,
        *,
        attempt: int,
        stop: anyio.Event,
        budget: ConnectionBudget,
        on_progress: Callable[[Progress], None],
    ) -> JobResult:
        """Run attempt number ``attempt`` (1-based) of the synthetic job ``name``."""
        started = datetime.now(UTC)
        run_id = f"synthetic-{name}-{attempt}"

        def result(status: Any, **extra: Any) -> JobResult:
            return JobResult(
                run_id=run_id,
                job=name,
                status=status,
                as_of=started,
                started_at=started,
                finished_at=datetime.now(UTC),
                chunks_total=STEPS,
                **extra,
            )

        try:
            async with AsyncExitStack() as stack:
                if job.connections:
                    need = {target: job.connections}
                    grant = await stack.enter_async_context(reserved(budget, need, stop))
                    conns = [
                        await stack.enter_async_context(
                            _connection(target, grant, f"{name}:{attempt}")
                        )
                        for _ in range(job.connections)
                    ]
                    for conn in conns:
                        await conn.fetchval("SELECT 1")
                if attempt <= job.fail_times:
                    message = f"synthetic failure {attempt} of {job.fail_times}"
                    return result("FAILED", error=message, error_kind=job.fail_kind)
                for step in range(1, STEPS + 1):
                    with anyio.move_on_after(job.seconds / STEPS):
                        await stop.wait()
                    if stop.is_set():
                        return result("STOPPED", chunks_done=step - 1)
                    rows = job.rows * step // STEPS
                    elapsed = max(1e-9, (datetime.now(UTC) - started).total_seconds())
                    on_progress(
                        Progress(
                            name,
                            run_id,
                            step,
                            STEPS,
                            rows,
                            rows / elapsed,
                            (STEPS - step) * elapsed / step,
                        )
                    )
        except StopRequested:  # while waiting for its connections
            return result("STOPPED")
        except AsyncEtlError as exc:
            kind = exc.kind if exc.kind in ErrorKind else ErrorKind.DB_PERMANENT
            return result("FAILED", error=exc.message, error_kind=kind)
        return result("SUCCEEDED", rows_read=job.rows, inserted=job.rows, chunks_done=STEPS)


@asynccontextmanager
async def _connection(url: str, grant: Grant, app: str) -> AsyncIterator[Any]:
    """A connection holding one token of ``grant``; driver errors become ``AsyncEtlError``."""
    async with grant.hold(url):
        conn = await connect(
            url,
            application_name=f"{APP_PREFIX}:{app}",
            timeout=10,
            where=f"PostgreSQL {mask_url(url)}",
        )
        try:
            yield conn
        except PG_ERRORS as exc:
            raise translate_pg(exc, f"PostgreSQL {mask_url(url)}") from exc
        finally:
            with anyio.CancelScope(shield=True):
                await conn.close(timeout=5)
