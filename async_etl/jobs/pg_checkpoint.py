"""A chunk's checkpoint in its own transaction on a PostgreSQL target holding the state.

``checkpoint_in`` runs ``state_sql.CHECKPOINT_CHUNK`` (and the chunk's rejects) inside the
transaction that loaded the chunk, so the chunk and its checkpoint commit together or not at
all.  The statement inserts nothing when the chunk is COMMITTED already; the row lock it takes
orders two commits of one chunk, so that is seen even when the other commit was in flight.
Two ways to get there, told apart by the checkpoint's ``loader`` (``JobContext.loader``):

* an earlier attempt of this chunk in this same ``run_job`` call committed it, and the client
  saw its connection drop before the acknowledgement (a lost COMMIT reply): the chunk is
  done.  ``Landed`` carries the result counted from that checkpoint (rows read, change
  counts, rejects), and rolls this second load back as it leaves the transaction; the
  caller returns that result, so nothing is loaded or counted twice;
* anything else (another process resumed the run after this one lost its job lock, or the
  checkpoint names no loader or other bounds) is a ``CheckpointError``, loud as before.

When the run state is in another database, the target keeps a ledger instead
(``state_sql.LANDED_DDL``; ``ensure_ledger``, ``checkpoint_in(ledger=True)``): the chunk's
transaction inserts its row there, and a load that finds the row (a lost COMMIT reply, or a
process that died before its state store recorded the checkpoint) rolls back, answered from
the row; the runner then records the checkpoint in the state store.  Any loader of the run
counts: the rows are in the target once, whoever put them there.  Once the state store
records the run SUCCEEDED, the runner deletes the rows of the job's runs (``landed_runs``, of
those the ones the state store names the job's, then ``forget_landed``):
every chunk's checkpoint is in the state store then, and no run resumes those runs, so no
load asks for them again (a run that failed, stopped or was killed keeps its rows for its
resumption).  The job's lock is held meanwhile.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from async_etl.core import state_sql
from async_etl.core.chunks import Chunk
from async_etl.core.scd_sql_common import quote
from async_etl.errors import CheckpointError
from async_etl.jobs.context import COUNTERS, ChunkResult, JobContext, Reject
from async_etl.log import get_logger

__all__ = [
    "LEDGER",
    "LEDGER_DDL_LOCK",
    "Landed",
    "checkpoint_in",
    "ensure_ledger",
    "forget_landed",
    "in_schema_of",
    "landed_runs",
]

log = get_logger(__name__)

LEDGER = "async_etl_landed"
LEDGER_DDL_LOCK = 0x6A57_0E73  # arbitrary, constant: serialises creating the targets' ledgers


class Landed(Exception):  # noqa: N818 - a signal that rolls a transaction back, not an error
    """Raised inside a chunk's transaction: an earlier attempt's commit holds the chunk.

    ``result`` is that commit's ``ChunkResult`` (from its checkpoint), to return instead.
    """

    def __init__(self, result: ChunkResult) -> None:
        super().__init__(f"chunk {result.index} committed by an earlier attempt")
        self.result = result


async def checkpoint_in(
    conn: Any,
    ctx: JobContext,
    chunk: Chunk,
    rows: int,
    counts: dict[str, int],
    rejects: list[Reject],
    where: str,
    *,
    ledger: bool = False,
) -> None:
    """Checkpoint ``chunk`` (``rows`` read, ``counts``, ``rejects``) in ``conn``'s transaction.

    Raises ``Landed`` when this run's earlier attempt committed the chunk already, and
    ``CheckpointError`` (``where`` first) when someone else did; see the module doc.
    ``ledger``: the run state is elsewhere; record the chunk in the target's ledger instead
    (the module doc).
    """
    bounds = orjson.dumps(chunk.to_json()).decode()
    if ledger:
        counted = state_sql.chunk_counts(counts, len(rejects))
        await _land_in(conn, ctx, chunk, bounds, rows, counted, tuple(rejects))
        return
    status = await conn.execute(
        state_sql.CHECKPOINT_CHUNK.text,
        ctx.run_id,
        chunk.index,
        bounds,
        rows,
        ctx.chunk_cursor,
        state_sql.chunk_counts(counts, len(rejects)),
        ctx.loader,
    )
    if status == "INSERT 0 0":  # committed meanwhile: roll this copy back
        found = await conn.fetchrow(state_sql.CHECKPOINT_OF.text, ctx.run_id, chunk.index)
        own = None if found is None else state_sql.landed_before(tuple(found), bounds, ctx.loader)
        if own is not None:
            read, done = own
            log.warning("chunk_committed_before", chunk=chunk.index, rows=read,
                        reason="an earlier attempt's COMMIT was not acknowledged")  # fmt: skip
            result = ChunkResult(chunk.index, read, {k: done[k] for k in COUNTERS},
                                 checkpointed=True, rejects_before=done["rejected"])  # fmt: skip
            raise Landed(result)
        raise CheckpointError(
            f"{where}: chunk {chunk.index} of run {ctx.run_id} was committed "
            "by another process; this load of it is rolled back. Run the job again to "
            "resume it"
        )
    if rejects:
        await conn.executemany(
            state_sql.INSERT_REJECT.text,
            [(ctx.spec.name, ctx.run_id, k, r) for k, r in rejects],
        )


def in_schema_of(table: str, text: str) -> str:
    """``text`` with the ledger ``async_etl_landed`` in the schema of the target ``table``.

    The job may create tables there (it creates its target there); ``public`` it may not
    (PostgreSQL 15 and later grant CREATE on it to its owner only).  An unqualified ``table``
    keeps the ledger unqualified: the search path's first schema, where the target goes too.
    """
    schema, dot, _ = table.rpartition(".")
    return text.replace(LEDGER, f"{quote(schema)}.{LEDGER}") if dot else text


async def ensure_ledger(conn: Any, table: str) -> None:
    """Create the chunk ledger beside ``table`` if missing (two jobs at once: one at a time)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", LEDGER_DDL_LOCK)
        await conn.execute(in_schema_of(table, state_sql.LANDED_DDL.text))


