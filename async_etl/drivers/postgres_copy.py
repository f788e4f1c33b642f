"""PostgreSQL: one statement and a binary COPY after it, as one simple query (one round trip).

Theory of operation
-------------------
PostgreSQL runs the statements of one simple ``Query`` message as one implicit transaction
(unless they contain transaction control): ``copy_after(conn, before, ...)`` sends
``<before>; COPY t (cols) FROM STDIN (FORMAT binary)`` as one such query, followed at once by
the COPY's data and its end, so that::

    client ── Query "<before>; COPY ..." + CopyData ... + CopyDone ──> server
    server ── CommandComplete (before), CopyInResponse, CommandComplete (COPY), ReadyForQuery

is one round trip, and ``before`` (the writer's ledger row) and the rows commit together or
not at all.  ``before`` runs first, so what it locks (the ledger key) is held for the whole
COPY.  When ``before`` fails, the server answers with its error and ReadyForQuery and ignores
the COPY data that follows (it skips stray CopyData / CopyDone outside a COPY); when the COPY
fails, nothing of either is kept.  Either way the connection is left idle, out of any
transaction.

asyncpg's public ``copy_records_to_table`` sends the COPY alone; the work here is the same
calls it makes (``Connection._prepare`` of the introspection query that gives the columns'
binary encoders, then ``_protocol.copy_in``), with the statement text extended.  Those are
asyncpg internals (the same from 0.29 to 0.32 by their source; the package asks for 0.32, the
version the tests run them with against a real server).  The introspection query may cast a
column (``encode_as``) so that its values go through another type's encoder with the same
binary format (the writer sends a ``timestamptz`` column's values as naive UTC datetimes
through asyncpg's ``timestamp`` encoder: both are int64 microseconds since 2000-01-01, and the
``timestamp`` encoder costs less than half the ``timestamptz`` one, see ``core.pg_native``).

The server answers a refused ``before`` while the COPY data is still arriving, and skips that
data; PgBouncer in transaction pooling mode does not expect COPY messages after an error
(pgbouncer PR #1470) and drops the server connection, so a connection that runs this must be
direct or pooled per session (replayed with PgBouncer 1.18; no pooler in the tests).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable, Sequence
from typing import Any

from async_etl.core.scd_sql_common import ident


async def copy_after(
    conn: Any,
    before: str | None,
    table: str,
    columns: Sequence[str],
    *,
    schema: str | None = None,
    records: Iterable[Sequence[Any]] | AsyncIterable[Sequence[Any]] | None = None,
    payload: bytes = b"",
    encode_as: Sequence[str | None] = (),
) -> str:
    """Run ``before`` (one statement, no parameters; None: none), then COPY into ``table``.

    The COPY sends ``records`` (asyncpg's binary encoders, from the table's column types), or
    when that is None ``payload`` (a whole binary COPY stream: signature, rows, trailer).
    ``encode_as``: for each column, None or the SQL type (trusted text, inserted as it is)
    whose asyncpg encoder takes its ``records`` values; that type's binary format must be the
    column's own (the server reads the bytes as the column's type).  One
    simple query: one round trip, one implicit transaction (see the module docstring).
    ``conn`` is an idle asyncpg connection (or a pool's proxy of one).  Returns the COPY's
    status (``COPY n``).  Raises asyncpg's ``PostgresError`` for what the server refuses
    (``before``'s error, or the COPY's: nothing is kept), and what asyncpg's encoders raise
    on the client (``TypeError``, ``ValueError``, ``OverflowError``: the COPY is aborted,
    nothing is kept).
    """
    target = ident(table) if schema is None else f"{ident(schema)}.{ident(table)}"
    cols = ", ".join(map(ident, columns))
    statement = f"COPY {target} ({cols}) FROM STDIN (FORMAT binary)"
    if before is not None:
        statement = f"{before}; {statement}"
    status: str
    if records is None:
        status = await conn._protocol.copy_in(statement, None, payload, None, None, None)
        return status
    picked = cols
    if any(encode_as):
        casts = zip(map(ident, columns), encode_as, strict=True)
        picked = ", ".join(name if cast is None else f"{name}::{cast}" for name, cast in casts)
    intro = await conn._prepare(f"SELECT {picked} FROM {target} LIMIT 1", use_cache=True)
    status = await conn._protocol.copy_in(statement, None, None, records, intro._state, None)
    return status


__all__ = ["copy_after"]
