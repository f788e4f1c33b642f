"""PostgreSQL DDL and statements for the run / chunk / reject state tables.

The chunk checkpoint (``checkpoint_chunk``) runs inside the same transaction as a chunk's merge
on a PostgreSQL target, so a chunk is either merged and checkpointed or neither.  Chunk bounds
are stored as ``Chunk.to_json()`` so a resumed run reuses the exact plan.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from async_etl.core.scd_sql_common import Sql

RUN_STATUSES = ("RUNNING", "SUCCEEDED", "FAILED", "STOPPED")

NO_FLUSH_WAIT = "SET LOCAL synchronous_commit = off"
"""This transaction's COMMIT does not wait for its WAL flush (a later synchronous one does)."""


def _index_once(name: str, on: str) -> str:
    """``CREATE INDEX name ON on`` only when the catalog lacks ``name`` (a DO block).

    ``CREATE INDEX IF NOT EXISTS`` takes its SHARE lock on the table before it finds the index
    there, so it would wait behind any other job's open transaction that writes the table.
    """
    return (
        f"DO $$ BEGIN IF to_regclass('{name}') IS NULL THEN "
        f"CREATE INDEX IF NOT EXISTS {name} ON {on}; END IF; END $$"
    )


def _column_once(table: str, column: str, type_: str) -> str:
    """``ALTER TABLE table ADD COLUMN column type_`` only when the catalog lacks it (a DO block)."""
    return (
        f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attname = '{column}' "
        f"AND NOT attisdropped AND attrelid = '{table}'::regclass) THEN "
        f"ALTER TABLE {table} ADD COLUMN {column} {type_}; END IF; END $$"
    )


STATE_DDL: tuple[Sql, ...] = (
    Sql(
        "CREATE TABLE IF NOT EXISTS async_etl_runs (run_id text PRIMARY KEY, job text NOT NULL, "
        "status text NOT NULL CHECK (status IN ('RUNNING', 'SUCCEEDED', 'FAILED', 'STOPPED')), "
        "as_of timestamptz NOT NULL, started_at timestamptz NOT NULL DEFAULT now(), "
        "finished_at timestamptz, rows_read bigint NOT NULL DEFAULT 0, "
        "rows_inserted bigint NOT NULL DEFAULT 0, rows_updated bigint NOT NULL DEFAULT 0, "
        "rows_expired bigint NOT NULL DEFAULT 0, rows_deleted bigint NOT NULL DEFAULT 0, "
        "rows_rejected bigint NOT NULL DEFAULT 0, error text, plan jsonb, "
        "watermark integer NOT NULL DEFAULT -1, cursor jsonb)"
    ),
    Sql(_index_once("async_etl_runs_job", "async_etl_runs (job, started_at DESC)")),
    Sql(
        "CREATE TABLE IF NOT EXISTS async_etl_chunks (run_id text NOT NULL REFERENCES "
        "async_etl_runs (run_id) ON DELETE CASCADE, chunk_index integer NOT NULL, "
        "bounds jsonb NOT NULL, status text NOT NULL DEFAULT 'PENDING' "
        "CHECK (status IN ('PENDING', 'COMMITTED')), rows bigint NOT NULL DEFAULT 0, "
        "committed_at timestamptz, PRIMARY KEY (run_id, chunk_index))"
    ),
    Sql(
        "CREATE TABLE IF NOT EXISTS async_etl_rejects (job text NOT NULL, run_id text NOT NULL, "
        "key jsonb, reason text NOT NULL, at timestamptz NOT NULL DEFAULT now())"
    ),
    Sql(_index_once("async_etl_rejects_run", "async_etl_rejects (run_id)")),
    Sql(_column_once("async_etl_chunks", "cursor", "jsonb")),
    Sql(_column_once("async_etl_chunks", "counts", "jsonb")),
    Sql(_column_once("async_etl_chunks", "loader", "text")),
)
"""Run these once (each is idempotent) before the first run.

The indexes, and the ``cursor``, ``counts`` and ``loader`` columns of a state store made before they
existed, are added only when the catalog lacks them: ``CREATE INDEX IF NOT EXISTS`` takes a
SHARE lock and ``ALTER TABLE ... ADD COLUMN IF NOT EXISTS`` an ACCESS EXCLUSIVE lock even when
the index or column is there, so every job start would wait behind the other jobs' open
checkpoints and reject writes.
"""

