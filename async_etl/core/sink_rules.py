"""The decisions both twins of a sink share: the async adapter and its blocking twin.

Theory of operation
-------------------
Each sink exists twice, once over an async driver (asyncpg, aiohttp) for the event-loop runner
and once over a blocking one (psycopg, urllib3) for the thread runner.  The twins must answer
the same faults the same way, so every decision they share is made here, without I/O, and the
twins only move bytes:

* ``ask_ledger(attempt)``: an attempt after the first may follow a lost commit acknowledgement,
  so a PostgreSQL twin asks its ledger whether the batch already landed (``landed`` is then the
  answer to report) before it writes again; a CrateDB twin sends it as a resend instead.
* ``refused(batch, err)``: a data error refuses a COPY as a whole (it is all or nothing), so
  every row of the batch — ``batch.row_ids()``, a retry's subset included — is rejected with the
  error's message; any other error is raised (``outcome`` tells which).
* ``start_after(ledgered, table_next)``: a new run starts after the table's ledgered batches,
  else after its highest id, else at id 1 (an empty table without a ledger).
* ``closed(where)``: a twin used after ``close`` / ``aclose`` (or before ``prepare``) raises
  the same one-line ``LoadError``; no twin asserts.
* ``resend_key(pk, id_column)``: what a CrateDB resend's ``ON CONFLICT`` names.

Connect-time refusals are classified once too (``core.classify.fatal_sqlstate``): both
PostgreSQL twins turn a server's ``FATAL`` into its SQLSTATE and ask ``classify_sqlstate``.
"""

from __future__ import annotations

from async_etl.errors import AsyncEtlError, DataError, LoadError
from async_etl.typing import EncodedBatch, RowError, SendResult

__all__ = ["ask_ledger", "closed", "landed", "outcome", "refused", "resend_key", "start_after"]


def ask_ledger(attempt: int) -> bool:
    """True when attempt number ``attempt`` (1-based) must first ask whether the batch landed."""
    return attempt > 1


def landed(batch: EncodedBatch) -> SendResult:
    """The result for a batch the ledger shows committed: every row delivered, once."""
    return SendResult(delivered=batch.row_count)


def refused(batch: EncodedBatch, reason: str) -> SendResult:
    """The result for a batch the target refused as a whole: each of its rows, with ``reason``."""
    return SendResult(delivered=0, rejected=tuple(RowError(i, reason) for i in batch.row_ids()))


def outcome(batch: EncodedBatch, err: AsyncEtlError) -> SendResult | None:
    """After a failed write of ``batch``: the refusal to report (a data error), None to raise."""
    if isinstance(err, DataError):
        return refused(batch, err.message)
    return None


def start_after(ledgered: int | None, table_next: int | None) -> int:
    """The first id of a new run: after the ledgered batches, else the table's ids, else 1."""
    if ledgered is not None:
        return int(ledgered)
    if table_next is not None:
        return int(table_next)
    return 1


def check_shape(where: str, table: str, problems: list[str]) -> None:
    """Raise ``LoadError`` naming what keeps an existing ``table`` from taking the rows.

    ``problems`` comes from ``core.schema``'s shape checks; empty means the table fits.  Found
    before the run, a table of the wrong shape is bad input (exit 2), not a run of rejects.
    """
    if problems:
        raise LoadError(f"{where}: table {table} does not fit the records: {'; '.join(problems)}")


def closed(where: str) -> LoadError:
    """The error for a sink used after it was closed (or before ``prepare``)."""
    return LoadError(f"{where}: sink is closed")


def resend_key(pk: tuple[str, ...], id_column: str) -> tuple[str, ...]:
    """The columns a CrateDB resend's ``ON CONFLICT`` names: the primary key, else the id."""
    return pk or (id_column,)
