"""Chunk cuts from the database's statistics of the key column, and when to trust them.

Theory of operation.  A new run's chunk plan needs ``n - 1`` cut keys that split the source
into ``n`` chunks of about equal row counts.  A large PostgreSQL table used to be cut by a
block sample (``TABLESAMPLE SYSTEM``, ``chunks.sample_percent``): on the critical path of the
run, before the first chunk starts (95 ms of a 1.7 s load of 1M rows, reading pages not in
shared buffers; ``benchmarks/RESULTS.md``).  ``ANALYZE`` (run by hand or by autovacuum) keeps
an *equi-depth* histogram of each column (``pg_stats.histogram_bounds``: ``B + 1`` values,
each bucket between two neighbours holding about the same share of the column's non-NULL
values that are not in its most-common-values list; PostgreSQL's documentation, "pg_stats"):
exactly what balanced chunks need, read with no scan of the table.

Correctness never depends on the cuts.  A plan is ``(-inf, c1), [c1, c2), ..., [cn-1, +inf)``
(``chunks.plan_chunks``): every non-NULL key falls in exactly one chunk whatever the cut
values are, and rows with a NULL key are counted apart as before.  Stale or misleading
statistics (rows inserted, deleted or re-keyed since the last ``ANALYZE``) only make the
chunks less equal.  The one thing the cuts must be is *ordered in the chunk collation*: the
histogram is ordered by the column's own collation, so the driver sorts the bounds in the
run's chunk collation, and ``histogram_cuts`` refuses them (a sample is taken as before) when
that order is not the histogram's own (equi-depth no longer holds).

When are the statistics fresh enough (``stats_refusal``)?  Only where a table would be
sampled (large enough, ``chunks.sample_percent``; a smaller one is read whole for exact cuts),
for a single-column key (the histograms are per column), a plain table with no inheritance
children (``relkind 'r'``: its own statistics describe what ``FROM table`` reads), outside an
incremental window (the histogram covers the whole table), with at least ``n`` buckets, and:

* rows inserted, updated or deleted since the last ``ANALYZE`` (``n_mod_since_analyze``) are
  at most ``STALE_SHARE`` of ``reltuples`` (the rows it counted), and
* the row estimate now (``reltuples`` scaled to the table's pages now, as the planner does,
  ``scd_sql_pg.estimate_table_sql``) is within ``STALE_SHARE`` of ``reltuples`` (this catches
  a bulk load whose counters were lost, e.g. by ``pg_stat_reset`` or a crash), and
* the most common values hold at most ``STALE_SHARE`` of the rows (they are left out of the
  histogram; a key with many repeated values is sampled).

``STALE_SHARE`` is 10 %: PostgreSQL's own default ``autovacuum_analyze_scale_factor``, the
share of changed rows at which autovacuum re-analyzes a table, so a table that autovacuum
keeps analyzed at default settings qualifies between two of its analyses.  At that share at
most a tenth of the rows can sit in other buckets than the histogram says, which moves a
chunk's size by at most that many rows; a 5 % block sample is also only about balanced.

Pure: no I/O; the driver (``sources.postgres``) runs ``KEY_STATS_SQL`` and ``histogram_sql``
(below; SQL text, not run here) and hands the rows in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from async_etl.core.collation import collated
from async_etl.core.scd_sql_common import Sql

__all__ = [
    "KEY_STATS_SQL",
    "STALE_SHARE",
    "KeyStats",
    "from_sample",
    "from_stats",
    "histogram_cuts",
    "histogram_sql",
    "stats_refusal",
]

STALE_SHARE = 0.1
"""Largest share of changed rows (and of growth, and of most-common values) with which a key's
histogram still cuts the chunks (PostgreSQL's default ``autovacuum_analyze_scale_factor``)."""

KEY_STATS_SQL = Sql(
    "SELECT c.relkind::text, c.relhassubclass, c.reltuples::float8, st.n_mod_since_analyze, "
    "CASE WHEN t.typcategory <> 'A' AND t.typtype IN ('b', 'd', 'e') "
    "THEN s.histogram_bounds::text::text[] END, "
    "(SELECT sum(f) FROM unnest(s.most_common_freqs) AS m(f))::float8, "
    "format_type(a.atttypid, a.atttypmod) "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "LEFT JOIN pg_stat_user_tables st ON st.relid = c.oid "
    "LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = $2 AND a.attnum > 0 "
    "AND NOT a.attisdropped LEFT JOIN pg_type t ON t.oid = a.atttypid "
    "LEFT JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname "
    "AND s.attname = a.attname AND NOT s.inherited "
    "WHERE c.oid = to_regclass($1)",
    ("table", "column"),
)
"""One row (none: no such relation) of what ``core.key_stats.KeyStats`` reads of a table
(bind ``table``, quoted) and its key ``column``: relkind, whether it has children, reltuples,
rows changed since ANALYZE, the histogram bounds as text (NULL for an array or composite key
type, whose histogram is not a list of scalars), the common values' share, the key's type.
Reads catalogs and ``pg_stats`` (the rows the user may read), never the table."""


def histogram_sql(type_name: str, collate: str | None) -> Sql:
    """(position, value) of histogram bounds (bind ``bounds``, text[]) read as ``type_name``.

    ``type_name``: the key column's type as ``format_type`` spells it (``KEY_STATS_SQL``);
    each bound's text goes through the type's own input function, so the values are the
    column's exactly.  Sorted as chunks compare, in ``collate`` (``core.collation``), ties by
    position (``key_stats.histogram_cuts``).  Raises nothing; the database raises on a type
    name that is not one.
    """
    value = f"h.v::{type_name}"
    return Sql(
        f"SELECT h.o, {value} FROM unnest($1::text[]) WITH ORDINALITY AS h(v, o) "
        f"ORDER BY {collated(value, collate)}, h.o",
        ("bounds",),
    )


@dataclass(frozen=True, slots=True)
class KeyStats:
    """What the catalog says of a table and its key column (``KEY_STATS_SQL``).

    ``relkind``: ``pg_class.relkind`` (None: no such relation); ``children``: it has
    inheritance children or partitions; ``reltuples``: rows counted by the last ANALYZE /
    VACUUM (-1 or 0: none); ``modified``: ``n_mod_since_analyze`` (None: no counters);
    ``bounds``: ``histogram_bounds`` as text (None: no histogram, or a key type whose
    histogram is not a list of scalars, an array say); ``mcv_share``: the summed
    ``most_common_freqs`` (0 without); ``type_name``: the key column's SQL type.
    """

    relkind: str | None
    children: bool
    reltuples: float
    modified: int | None
    bounds: tuple[str, ...] | None
    mcv_share: float
    type_name: str | None

    @classmethod
    def from_row(cls, row: Sequence[Any] | None) -> KeyStats:
        """From ``KEY_STATS_SQL``'s row (None: no such relation)."""
        if row is None:
            return cls(None, False, -1.0, None, None, 0.0, None)
        relkind, children, reltuples, modified, bounds, mcv, type_name = row
        return cls(
            relkind=None if relkind is None else str(relkind),
            children=bool(children),
            reltuples=float(reltuples) if reltuples is not None else -1.0,
            modified=None if modified is None else int(modified),
            bounds=None if bounds is None else tuple(str(b) for b in bounds),
            mcv_share=float(mcv or 0.0),
            type_name=None if type_name is None else str(type_name),
        )

    @property
    def sampleable(self) -> bool:
        """Whether the relation takes ``TABLESAMPLE`` (a table, partitioned table or matview)."""
        return self.relkind in ("r", "m", "p")


def stats_refusal(stats: KeyStats, n: int, estimate: int, key_columns: int = 1) -> str | None:
    """Why the key's histogram may not cut ``n`` chunks (None: it may); see the module header.

    ``estimate``: the table's row estimate now (``estimate_table_sql``, negative: unknown);
    ``key_columns``: how many columns the key has.  Pure; raises nothing.
    """
    if key_columns != 1:
        return "a key of several columns (statistics are per column)"
    if stats.relkind != "r" or stats.children:
        return "not a plain table without children (its statistics describe another set)"
    if stats.bounds is None or stats.type_name is None:
        return "no histogram of the key column (never analyzed, or no order to histogram)"
    if stats.reltuples <= 0 or estimate < 0:
        return "no row count from ANALYZE"
    buckets = len(stats.bounds) - 1
    if buckets < n:
        return f"{buckets} histogram bucket(s) for {n} chunks"
    limit = STALE_SHARE * stats.reltuples
    if stats.modified is None:
        return "no count of rows changed since ANALYZE"
    if stats.modified > limit:
        return (f"stale: {stats.modified:,} rows changed since ANALYZE of "
                f"{stats.reltuples:,.0f}")  # fmt: skip
    if abs(estimate - stats.reltuples) > limit:
        return f"stale: about {estimate:,} rows now, {stats.reltuples:,.0f} at ANALYZE"
    if stats.mcv_share > STALE_SHARE:
        return f"{stats.mcv_share:.0%} of the rows are common values, not in the histogram"
    return None


def histogram_cuts(ordered: Sequence[tuple[int, Any]], n: int) -> list[tuple[Any]] | None:
    """``n - 1`` cuts from histogram bounds, or None when their order is not the histogram's.

    ``ordered``: (1-based position in ``histogram_bounds``, the bound's value) sorted as the
    chunks compare (in the chunk collation, ties by position; ``histogram_sql``).  The bounds
    of equi-depth buckets must come in their own order for the buckets to stay equal (a text
    key histogrammed in one collation and chunked in another does not: None, sample instead).
    Cut ``i`` (1 <= i < n) is bound ``round(i * B / n)`` of the ``B`` buckets; repeated
    values (a value filling more than a bucket) give fewer chunks (``plan_chunks`` drops
    them).  One-column key tuples; none when ``n <= 1`` or there are no buckets.
    """
    if [p for p, _ in ordered] != list(range(1, len(ordered) + 1)):
        return None
    buckets = len(ordered) - 1
    if n <= 1 or buckets < 1:
        return []
    picks = sorted({round(i * buckets / n) for i in range(1, n)})
    return [(ordered[j][1],) for j in picks if 0 < j < buckets]


def from_stats(stats: KeyStats) -> str:
    """Where a plan's cuts came from, said of the key's histogram (``check``, the run's log)."""
    assert stats.bounds is not None and stats.modified is not None  # stats_refusal passed
    buckets, rows = len(stats.bounds) - 1, f"{stats.reltuples:,.0f}"
    return (f"the key's statistics (pg_stats histogram, {buckets} buckets; "
            f"{stats.modified:,} of {rows} rows changed since ANALYZE)")  # fmt: skip


def from_sample(percent: float | None, why: str | None) -> str:
    """Where a plan's cuts came from: a block sample of ``percent`` %, or every row (None).

    ``why``: why the key's statistics were not used (None: not asked, a query or a view).
    """
    read = "every row (ntile)" if percent is None else f"a {percent:g} % block sample"
    return read if why is None else f"{read}; not the statistics: {why}"
