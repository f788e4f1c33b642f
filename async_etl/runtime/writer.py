"""The writer: a host's own rows, batched and delivered with the engine's bounds and retries.

Theory of operation
-------------------
``open_writer(url, table=...)`` returns a ``Writer``; ``async with`` opens it (connects, reads
the table's columns, creates it when declared) and closes it (flush, wait, report).  One
background task per writer (started on open, awaited on close) owns a task group::

    write(row) ──normalize──> RowBuffer (open batch; pure: core.batching)
        └─ waits while the open batch is full                     ← backpressure
    shipper: takes the batch when full / lingered / flushed / closing,
        after taking one token of ``limits.in_flight``           ← bounded in flight
        └─ one delivery task per batch: encode (a thread above ``offload_values``, under
           ``limits.encoding``), then ``engine.deliver`` (Delivery + RetryPolicy, as bench)

* Rows get consecutive sequence numbers; a batch is a contiguous range.  PostgreSQL ledgers
  it under the writer's own key (exactly once across retries); CrateDB resends with
  ``ON CONFLICT (pk) DO NOTHING``.
* ``Book`` (pure) accounts every row: delivered, rejected (the sink's or the encoder's
  reason; the rows themselves kept up to ``keep_rows``) or undelivered (retries ran out, a
  fatal error, ``abort()``, cancellation).  ``report`` is built from it.
* ``abort()`` and cancelling the task inside ``async with``: buffered rows are undelivered;
  deliveries in flight are cancelled, and a cancelled batch is asked whether it committed
  (PostgreSQL's ledger, shielded) before it is counted delivered or undelivered.
* A fatal error (bad credentials, a dropped table) stops the writer: later ``write`` calls
  and ``aclose`` raise it; the report still accounts for every row.
* The limits are ``anyio.CapacityLimiter`` objects: change ``total_tokens`` while it runs.
* ``write_many`` takes a list a slice at a time (as many rows as the open batch has room
  for): rows shaped, sized and counted a column at a time (``RowShape.normalize_many``,
  ``row_sizes``, ``RowBuffer.add_many``); a slice with a row that does not fit goes row by row,
  so that row is rejected with its reason and the others are taken.
* PostgreSQL: a batch is one round trip: its ledger row and its COPY as one simple query,
  which the server runs as one implicit transaction (``drivers.postgres_copy``).  A batch
  that ``core.pg_native.ColumnPlan`` passes is handed to asyncpg as rows (``RecordsBatch``; C
  encoders, exact by that check); any other batch is encoded by the reference encoders,
  which refuse a bad row with its reason.
* The host loop stays responsive: ``write`` yields at least every millisecond even when it
  need not wait; the ``plain`` check and asyncpg's encoding run in slices of
  ``SLICE_VALUES`` values with a yield between; batches the reference encoders take are
  encoded in a thread above ``offload_values`` (``limits.encoding``).

Modules: ``writer_run`` (``Writer``: life cycle, ``write``, the shipping task),
``writer_intake`` (the open batch: shaping, sizes, counting; no I/O), ``writer_send`` (one
batch's delivery and accounting), ``writer_report`` (limits, report, snapshots).
"""

from __future__ import annotations

from collections.abc import Sequence

from async_etl.core.batching import BatchLimits
from async_etl.core.retry import RetryPolicy
from async_etl.errors import ConfigError
from async_etl.runtime.writer_report import (
    RefusedRow,
    SnapshotCallback,
    WriterLimits,
    WriterReport,
    WriterSnapshot,
)
from async_etl.runtime.writer_run import Writer
from async_etl.sinks import sink_scheme
from async_etl.sinks.cratedb_rows import CrateRowsSink
from async_etl.sinks.postgres_rows import PostgresRowsSink
from async_etl.sinks.rows import NullRowsSink, RowsSink
from async_etl.sinks.rows_common import Declared


def open_writer(
    url: str,
    *,
    table: str,
    columns: Declared = None,
    primary_key: Sequence[str] = (),
    batch_rows: int = 5000,
    batch_bytes: int = 8 * 1024 * 1024,
    linger_ms: float = 50.0,
    max_in_flight: int = 4,
    retry: RetryPolicy | None = None,
    on_snapshot: SnapshotCallback | None = None,
    snapshot_interval: float = 1.0,
    connections: int | None = None,
    gzip_threshold: int | None = None,
) -> Writer:
    """A ``Writer`` into ``table`` at ``url`` (PostgreSQL, CrateDB ``http(s)://``, ``null://``).

    Use it as ``async with open_writer(...) as writer:``.  ``columns``: a mapping name ->
    SQL type creates the table when missing (with ``primary_key``; on PostgreSQL each type
    must be one the server knows and, for a table that exists, its column's type: see
    ``core.writer_sql.declared_problem``); a sequence of names
    fills only those; None fills every column but the generated ones and, on PostgreSQL,
    ``GENERATED ALWAYS`` identities.  A dict row's missing key is NULL (a column's DEFAULT
    applies only to a column left out of ``columns``).  A batch closes at ``batch_rows`` rows,
    ``batch_bytes`` (estimated) bytes or ``linger_ms`` after its first row; at most
    ``max_in_flight`` batches are delivered at once (``connections`` defaults to that).
    ``gzip_threshold`` (CrateDB only): request bodies of at least this many bytes are sent
    gzipped, 0 never (default 8192, as ``bench``; on a fast local link gzip costs more CPU
    than it saves).  Raises ``ConfigError`` in one line for a bad URL, table name or limit,
    and for ``gzip_threshold`` with a URL that is not CrateDB's.
    """
    scheme = sink_scheme(url, "url")
    try:
        limits = BatchLimits(batch_rows, batch_bytes, linger_ms / 1000.0)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if max_in_flight < 1:
        raise ConfigError(f"max_in_flight must be at least 1, got {max_in_flight}")
    pool = connections or max_in_flight
    if pool < 1:
        raise ConfigError(f"connections must be at least 1, got {pool}")
    crate = scheme not in ("null", "postgresql", "postgres")
    if gzip_threshold is not None and not crate:
        raise ConfigError(f"gzip_threshold applies to CrateDB URLs only, not {scheme}://")
    if gzip_threshold is not None and gzip_threshold < 0:
        raise ConfigError(f"gzip_threshold must be 0 (never) or more, got {gzip_threshold}")
    sink: RowsSink
    if scheme == "null":
        sink = NullRowsSink()
    elif not crate:
        sink = PostgresRowsSink(url, table=table, concurrency=pool)
    elif gzip_threshold is None:
        sink = CrateRowsSink(url, table=table, concurrency=pool)
    else:
        sink = CrateRowsSink(url, table=table, concurrency=pool, gzip_threshold=gzip_threshold)
    return Writer(
        sink,
        columns=columns,
        primary_key=primary_key,
        batch=limits,
        max_in_flight=max_in_flight,
        retry=retry,
        on_snapshot=on_snapshot,
        snapshot_interval=snapshot_interval,
    )


__all__ = [
    "RefusedRow",
    "Writer",
    "WriterLimits",
    "WriterReport",
    "WriterSnapshot",
    "open_writer",
]