STATE_TABLES = ("async_etl_runs", "async_etl_chunks", "async_etl_rejects")
"""The tables ``STATE_DDL`` creates."""
STATE_INDEXES = ("async_etl_runs_job", "async_etl_rejects_run")
"""The indexes ``STATE_DDL`` adds when the catalog lacks them."""
STATE_COLUMNS = (("async_etl_chunks", ("cursor", "counts", "loader")),)
"""The columns ``STATE_DDL`` adds to a table made before them, per table."""


def state_ready_sql(
    tables: Sequence[str],
    indexes: Sequence[str] = STATE_INDEXES,
    columns: Sequence[tuple[str, Sequence[str]]] = STATE_COLUMNS,
) -> str:
    """One query, true when the state DDL (``STATE_DDL`` and ``tables``' own) would change nothing.

    ``tables``: every table the DDL creates (``STATE_TABLES`` and the stop requests'; the
    orchestrator's store passes its own, with its ``indexes`` and no late ``columns``).  Each is
    looked for where an unqualified ``CREATE TABLE IF NOT EXISTS`` would look: the first
    existing schema of the search path (``current_schema()``; none: false, and the DDL fails as
    before).  The indexes and columns are looked for as their DO blocks do.  A role that may use
    the tables but not create in their schema can then start a job (``CREATE TABLE IF NOT
    EXISTS`` checks the schema's CREATE privilege before it finds the table there).  A
    schema-qualified name (a PostgreSQL target's table, its ledger and indexes:
    ``scd_sql_pg.target_ready_sql``) is looked for as written.
    """
    found = [f"to_regclass({_where(t)}) IS NOT NULL" for t in tables]
    found += [f"to_regclass('{name}') IS NOT NULL" for name in indexes]
    for table, added in columns:
        names = ", ".join(f"'{c}'" for c in added)
        found.append(
            f"(SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass('{table}') "
            f"AND attname IN ({names}) AND NOT attisdropped) = {len(added)}"
        )
    return "SELECT " + "\n   AND ".join(found)


def _where(table: str) -> str:
    """``table`` as the text ``to_regclass`` reads: in ``current_schema()`` unless qualified."""
    return f"'{table}'" if "." in table else f"quote_ident(current_schema()) || '.{table}'"


START_RUN = Sql(
    "WITH no_flush_wait AS (SELECT set_config('synchronous_commit', 'off', true)), "
    "run AS (INSERT INTO async_etl_runs (run_id, job, status, as_of, plan) "
    "SELECT $1::text, $2::text, 'RUNNING', $3::timestamptz, $4::jsonb FROM no_flush_wait), "
    "chunks AS (INSERT INTO async_etl_chunks (run_id, chunk_index, bounds) "
    "SELECT $1, u.n - 1, u.b::jsonb FROM unnest($5::text[]) WITH ORDINALITY AS u(b, n) "
    "ON CONFLICT (run_id, chunk_index) DO NOTHING), "
    "stop AS (DELETE FROM async_etl_stop_requests WHERE run_id = $1) SELECT 1",
    ("run_id", "job", "as_of", "plan", "bounds"),
)
"""Record a new run in one statement (its own implicit transaction): the run with its as-of
time and stored chunk plan (``ChunkPlan.to_json``), one PENDING chunk row per element of
``bounds`` (JSON text, chunk index = position), and no stop request left for its id (the
stop table is ``jobs.state.STOP_DDL``'s).

Its commit does not wait for the WAL flush: ``set_config(..., true)`` is ``SET LOCAL``
(PostgreSQL manual, "System Administration Functions"), read at the commit that ends the
statement.  Data-modifying ``WITH`` parts all run, referenced or not; the ``SELECT`` part
runs because the run's insert reads it (PostgreSQL manual, "WITH Queries")."""

CHECKPOINT_CHUNK = Sql(
    "INSERT INTO async_etl_chunks (run_id, chunk_index, bounds, status, rows, committed_at, "
    "cursor, counts, loader) VALUES ($1, $2, $3::jsonb, 'COMMITTED', $4, now(), $5::jsonb, "
    "$6::jsonb, $7) ON CONFLICT (run_id, chunk_index) DO UPDATE SET status = 'COMMITTED', "
    "rows = EXCLUDED.rows, committed_at = EXCLUDED.committed_at, cursor = EXCLUDED.cursor, "
    "counts = EXCLUDED.counts, loader = EXCLUDED.loader "
    "WHERE async_etl_chunks.status <> 'COMMITTED'",
    ("run_id", "chunk_index", "bounds", "rows", "cursor", "counts", "loader"),
)
"""Mark a chunk committed, in the same transaction as its merge (PostgreSQL target).

A chunk already COMMITTED is left as it is and the statement inserts nothing (``INSERT 0 0``):
its loader then rolls its transaction back.  The chunk's row lock orders two commits of one
chunk (a run that lost its job lock while a new run resumed it, or a retry whose first
commit landed unacknowledged), so the second loader sees the first one's checkpoint.

``cursor`` is the incremental cursor the chunk covers (``incremental.tag`` as JSON text, or
NULL for a job that is not incremental): the job's cursor commits with its chunks.  ``counts``
is the chunk's change counters as JSON text (``chunk_counts``): a resumed run adds up its
committed chunks' counts (``COMMITTED_COUNTS``), exact however long ago the run row was updated.
``loader`` names the ``run_job`` call that loaded the chunk (``JobContext.loader``, or NULL):
a retry of that call can tell its own unacknowledged commit from another process's
(``CHECKPOINT_OF``, ``landed_before``).
"""

