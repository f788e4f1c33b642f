"""What a run would do, as text: the SQL of each chunk and the plan's order (``check``).

Pure: the driver (``async_etl.jobs.dryrun``) collects the facts (columns, estimate, chunk
cuts) with reads only; this module decides which statements each target would run and
renders the report.  The statements are the very ones the drivers run (``scd_sql_pg``,
``scd_sql_crate``, ``scd_sql_oracle``, ``core.modes``), so the dry run cannot drift from the
real run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from async_etl.core import modes
from async_etl.core import scd_sql_crate as crate
from async_etl.core import scd_sql_oracle as ora
from async_etl.core import scd_sql_pg as pg
from async_etl.core.chunks import Chunk, ChunkSizing
from async_etl.core.scd_sql_common import quote, short_name
from async_etl.core.scd_sql_pg import STAGING
from async_etl.core.specs import ScdColumns

__all__ = ["ChunkRead", "JobFacts", "report", "target_statements"]


@dataclass(frozen=True, slots=True)
class ChunkRead:
    """One chunk and the source statement (text, bound values) that reads it."""

    chunk: Chunk
    text: str
    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class JobFacts:
    """What the read-only survey of one job learnt."""

    job: str
    mode: str
    dialect: str  # the target's: postgresql | cratedb | oracle
    table: str  # [target] table
    source: str  # masked URL
    target: str  # masked URL
    as_of: str
    run: str  # "new run <id>" or "resumes run <id>"
    estimate: int
    workers: int
    cols: ScdColumns
    key: tuple[str, ...]
    names: tuple[str, ...]
    chunks: tuple[ChunkRead, ...]
    null_keys: int = 0
    on_bad_row: str = "fail"
    built_as: str | None = None
    """The job's own mode when the run builds its absent target as a full refresh."""
    sizing: ChunkSizing | None = None
    """The rows per chunk the plan is cut for, and why (None: a resumed plan stored without)."""
    cuts_from: str | None = None
    """Where the plan's cuts came from (``chunks.Cuts.source``; None: a stored plan without)."""


def target_statements(facts: JobFacts, chunk: Chunk) -> list[str]:
    """The statements the target runs for ``chunk`` (binds as placeholders), in order."""
    table = modes.new_table(facts.table) if facts.mode == "full_refresh" else facts.table
    names = ", ".join(quote(n) for n in facts.names)
    if facts.dialect == "cratedb":
        rows = crate.current_rows_sql(table, facts.cols, facts.key, chunk).text
        return [crate.refresh_sql(table), rows,
                "-- diff in Python; idempotent bulk INSERT ... ON CONFLICT / UPDATE by key",
                crate.refresh_sql(table)]  # fmt: skip
    if facts.dialect == "oracle":
        staging = short_name(table, "stg")
        return [ora.staging_insert(staging, facts.names).text,
                *(st.text for st in ora.merge_statements(table, staging, facts.cols,
                                                         facts.key, chunk))]  # fmt: skip
    if facts.mode == "append":
        return [f"COPY {quote(table)} ({names}) FROM STDIN (FORMAT binary)"]
    direct = ", ".join(quote(n) for n in (*facts.names, *facts.cols.scd))
    if modes.indexes_after_load(facts.mode, facts.on_bad_row, facts.dialect):
        scd = " / ".join(facts.cols.scd)  # type 2: filled by the new table's defaults
        note = (f"-- {scd}: the new table's defaults (the as-of, NULL, true); when the target "
                "exists (its new table made LIKE it), sent with every row instead:")  # fmt: skip
        return ["-- the new table has no unique index yet (built after the last chunk):",
                *([note] if scd else []),
                f"COPY {quote(table)} ({names}) FROM STDIN (FORMAT binary)"]  # fmt: skip
    return [pg.range_is_empty_sql(table, facts.key, chunk).text,
            "-- if the range is empty (initial load), straight into the target:",
            f"COPY {quote(table)} ({direct}) FROM STDIN (FORMAT binary)",
            "-- otherwise staged, then merged:",
            f"COPY {quote(STAGING)} ({names}) FROM STDIN (FORMAT binary)",
            *(st.text for st in pg.merge_statements(table, STAGING, facts.cols, facts.key,
                                                    chunk))]  # fmt: skip


def finish_statements(facts: JobFacts) -> list[str]:
    """What runs once after the last chunk (the swap of a full refresh), else nothing."""
    if facts.mode != "full_refresh":
        return []
    if facts.dialect == "postgresql":
        new = modes.new_table(facts.table)
        kept = ["-- when the target exists (its new table was made LIKE it): its own indexes "
                "and constraints are built too, and the swap's transaction first carries over "
                "privileges, comment, options, foreign keys, owner and sequences "
                "(core.refresh_pg)"]  # fmt: skip
        drop = pg.drop_initial_default_sql(new, facts.cols).text  # type 2, not made LIKE
        default = ["-- unless made LIKE the target:", drop] if facts.cols.type == 2 else []
        return [*(st.text for st in pg.index_ddl(new, facts.cols)), *kept, *default,
                *(st.text for st in modes.pg_swap_sql(facts.table, facts.cols))]  # fmt: skip
    if facts.dialect == "cratedb":
        return [modes.crate_swap_sql(facts.table)]
    return [st.text for st in modes.oracle_swap_sql(facts.table, exists=True)]


def _built_as(facts: JobFacts) -> str:
    if facts.built_as is None:
        return ""
    return f" (a {facts.built_as} job whose target does not exist yet: its initial load)"


def _sizing(facts: JobFacts) -> str:
    if facts.sizing is None:
        return " as the unfinished run's stored plan was cut"
    if facts.sizing.rows is None:  # one chunk of every row the source query returns
        return f": every row ({facts.sizing.why})"
    return f" {facts.sizing.rows:,} ({facts.sizing.why})"


def _bounds(chunk: Chunk) -> str:
    low = "-inf" if chunk.lower is None else repr(tuple(chunk.lower))
    high = "+inf" if chunk.upper is None else repr(tuple(chunk.upper))
    return f"[{low}, {high})"


def report(facts: JobFacts) -> list[str]:
    """The dry-run report of one job, line by line."""
    lines = [
        f"job {facts.job}: mode {facts.mode}{_built_as(facts)}, {facts.source} -> "
        f"{facts.target} {facts.table}",
        f"  as-of {facts.as_of}, {facts.run}",
        f"  estimate {facts.estimate:,} rows, {len(facts.chunks)} chunk(s), "
        f"{facts.workers} worker(s)"
        + (f", {facts.null_keys:,} row(s) with a NULL key" if facts.null_keys else ""),
        f"  rows per chunk{_sizing(facts)}",
        f"  cuts from {facts.cuts_from or 'the unfinished run (not recorded)'}",
    ]
    for read in facts.chunks:
        text = read.text.replace("\n", "\n      ")  # a multi-line query stays indented
        lines.append(f"  chunk {read.chunk.index} {_bounds(read.chunk)}: {text}")
        if read.args:
            lines.append(f"    args {list(read.args)!r}")
    if facts.chunks:
        lines.append("  each chunk on the target (its bounds bound as above), in one go:")
        lines += [f"    {s}" for s in target_statements(facts, facts.chunks[0].chunk)]
    finish = finish_statements(facts)
    if finish:
        lines.append("  after the last chunk:")
        lines += [f"    {s}" for s in finish]
    return lines
