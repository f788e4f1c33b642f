"""Chunk planning over a (possibly composite) key, and the checkpoint watermark.

A plan cuts the key space at boundary tuples ``b0 < b1 < ... < bn-1`` into ``n + 1``
half-open chunks ``(-inf, b0), [b0, b1), ..., [bn-1, +inf)``: every non-NULL key falls in
exactly one chunk, whatever rows appear after planning.  Keys compare as tuples
(lexicographically, column by column), which is what SQL row-value comparison does.

"<" is the *source's* ordering: text keys sort by a collation (``en-x-icu`` puts ``m00002``
after ``M00001``; code-point order puts every ``M`` first).  So the planner never sorts the
boundaries itself: they arrive in the order the database sorted them, and every chunk carries
``collate``, the collation of each key column (``None`` for types without one) that every
statement applying the range must compare with (``core.collation``).  Python's own order is
code-point order, the one ``BINARY`` collation of this project (``"C"``); ``row_in_chunk`` and
``chunk_for`` take a ``sort_key`` for any other.

The plan is stored (``to_json``) so a resumed run reuses the same chunks; values are tagged
with their type so the JSON round trip is exact (int, str, Decimal, date, datetime, interval,
inet / cidr, arrays, ...); two bounds are the same when their stored forms are (NaN meets NaN).

The watermark is the highest chunk index whose predecessors are all committed; it never passes
an uncommitted chunk, even when chunks commit out of order.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
    ip_address,
    ip_interface,
    ip_network,
)
from typing import Any, NamedTuple
from uuid import UUID

from async_etl.core.specs import ParallelSpec
from async_etl.errors import DataError

Key = tuple[Any, ...]

SortKey = Callable[[Key], Any]
"""Maps a key tuple to a value whose Python order is the source's order of keys."""