CHECKPOINT_OF = Sql(
    "SELECT bounds::text, rows, counts::text, loader FROM async_etl_chunks "
    "WHERE run_id = $1 AND chunk_index = $2 AND status = 'COMMITTED'",
    ("run_id", "chunk_index"),
)
"""A committed chunk's checkpoint: its bounds and counts as JSON text, rows read, loader."""

LANDED_DDL = Sql(
    "CREATE TABLE IF NOT EXISTS async_etl_landed (run_id text NOT NULL, "
    "chunk_index integer NOT NULL, bounds jsonb NOT NULL, rows bigint NOT NULL, "
    "counts jsonb NOT NULL, loader text NOT NULL, landed_at timestamptz NOT NULL DEFAULT now(), "
    "PRIMARY KEY (run_id, chunk_index))"
)
"""The chunk ledger of a PostgreSQL target whose run state is in another database.

A chunk's transaction on the target inserts its row (``LAND_CHUNK``) with its data, so the
target itself knows which chunks landed even when the COMMIT's reply never came back, or the
process died before the state store recorded the checkpoint: the chunk's next load finds the
row (``LANDED_OF``) and rolls itself back instead of loading the rows a second time.
"""

LAND_CHUNK = Sql(
    "INSERT INTO async_etl_landed (run_id, chunk_index, bounds, rows, counts, loader) "
    "VALUES ($1, $2, $3::jsonb, $4, $5::jsonb, $6) ON CONFLICT (run_id, chunk_index) DO NOTHING",
    ("run_id", "chunk_index", "bounds", "rows", "counts", "loader"),
)
"""Record a chunk as landed in the target, in its transaction (``INSERT 0 0``: it had landed;
the primary key's lock orders two loads of one chunk, so the second sees the first)."""

LANDED_OF = Sql(
    "SELECT bounds::text, rows, counts::text, loader FROM async_etl_landed "
    "WHERE run_id = $1 AND chunk_index = $2",
    ("run_id", "chunk_index"),
)
"""A landed chunk's ledger row, shaped as ``CHECKPOINT_OF``'s (bounds, rows, counts, loader)."""

FORGET_LANDED = Sql(
    "DELETE FROM async_etl_landed WHERE run_id = ANY($1::text[])",
    ("run_ids",),
)
"""Delete the ledger rows of finished runs: only once the state store records the run
SUCCEEDED (every chunk's checkpoint is there then, and no later load of them can happen)."""

LANDED_RUNS = Sql("SELECT DISTINCT run_id FROM async_etl_landed")
"""The runs a ledger holds rows of (every job's beside that target; few: a success forgets)."""

JOB_RUN_IDS = Sql(
    "SELECT run_id FROM async_etl_runs WHERE job = $1 AND run_id = ANY($2::text[])",
    ("job", "among"),
)
"""Which of ``among`` (a ledger's runs) are runs of a job in the state store: the ones a
SUCCEEDED run of it deletes.  Bounded by the ledger, not by the job's whole run history."""

COUNTED = ("inserted", "updated", "expired", "deleted", "rejected")
"""The change counters a checkpoint records (the keys of ``chunk_counts``)."""


def chunk_counts(counts: Mapping[str, int], rejected: int) -> str:
    """A chunk's ``counts`` column: its change counters and rejected rows, as JSON text."""
    doc = {k: int(counts.get(k, 0)) for k in COUNTED[:-1]} | {"rejected": rejected}
    return json.dumps(doc, separators=(",", ":"))