async def landed_runs(conn: Any, table: str) -> list[str]:
    """The runs (of any job) the ledger beside ``table`` holds rows of."""
    return [str(r[0]) for r in await conn.fetch(in_schema_of(table, state_sql.LANDED_RUNS.text))]


async def forget_landed(conn: Any, table: str, run_ids: Sequence[str]) -> None:
    """Delete the ledger rows beside ``table`` of ``run_ids``: runs no load asks for again."""
    await conn.execute(in_schema_of(table, state_sql.FORGET_LANDED.text), list(run_ids))


async def _land_in(
    conn: Any,
    ctx: JobContext,
    chunk: Chunk,
    bounds: str,
    rows: int,
    counts: str,
    rejects: tuple[Reject, ...],
) -> None:
    """Record ``chunk`` in the target's ledger, in ``conn``'s transaction (see the module doc).

    Raises ``Landed`` when the chunk had landed already (the result counted from its ledger
    row, with ``rejects``: this load found the same ones, and the runner records them in the
    state store with the checkpoint), and ``CheckpointError`` when that row holds other bounds.
    """
    args = (ctx.run_id, chunk.index, bounds, rows, counts, ctx.loader)
    table = ctx.spec.target.table
    if await conn.execute(in_schema_of(table, state_sql.LAND_CHUNK.text), *args) != "INSERT 0 0":
        return
    found = await conn.fetchrow(in_schema_of(table, state_sql.LANDED_OF.text), ctx.run_id,
                                chunk.index)  # fmt: skip
    own = None
    if found is not None:  # whichever loader: the rows are there once
        own = state_sql.landed_before((*tuple(found)[:3], ctx.loader), bounds, ctx.loader)
    if own is None:
        raise CheckpointError(
            f"chunk {chunk.index} of run {ctx.run_id} is in the target's ledger with other "
            "bounds; this load of it is rolled back"
        )
    read, done = own
    why = "its COMMIT was not acknowledged, or the state store never recorded it"
    log.warning("chunk_landed_before", chunk=chunk.index, rows=read, reason=why)
    raise Landed(ChunkResult(chunk.index, read, {k: done[k] for k in COUNTERS}, rejects))