MAX_CHUNKS = 100_000
"""Upper bound on the number of chunks a plan may have (the plan is stored in one JSON row)."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """Keys ``k`` with ``lower <= k < upper``; ``None`` means open on that side.

    ``collate`` names the collation each key column compares with (``None``: no collation,
    or the column's own); empty when the plan predates collations (columns' own ones).
    """

    index: int
    lower: Key | None
    upper: Key | None
    collate: tuple[str | None, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """JSON-able form with type-tagged key values."""
        out: dict[str, Any] = {
            "index": self.index,
            "lower": None if self.lower is None else [_tag(v) for v in self.lower],
            "upper": None if self.upper is None else [_tag(v) for v in self.upper],
        }
        if self.collate:
            out["collate"] = list(self.collate)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Chunk:
        """Inverse of ``to_json``; raises ``ValueError`` on a malformed document."""
        lower, upper = data["lower"], data["upper"]
        return cls(
            index=int(data["index"]),
            lower=None if lower is None else tuple(_untag(v) for v in lower),
            upper=None if upper is None else tuple(_untag(v) for v in upper),
            collate=tuple(data.get("collate") or ()),
        )


@dataclass(frozen=True, slots=True)
class ChunkPlan:
    """Chunks ordered by key, indexed 0..n-1, covering the key space exactly once."""

    chunks: tuple[Chunk, ...]

    def __len__(self) -> int:
        return len(self.chunks)

    def to_json(self) -> dict[str, Any]:
        """JSON-able form (store it with the run; see ``from_json``)."""
        return {"version": 1, "chunks": [c.to_json() for c in self.chunks]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChunkPlan:
        """Inverse of ``to_json``; raises ``ValueError`` on a malformed or non-covering plan."""
        if data.get("version") != 1:
            raise ValueError(f"unknown chunk plan version {data.get('version')!r}")
        chunks = tuple(Chunk.from_json(c) for c in data["chunks"])
        _check_covering(chunks)
        return cls(chunks)

    @property
    def collate(self) -> tuple[str | None, ...]:
        """The collation of each key column the plan was cut in (see ``Chunk``)."""
        return self.chunks[0].collate

    def chunk_for(self, key: Key, sort_key: SortKey = tuple) -> Chunk:
        """The one chunk holding ``key`` (binary search); raises ``DataError`` on NULLs.

        ``sort_key`` gives the plan's ordering (default: Python's, i.e. code-point order).
        """
        _check_key(key)
        lo, hi = 0, len(self.chunks) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lower = self.chunks[mid].lower
            if lower is not None and sort_key(key) >= sort_key(lower):
                lo = mid
            else:
                hi = mid - 1
        return self.chunks[lo]


class Cuts(NamedTuple):
    """A source's chunk cuts (key tuples in the source's order) and where they came from.

    ``source``: one phrase (the key's statistics, a block sample, every row, or none: one
    chunk), shown by ``check``, logged with the run's start and kept in its stored plan.
    """

    values: list[Key]
    source: str


NO_CUTS = "none: one chunk"
"""``Cuts.source`` of a plan of one chunk (nothing to cut)."""


def plan_chunks(
    boundaries: Iterable[Sequence[Any]], collate: Sequence[str | None] = ()
) -> ChunkPlan:
    """Plan chunks cut at ``boundaries``: key tuples in the source's order, as it sorted them.

    The order is kept as given (re-sorting here would use code-point order, not the source's
    collation); repeated neighbours are dropped.  ``collate`` (one entry per key column, or
    empty) is stored on every chunk.  No boundaries give one chunk open on both sides.  Raises
    ``ValueError`` when boundary tuples differ in length (or from ``collate``), or hold NULLs.
    """
    cuts: list[Key] = []
    for b in boundaries:
        cut = tuple(b)
        if not cuts or cut != cuts[-1]:
            cuts.append(cut)
    widths = {len(b) for b in cuts}
    if len(widths) > 1 or 0 in widths:
        raise ValueError(f"boundary tuples must all have the same, non-zero length: {widths}")
    if collate and widths and widths != {len(collate)}:
        raise ValueError(f"{len(collate)} collations for a key of {widths.pop()} column(s)")
    if any(v is None for b in cuts for v in b):
        raise ValueError("boundary tuples must not contain NULL")
    if len(cuts) + 1 > MAX_CHUNKS:
        raise ValueError(f"too many chunks: {len(cuts) + 1} > {MAX_CHUNKS}")
    edges: list[Key | None] = [None, *cuts, None]
    order = tuple(collate)
    return ChunkPlan(tuple(Chunk(i, edges[i], edges[i + 1], order) for i in range(len(edges) - 1)))


def _check_covering(chunks: Sequence[Chunk]) -> None:
    if not chunks or chunks[0].lower is not None or chunks[-1].upper is not None:
        raise ValueError("a chunk plan must start and end open")
    for i, (a, b) in enumerate(itertools.pairwise(chunks)):
        if a.index != i or a.upper is None or b.lower is None or not _same_bound(a.upper, b.lower):
            raise ValueError(f"chunk {i} does not end where chunk {i + 1} starts")
        if a.collate != b.collate:
            raise ValueError(f"chunks {i} and {i + 1} are cut in different collations")
    if chunks[-1].index != len(chunks) - 1:
        raise ValueError("chunk indexes must be 0..n-1")


def _same_bound(a: Key, b: Key) -> bool:
    """Equal bounds by their stored form: a NaN bound meets the NaN bound it was cut at."""
    return [_tag(v) for v in a] == [_tag(v) for v in b]


def _check_key(key: Key) -> None:
    if any(v is None for v in key):
        raise DataError(f"chunk key {key!r} contains NULL; keys must be NOT NULL")


def row_in_chunk(key: Sequence[Any], chunk: Chunk, sort_key: SortKey = tuple) -> bool:
    """True when ``lower <= key < upper``; ``DataError`` if key has NULL.

    Tuples compare by ``sort_key`` (default: Python's order, i.e. code-point order for text).
    """
    k = tuple(key)
    _check_key(k)
    if chunk.lower is not None and sort_key(k) < sort_key(chunk.lower):
        return False
    return chunk.upper is None or sort_key(k) < sort_key(chunk.upper)


def estimate_parallel(estimate_rows: int, spec: ParallelSpec) -> bool:
    """Go parallel only when enabled and the (known, >= 0) estimate reaches the threshold."""
    return spec.enabled and estimate_rows >= 0 and estimate_rows >= spec.min_rows_for_parallel


DEFAULT_CHUNK_SIZE = 50_000
"""Rows per chunk when ``[parallel] chunk_size`` is unset, unless the load goes into a new table."""
AUTO_CHUNKS_PER_WORKER = 2
"""An unset chunk size into a new table: about this many chunks per worker."""
AUTO_MAX_CHUNK_SIZE = 500_000
"""... and no chunk above this many rows (a crash loses at most one chunk per worker)."""
WHOLE = "one chunk: the source query has a top-level LIMIT / OFFSET / FETCH"
"""Why a source query that limits its rows is read whole (cut into key ranges, each range would
re-run the limit and could pick other rows)."""


def capped_whole(cap: str) -> str:
    """Why a source (a query, a view) whose rows ``cap`` picks inside it is read whole.

    ``cap``: what ``incremental.row_cap`` found in the query's plan (a LIMIT / OFFSET / FETCH
    FIRST in a subquery, a CTE or a view; a TABLESAMPLE).  Each key range would run the query
    again, and each run may pick other rows (a concurrent scan starts where another is, a
    sample without ``REPEATABLE`` draws anew), so the chunks' union is no one evaluation.
    """
    return (f"one chunk: the source's rows are picked by {cap} inside it, which each key "
            "range would run again")  # fmt: skip


@dataclass(frozen=True, slots=True)
class ChunkSizing:
    """The rows per chunk a new plan is cut for, and why (logged, reported, shown by ``check``)."""

    rows: int | None
    """None: no row count, one chunk of every row the source returns (``WHOLE``)."""
    why: str


def chunk_sizing(
    estimate_rows: int,
    spec: ParallelSpec,
    *,
    kept: str | None,
    whole: bool = False,
    cap: str | None = None,
) -> ChunkSizing:
    """Rows per chunk: ``spec.chunk_size`` when set, else chosen here.

    ``whole``: the source query limits its rows; one chunk of every row, no count (not the
    estimate, which may be unknown, or an exact 0 for an incremental window), whatever is set.
    ``cap``: what picks the query's rows inside it (``incremental.row_cap``); read whole the
    same way (``capped_whole``).

    Unset, a load into a new table (``kept`` None: a PostgreSQL full refresh, or the initial
    load built as one, whose unique indexes are built after the last chunk: every chunk is one
    COPY into it) is cut into about ``AUTO_CHUNKS_PER_WORKER`` chunks per worker
    (``workers``) of ``DEFAULT_CHUNK_SIZE`` to ``AUTO_MAX_CHUNK_SIZE`` rows each: a chunk's
    fixed cost (its transaction, checkpoint and commit, about 4 ms of the process's CPU) is
    paid fewer times, and every worker still has a chunk to load.  Any other load (``kept``:
    why it keeps the target's indexes during it, ``core.modes.indexes_during_load``: a merge
    into an existing table, an append, rows rejected one by one, a CrateDB or Oracle target),
    or an unknown estimate (negative), gets ``DEFAULT_CHUNK_SIZE``, and the reason says why.
    ``estimate_rows``: the source's row estimate.  Pure; raises nothing.
    """
    if whole:
        return ChunkSizing(None, WHOLE)
    if cap is not None:
        return ChunkSizing(None, capped_whole(cap))
    if spec.chunk_size is not None:
        return ChunkSizing(spec.chunk_size, "set: [parallel] chunk_size")
    default = f"auto: the default {DEFAULT_CHUNK_SIZE:,}"
    if kept is not None:
        return ChunkSizing(DEFAULT_CHUNK_SIZE, f"{default} ({kept})")
    if estimate_rows < 0:
        return ChunkSizing(DEFAULT_CHUNK_SIZE, f"{default} (no row estimate)")
    n = workers(estimate_rows, spec)
    wanted = math.ceil(estimate_rows / (n * AUTO_CHUNKS_PER_WORKER))
    rows = min(AUTO_MAX_CHUNK_SIZE, max(DEFAULT_CHUNK_SIZE, wanted))
    return ChunkSizing(rows, f"auto: a load into a new table, about {AUTO_CHUNKS_PER_WORKER} "
                       f"chunks per worker ({n}), {DEFAULT_CHUNK_SIZE:,} to "
                       f"{AUTO_MAX_CHUNK_SIZE:,} rows each")  # fmt: skip


def chunk_count(estimate_rows: int, sizing: ChunkSizing) -> int:
    """How many chunks to cut for ``sizing`` (``chunk_sizing``'s decision): at least 1.

    About ``sizing.rows`` rows each; one chunk when the sizing has no row count (``WHOLE``)
    or the estimate is 0 or unknown (negative).  Sequential runs are chunked too
    (checkpoints).  Pure; raises nothing.
    """
    if estimate_rows <= 0 or sizing.rows is None:
        return 1
    return max(1, min(MAX_CHUNKS, math.ceil(estimate_rows / sizing.rows)))


SAMPLE_ROWS = 50_000
"""At least this many sampled rows place the cuts of a large table (``sample_percent``)."""
SAMPLE_ROWS_PER_CHUNK = 1_000


def sample_percent(estimate_rows: int, n: int) -> float | None:
    """The share (percent) of a table's pages to sample for ``n`` chunk cuts; None: read all.

    Cutting by an exact ``ntile`` over every row sorts the whole table (1.6 s of a 6 s copy
    of 1M rows); the cuts of a block sample of at least ``SAMPLE_ROWS`` rows (and
    ``SAMPLE_ROWS_PER_CHUNK`` per chunk) are as good a plan.  Any cuts give a correct plan
    (every key falls in exactly one chunk); sampling only makes the chunks less equal.
    Tables under twice the sample (or of unknown size) are read whole.
    """
    wanted = max(SAMPLE_ROWS, SAMPLE_ROWS_PER_CHUNK * n)
    if n <= 1 or estimate_rows < 2 * wanted:
        return None
    return round(100.0 * wanted / estimate_rows, 4)


def workers(estimate_rows: int, spec: ParallelSpec) -> int:
    """Chunks in flight at once: ``max_workers`` when parallel, else 1."""
    return spec.max_workers if estimate_parallel(estimate_rows, spec) else 1


def advance(committed: Iterable[int], start: int = -1) -> int:
    """The highest index ``w >= start`` with every chunk ``<= w`` committed (-1: none yet).

    ``start`` is a watermark already known to be valid (chunks ``<= start`` are committed).
    """
    done = set(committed)
    w = start
    while w + 1 in done:
        w += 1
    return w


@dataclass(frozen=True, slots=True)
class Watermark:
    """The contiguous-commit watermark of a run over a plan of ``total`` chunks."""

    total: int
    value: int = -1

    def advance(self, committed: Iterable[int]) -> Watermark:
        """The watermark after the chunks in ``committed`` (plus those below it) are done."""
        return Watermark(self.total, min(advance(committed, self.value), self.total - 1))

    @property
    def complete(self) -> bool:
        """True when every chunk is committed."""
        return self.value >= self.total - 1


def remaining(plan: ChunkPlan, committed: Iterable[int]) -> tuple[Chunk, ...]:
    """Chunks still to do on resume, in key order (committed ones are skipped, not redone)."""
    done = set(committed)
    return tuple(c for c in plan.chunks if c.index not in done)


# --- exact JSON tagging of key values -------------------------------------------------------


def _tag(value: Any) -> list[Any]:
    if isinstance(value, bool):
        return ["bool", value]
    if isinstance(value, int):
        return ["int", str(value)]  # str: exact beyond 2**53 in any JSON reader
    if isinstance(value, str):
        return ["str", value]
    if isinstance(value, Decimal):
        return ["dec", str(value)]
    if isinstance(value, float):
        return ["float", repr(value)]
    if isinstance(value, datetime):
        return ["datetime", value.isoformat()]
    if isinstance(value, date):
        return ["date", value.isoformat()]
    if isinstance(value, time):
        return ["time", value.isoformat()]
    if isinstance(value, UUID):
        return ["uuid", str(value)]
    if isinstance(value, bytes):
        return ["bytes", value.hex()]
    if isinstance(value, timedelta):  # interval (months arrive as 30 days, as interval's order)
        return ["interval", [value.days, value.seconds, value.microseconds]]
    if isinstance(value, IPv4Interface | IPv6Interface):  # before Address: a subclass of it
        return ["inet", str(value)]
    if isinstance(value, IPv4Address | IPv6Address):
        return ["ip", str(value)]
    if isinstance(value, IPv4Network | IPv6Network):
        return ["cidr", str(value)]
    if isinstance(value, list):  # an array key
        return ["list", [["null", None] if v is None else _tag(v) for v in value]]
    raise ValueError(f"cannot store a chunk bound of type {type(value).__name__}")


_UNTAG: dict[str, Any] = {
    "bool": bool,
    "int": int,
    "str": str,
    "dec": Decimal,
    "float": float,
    "datetime": datetime.fromisoformat,
    "date": date.fromisoformat,
    "time": time.fromisoformat,
    "uuid": UUID,
    "bytes": bytes.fromhex,
    "interval": lambda parts: timedelta(*parts),
    "inet": ip_interface,
    "ip": ip_address,
    "cidr": ip_network,
    "list": lambda items: [_untag(v) for v in items],
    "null": lambda _: None,
}


def _untag(item: Sequence[Any]) -> Any:
    tag, raw = item
    if tag not in _UNTAG:
        raise ValueError(f"unknown chunk bound tag {tag!r}")
    return _UNTAG[tag](raw)