def landed_before(
    found: tuple[str, int, str | None, str | None], bounds: str, loader: str
) -> tuple[int, dict[str, int]] | None:
    """Whether a checkpoint found committed is this loader's own: (rows, counts), else None.

    ``found``: the ``CHECKPOINT_OF`` row (bounds JSON, rows, counts JSON, loader); ``bounds``:
    the chunk's bounds as the retry would store them (JSON text).  It is this loader's own when
    it names ``loader`` with the same bounds and carries counts: an earlier attempt of the same
    chunk in the same ``run_job`` call committed it and lost the acknowledgement, so the chunk
    is done, counted from its checkpoint (``COUNTED`` keys, ``rejected`` included).  Anything
    else (another run's loader, no loader, other bounds, no counts) is None: not ours.
    """
    found_bounds, rows, counts, by = found
    if by != loader or counts is None or json.loads(found_bounds) != json.loads(bounds):
        return None
    doc = json.loads(counts)
    return int(rows), {k: int(doc.get(k, 0)) for k in COUNTED}


COMMITTED_COUNTS = Sql(
    "SELECT coalesce(sum(rows), 0), "
    + ", ".join(f"coalesce(sum((counts ->> '{k}')::bigint), 0)" for k in COUNTED)
    + ", count(*) FILTER (WHERE counts IS NULL) "
    "FROM async_etl_chunks WHERE run_id = $1 AND status = 'COMMITTED'",
    ("run_id",),
)
"""A run's committed chunks: rows read, then ``COUNTED`` summed, then how many chunks were
checkpointed without counts (by a version before ``counts`` existed: the run row's counters
are then the best there is)."""

HAS_CHUNK_CURSORS = Sql(
    "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attname = 'cursor' AND NOT attisdropped "
    "AND attrelid = to_regclass('async_etl_chunks')) AND to_regclass('async_etl_runs') IS NOT NULL"
)
"""Whether the state tables exist and checkpoints carry cursors (read before ``LAST_WINDOW``)."""

LAST_WINDOW = Sql(
    "SELECT r.plan -> 'cursor', jsonb_array_length(r.plan -> 'chunks'), "
    "(SELECT coalesce(jsonb_agg(jsonb_build_array(c.chunk_index, c.cursor)), '[]'::jsonb) "
    "FROM async_etl_chunks c WHERE c.run_id = r.run_id AND c.status = 'COMMITTED') "
    "FROM async_etl_runs r WHERE r.job = $1 AND r.plan -> 'cursor' ->> 'column' = $2 "
    "ORDER BY r.started_at DESC LIMIT 1",
    ("job", "column"),
)
"""The latest run of a job over a cursor column: its window, chunk count and checkpoints
(``[[index, cursor], ...]``), the inputs of ``incremental.run_cursor``."""

COMMITTED_CHUNKS = Sql(
    "SELECT chunk_index FROM async_etl_chunks WHERE run_id = $1 AND status = 'COMMITTED'",
    ("run_id",),
)
"""The committed chunk indexes of a run (feed to ``chunks.advance`` / ``chunks.remaining``)."""

UNFINISHED_RUN = Sql(
    "SELECT run_id, as_of, plan FROM (SELECT run_id, as_of, plan, status FROM async_etl_runs "
    "WHERE job = $1 ORDER BY started_at DESC LIMIT 1) latest WHERE status <> 'SUCCEEDED'",
    ("job",),
)
"""The run to resume (same as-of, same plan) unless ``--fresh``: the job's latest run when it
did not succeed.  An older unfinished run is never resumed: a later run (``--fresh``) replaced
it, and resuming it would rewrite the later run's history with its older as-of."""

UPDATE_RUN = Sql(
    "UPDATE async_etl_runs SET status = $2, rows_read = $3, rows_inserted = $4, "
    "rows_updated = $5, rows_expired = $6, rows_deleted = $7, rows_rejected = $8, "
    "watermark = $9, error = $10, cursor = $11::jsonb, finished_at = CASE WHEN $2 = 'RUNNING' "
    "THEN NULL ELSE now() END WHERE run_id = $1",
    ("run_id", "status", "rows_read", "rows_inserted", "rows_updated", "rows_expired",
     "rows_deleted", "rows_rejected", "watermark", "error", "cursor"),
)  # fmt: skip
"""Progress / final status of a run (every 5 chunks and at the end)."""

INSERT_REJECT = Sql(
    "INSERT INTO async_etl_rejects (job, run_id, key, reason) VALUES ($1, $2, $3::jsonb, $4)",
    ("job", "run_id", "key", "reason"),
)
"""One rejected row (``executemany``), with its key as JSON."""

HAS_REJECT_REASON = Sql(
    "SELECT EXISTS (SELECT 1 FROM async_etl_rejects WHERE run_id = $1 "
    "AND left(reason, length($2)) = $2)",
    ("run_id", "reason"),
)
"""Whether a run has recorded a reject whose reason starts with this one (its NULL-key rows,
before a resume)."""
