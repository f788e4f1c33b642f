"""``check_job``: what a run of a job would do, learnt with reads only (the ``check`` command).

Order of operations: the state store is opened (connect only; its tables are never created),
``planning.preflight`` validates and reads the source's columns, the target's shape and the
unfinished run if any (and ``planning.builds_new_table`` whether a merge / SCD2 run would
build its absent target as a full refresh), ``planning.survey`` estimates rows and cuts the
chunks (a resumed run's stored plan instead) for the rows per chunk ``planning.chunk_sizing``
picks (once, in the survey), and each chunk's source statement is built.
Nothing is written anywhere: no table, no run record, no lock that outlives the connection.
"""

from __future__ import annotations

import anyio

from async_etl.core import chunks as ch
from async_etl.core.dryrun import ChunkRead, JobFacts
from async_etl.core.urls import dialect_of, mask_url
from async_etl.errors import AsyncEtlError, unusable
from async_etl.jobs.api import JobOptions
from async_etl.jobs.budget import LimiterBudget
from async_etl.jobs.context import BudgetHolder, ConnectionMeter, JobContext
from async_etl.jobs.endpoints import make_source, make_target
from async_etl.jobs.planning import (
    as_new_build,
    builds_new_table,
    preflight,
    stored_sizing,
    survey,
)
from async_etl.jobs.spec import JobSpec, refuse_unused
from async_etl.jobs.state import StateStore
from async_etl.runtime.retrying import retrying
from async_etl.sources.port import Source

__all__ = ["check_job"]


async def check_job(spec: JobSpec, options: JobOptions = JobOptions()) -> JobFacts:  # noqa: B008
    """Survey ``spec`` without writing; raises ``ConfigError`` (one line) on any problem.

    Connection failures that persist after the run's retries raise as the run would.
    """
    refuse_unused(spec)  # a spec built in code; the loader refuses the same in a file
    options = options.with_job_retry(spec.retry)
    source, target = make_source(spec), make_target(spec)
    holder = BudgetHolder(LimiterBudget(3), ConnectionMeter())
    store = StateStore(spec.state.url, holder, app=f"{spec.name}:check", policy=options.retry)
    try:
        await store.__aenter__()
    except AsyncEtlError as exc:
        raise unusable(f"job {spec.name}: state store: {exc.message}", exc) from exc
    try:
        decision = await preflight(spec, options, source, target, store, holder)
    finally:
        await store.__aexit__(None, None, None)
    built_as = None
    if await builds_new_table(spec, decision, target, holder, f"{spec.name}:check",
                              options.retry):  # fmt: skip
        built_as, spec = spec.mode, as_new_build(spec)
    if decision.window is not None:
        read, source = source.plan_read, make_source(spec, decision.window)
        source.plan_read = read  # the cursor check's EXPLAIN: the estimate's too
    ctx = JobContext(spec=spec, run_id=decision.run_id, as_of=decision.as_of,
                     columns=decision.columns, cols=decision.cols, hold=holder,
                     stop=anyio.Event(), state_url=spec.state.url, window=decision.window,
                     collate=decision.collate, policy=options.retry)  # fmt: skip
    estimate, nulls, cuts, _, new_sizing = await retrying(
        lambda: survey(ctx, decision, source), ctx.policy, what="plan chunks"
    )
    if decision.resumed_plan is not None:
        plan = ch.ChunkPlan.from_json(decision.resumed_plan)
        run = f"resumes unfinished run {decision.run_id}"
        sizing = stored_sizing(decision.resumed_plan)
        cuts_from = decision.resumed_plan.get("cuts_from")
    else:
        plan = ch.plan_chunks(cuts.values, decision.collate)
        run = f"a new run (run id at start, e.g. {decision.run_id})"
        sizing = new_sizing  # the size the survey cut the chunks for
        cuts_from = cuts.source
    reads = tuple(_read(source, c) for c in plan.chunks)
    return JobFacts(job=spec.name, mode=spec.mode, dialect=dialect_of(spec.target.url) or "",
                    table=spec.target.table, source=mask_url(spec.source.url),
                    target=mask_url(spec.target.url), as_of=decision.as_of.isoformat(), run=run,
                    estimate=estimate, workers=ch.workers(estimate, spec.parallel),
                    cols=decision.cols, key=spec.source.key, names=ctx.names, chunks=reads,
                    null_keys=nulls, on_bad_row=spec.on_bad_row, built_as=built_as,
                    sizing=sizing, cuts_from=cuts_from)  # fmt: skip


def _read(source: Source, chunk: ch.Chunk) -> ChunkRead:
    """The statement that reads ``chunk`` from the source, with its bound values."""
    st, args = source.extract(chunk)
    return ChunkRead(chunk, st.text, tuple(args))
