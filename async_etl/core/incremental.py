"""Incremental reads over a cursor column: each run's window, and the cursor a run commits.

Theory of operation
-------------------
A job with ``[source] incremental = "c"`` reads, in each run, only the rows of its *window*::

    c IS NULL OR (c >= low - lookback AND c <= high)

* ``low`` is the cursor the job last committed (``None`` on the first run: no lower bound);
* ``high`` is ``max(c)`` of the source, read once before the first chunk (``None`` when ``c``
  is NULL everywhere: no upper bound), and never below ``low``;
* text cursors order by the column's collation, which Python cannot know (``en-x-icu`` puts
  ``'b'`` before ``'B'``, code points the other way): no decision compares text in Python.
  ``high`` is then the database's maximum as it is (were it below ``low``, the window holds
  no row above it, and a lower cursor only re-reads rows), and ``run_cursor`` tells ``low``
  from ``high`` by equality, not order;
* the window is stored with the run's chunk plan, so a resumed run reads the very same window.

Why ``>=`` and a fixed ``high``.  Rows committed after ``high`` was read carry ``c >= high`` if
the cursor only grows; the next run reads ``c >= high`` (``>=``, not ``>``), so a row that
arrived later with a cursor *equal* to the previous maximum (same timestamp, same batch number)
is read again instead of lost, and the idempotent merge absorbs the overlap.  Every chunk of a
run, parallel or resumed, reads its key range of the same window, whenever it runs; a chunk that
runs late does not see rows above ``high`` (the next run does), so no chunk's read can move the
cursor past rows another chunk has not read.

The committed cursor.  Each chunk's checkpoint records the cursor it covers (``high``), in the
chunk's own transaction on a PostgreSQL target.  ``run_cursor`` turns a run's checkpoints into
the job's cursor: the lowest cursor over all chunks, where a chunk not yet checkpointed counts
as the run's ``low``.  So the job's cursor moves to ``high`` only when every chunk is committed,
and never passes an unacknowledged chunk; a failed or stopped run leaves it at ``low``.

NULL cursors are read by every run (``c IS NULL`` is always in the window): a row is never lost
because its writer left the cursor unset, at the cost of re-reading such rows each time.

An endless cursor.  PostgreSQL sorts a float or numeric ``NaN`` above every number, and a date
or timestamp ``infinity`` above every value; a run whose window tops out there reads that row
(the window is ``c <= NaN``: everything) and commits it.  Every run after it would read only
``c >= NaN`` and succeed, however many rows arrive below: so a new run over such a committed
cursor is refused (``stuck``), the run that commits it is not.  asyncpg reads a date or time
``infinity`` as ``date.max`` / ``datetime.max``, as it reads ``9999-12-31`` (a common sentinel,
never refused): the source's maximum comes with PostgreSQL's own text of it (``is_endless``), and
the window stores the answer (``CursorWindow.endless``).  ``-infinity`` sorts first: a cursor
there moves on.

A cursor whose text was lost.  Before the window kept ``endless`` (2b4cc23), a run whose top was
a date or time ``infinity`` stored it as asyncpg read it, ``9999-12-31`` (``23:59:59.999999``),
as it stores a real ``9999-12-31``; that code also sent such a cursor back as ``infinity``, so
the job was stuck either way.  Read today, the cursor is ``9999-12-31``, and the next run reads
``c >= '9999-12-31'``: the rows added below it are skipped, and the run succeeds.  A window now
says which it was (``endless``, or ``finite`` for a real value at the type's maximum); a
committed date or time at the type's maximum under a window that says neither is ``unsure``,
and the job asks the source whether a row holds that very value (``holds_sql``): if none
does, the cursor came from ``infinity`` and the run is refused as a stuck one is.

Bounds as text.  asyncpg binds ``date.max`` / ``datetime.max`` as ``infinity`` and the
minimums as ``-infinity``, and reads them back the same way: a cursor at ``9999-12-31`` (a
common "valid to" sentinel) bound as it is reads ``c >= 'infinity'``, and a row arriving later
at ``9999-12-31`` is never read; a top at ``0001-01-01`` reads ``c <= '-infinity'``.  So
PostgreSQL is sent a date or time bound as text cast to its type (``pg_bound``:
``$1::text::date``), its ISO text, which is exact: ``'infinity'`` only for the top of an
``endless`` window, ``'-infinity'`` for the lowest value as ``low`` (which may have been read
from one: at worst rows below the cursor are read again).  Chunk cuts are not sent this
way: the source binds them as its target does (asyncpg's codecs for a PostgreSQL target, whose
statements bind them alike; ``core.pg_values``' exact ones for CrateDB and Oracle).

Rows capped before the window.  The window wraps the source (``SELECT ... FROM (query) AS q
WHERE <window>``), so whatever in the query picks a subset of its rows picks it *before* the
window: a ``LIMIT`` / ``OFFSET`` / ``FETCH FIRST`` (at the top, in a subquery or a CTE, in a
view) or a ``TABLESAMPLE``.  Each run then reads the same first rows, the cursor stops at the
top of them and later rows are never read, while every run succeeds.  ``row_cap`` finds such a
cap in PostgreSQL's plan of the source (``EXPLAIN``, no ``ANALYZE``): a ``Limit`` or ``Sample
Scan`` node on a path the output rows come through.  Every input of a node is such a path
(a sort, an aggregate, an append, both sides of a hash or merge join: a limited side decides
which rows come out), except the inner side of a nested loop (run again for each outer row:
a ``LATERAL (... LIMIT 1)`` look-up is per row and legitimate) and the scalar subqueries of an
expression (``SubPlan`` / ``InitPlan``); a CTE's body is followed from the ``CTE Scan`` that
reads it.  Not found: a cap under a nested loop's inner side that is not per row (the
planner rarely puts a limited subquery there), and anything in an Oracle source (no plan is
read there: only the job file's text is checked, ``sqltext.limits_rows``).

A cursor that is not monotonic (a clock set back, ``now()`` of a transaction that commits
after a run read past its start) can commit rows below the committed cursor; later runs do not
read them.  ``lookback`` widens every window downwards by that much (seconds for date and time
cursors, units for numeric ones); it costs re-reading the rows inside it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from async_etl.core.chunks import _tag, _untag
from async_etl.core.scd_sql_common import SOURCE, Binder, Sql, Style, embed_source, quote

__all__ = [
    "CursorKind",
    "CursorWindow",
    "capped_refusal",
    "cursor_kind",
    "cursor_text",
    "endless_text",
    "holds_sql",
    "is_endless",
    "max_cursor_sql",
    "null_keys_sql",
    "pg_bound",
    "row_cap",
    "run_cursor",
    "stuck",
    "tag",
    "time_type",
    "unsure",
    "untag",
    "window_clause",
    "window_count_sql",
]

CursorKind = Literal["number", "time", "date", "text"]

_NUMBER = ("smallint", "integer", "bigint", "numeric", "real", "double precision", "decimal")
_TEXT = ("text", "character varying", "character", "varchar", "char")


def cursor_kind(sql_type: str) -> CursorKind | None:
    """What a column of PostgreSQL type ``sql_type`` is as a cursor; None: cannot be one."""
    base = sql_type.strip().lower().split("(", 1)[0].strip()
    if base.endswith("[]"):
        return None
    if base.startswith("timestamp"):
        return "time"
    if base == "date":
        return "date"
    if base in _NUMBER:
        return "number"
    if base in _TEXT:
        return "text"
    return None


def tag(value: Any) -> Any:
    """A cursor value as exact, type-tagged JSON (None stays None); ValueError if unsupported."""
    return None if value is None else _tag(value)


def untag(item: Any) -> Any:
    """Inverse of ``tag``; ValueError on an unknown tag."""
    return None if item is None else _untag(item)


MAX_TIME_LOOKBACK = 315_537_897_599
"""Seconds from 0001-01-01 to 9999-12-31 23:59:59: the most a date or time cursor can move."""


def minus(value: Any, lookback: int) -> Any:
    """``value`` moved ``lookback`` back: seconds for datetimes, days (rounded up) for dates.

    Raises ``ValueError`` for a value that cannot move (text) when ``lookback`` is not 0, and
    for a date or time moved before year 1.
    """
    if lookback == 0 or value is None:
        return value
    if isinstance(value, date):
        try:
            if isinstance(value, datetime):
                return value - timedelta(seconds=lookback)
            return value - timedelta(days=math.ceil(lookback / 86_400))
        except OverflowError:
            raise ValueError(
                f"lookback {lookback} s moves the cursor {value.isoformat()} before year 1"
            ) from None
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError(f"a lookback needs a number, date or time cursor, not {value!r}")
    return value - lookback


def is_endless(value: Any, shown: str | None = None) -> bool:
    """Whether a cursor at ``value`` could never move: NaN or +infinity (see above).

    A float or decimal says so itself.  A date or time cannot (``infinity`` and ``9999-12-31``
    both arrive as ``date.max``): ``shown`` is the database's text of the value, and only
    ``'infinity'`` is endless; without it a date or time is not.
    """
    if isinstance(value, float):
        return math.isnan(value) or value == math.inf
    if isinstance(value, Decimal):
        return value.is_nan() or (value.is_infinite() and value > 0)
    if isinstance(value, date):
        return shown == "infinity"
    return False


def endless_text(value: Any) -> str:
    """An endless cursor as PostgreSQL spells it: ``NaN``, ``Infinity`` or ``infinity``."""
    if isinstance(value, date):
        return "infinity"
    if isinstance(value, Decimal):
        return "NaN" if value.is_nan() else "Infinity"
    return "NaN" if isinstance(value, float) and math.isnan(value) else "Infinity"


@dataclass(frozen=True, slots=True)
class CursorWindow:
    """The cursor range one run reads: ``column IS NULL OR start <= column <= high``.

    ``low`` is the job's committed cursor before the run, ``start`` is ``low - lookback``;
    ``None`` leaves that side open.  ``endless``: ``high`` is the source's NaN or +infinity
    (``is_endless``), above every value; a run that commits it leaves a cursor that is ``stuck``.
    """

    column: str
    low: Any = None
    high: Any = None
    lookback: int = 0
    endless: bool = False

    @classmethod
    def plan(
        cls, column: str, low: Any, source_max: Any, lookback: int = 0, top_endless: bool = False
    ) -> CursorWindow:
        """The window of a new run: from ``low`` up to ``max(low, source_max)``.

        Text keeps ``source_max`` as the database ordered it (its collation, see above).
        ``top_endless``: ``source_max`` is NaN or +infinity (``is_endless`` with the database's
        text of it), which the database sorts above ``low`` (Python's ``max`` keeps a number
        over a NaN, and a decimal NaN does not compare at all).

        Raises ``ValueError`` when ``low`` and ``source_max`` do not compare (the column's type
        changed since the cursor was committed) or ``lookback`` cannot apply to them.
        """
        high = source_max
        top_endless = source_max is not None and (top_endless or is_endless(source_max))
        if low is not None and source_max is not None:
            text = isinstance(low, str), isinstance(source_max, str)
            try:
                if text[0] != text[1]:
                    raise TypeError
                if not text[0] and not top_endless:  # text: the database's (collation's) max
                    high = max(low, source_max)
            except TypeError:
                raise ValueError(
                    f"the committed cursor {low!r} does not compare with {source_max!r}"
                ) from None
        elif low is not None:
            high = low
        window = cls(column, low, high, lookback, top_endless)
        minus(window.low, lookback)  # refuse a lookback the values cannot take, now
        return window

    @property
    def start(self) -> Any:
        """The lowest cursor read (``low - lookback``; None: no lower bound)."""
        return minus(self.low, self.lookback)

    def values(self, style: Style) -> dict[str, Any]:
        """The bind values of ``predicate`` (``cur_lo``, ``cur_hi``) in dialect ``style``.

        PostgreSQL: a date or time as its text (``pg_bound``), any other value as it is.
        """
        if style != "pg":
            return {"cur_lo": self.start, "cur_hi": self.high}
        return {"cur_lo": pg_bound(self.start, "low", False),
                "cur_hi": pg_bound(self.high, "high", self.endless)}  # fmt: skip

    def predicate(self, ref: str, bind: Binder) -> str | None:
        """SQL for "``ref`` (a quoted column reference) is in the window"; None: everything.

        PostgreSQL: a date or time bound is bound as text and cast (``pg_bound``).
        """
        parts = []
        if self.start is not None:
            parts.append(f"{ref} >= {_bound_ref(bind, 'cur_lo', self.start)}")
        if self.high is not None:
            parts.append(f"{ref} <= {_bound_ref(bind, 'cur_hi', self.high)}")
        if not parts:
            return None
        return f"({ref} IS NULL OR ({' AND '.join(parts)}))"

    def to_json(self) -> dict[str, Any]:
        """JSON-able form, stored with the run's chunk plan (``endless`` only when true).

        ``finite``: a date or time top at its type's maximum that is that value, not
        ``infinity`` (see "A cursor whose text was lost"); only then.
        """
        data = {"column": self.column, "low": tag(self.low), "high": tag(self.high),
                "lookback": self.lookback}  # fmt: skip
        if self.endless:
            return {**data, "endless": True}
        return {**data, "finite": True} if _highest(self.high) else data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CursorWindow:
        """Inverse of ``to_json``; raises ``ValueError`` or ``KeyError`` on a malformed one.

        A window stored without ``endless`` (before it was kept) is endless when its top says
        so itself (a NaN or infinite number; a date or time cannot tell).
        """
        high = untag(data["high"])
        top_endless = bool(data.get("endless", False)) or is_endless(high)
        return cls(str(data["column"]), untag(data["low"]), high,
                   int(data.get("lookback", 0)), top_endless)  # fmt: skip


def time_type(value: Any) -> str | None:
    """The PostgreSQL type of a date or time cursor ``value`` (None: not a date or time).

    asyncpg reads ``date`` as a ``date``, ``timestamp`` as a naive and ``timestamptz`` as an
    aware ``datetime``; ``CursorWindow.plan`` refuses a cursor whose kind changed.
    """
    if isinstance(value, datetime):
        return "timestamp" if value.tzinfo is None else "timestamptz"
    return "date" if isinstance(value, date) else None


_DT_MIN_UTC = datetime.min.replace(tzinfo=UTC)


def _lowest(value: date) -> bool:
    """Whether ``value`` is ``date.min`` / ``datetime.min``, which asyncpg binds as -infinity."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value == _DT_MIN_UTC  # the same instant, whatever its offset
    return value == (datetime.min if isinstance(value, datetime) else date.min)


_DT_MAX_UTC = datetime.max.replace(tzinfo=UTC)


def _highest(value: Any) -> bool:
    """Whether ``value`` is ``date.max`` / ``datetime.max``: asyncpg reads ``infinity`` so."""
    if isinstance(value, datetime):
        return value == (_DT_MAX_UTC if value.tzinfo is not None else datetime.max)
    return isinstance(value, date) and value == date.max


def unsure(stored: Mapping[str, Any], value: Any) -> bool:
    """Whether ``value``, committed under the stored window ``stored``, may be an ``infinity``.

    So it is for a date or time at its type's maximum when ``stored`` (``to_json``'s form)
    says neither ``endless`` nor ``finite``: written before either was kept (see "A cursor
    whose text was lost"); ``holds_sql`` tells.
    """
    return "endless" not in stored and "finite" not in stored and _highest(value)


def holds_sql(relation: str, column: str, value: Any) -> tuple[Sql, dict[str, Any]]:
    """PostgreSQL: whether a source row holds the date or time cursor ``value`` itself.

    ``SELECT EXISTS``, the value bound as its text (``9999-12-31``, never ``infinity``);
    ``relation`` as for ``null_keys_sql``.  Returns the statement and its bind values.
    """
    b = Binder("pg")
    st = b.sql(f"SELECT EXISTS (SELECT 1 FROM {SOURCE} WHERE "
               f"{_ref(column, 'pg')} = {_bound_ref(b, 'cur_at', value)})")  # fmt: skip
    return embed_source(st, relation), {"cur_at": pg_bound(value, "high", False)}


def pg_bound(value: Any, side: Literal["low", "high"], endless: bool) -> Any:
    """A window bound as PostgreSQL is sent it: a date or time as its text, else ``value``.

    See the header, "Bounds as text": ``9999-12-31`` stays ``9999-12-31``.  The top of an
    ``endless`` window is ``'infinity'``; the lowest date or time on the ``low`` side is
    ``'-infinity'`` (it may have been read from one; if not, the run only re-reads rows below
    its cursor).
    """
    if time_type(value) is None:
        return value
    if side == "high" and endless:
        return "infinity"
    if side == "low" and _lowest(value):
        return "-infinity"
    return str(value.isoformat())


def _bound_ref(bind: Binder, name: str, value: Any) -> str:
    """A window bound's placeholder: ``$1::text::date`` for a date or time in PostgreSQL."""
    sql_type = time_type(value)
    if bind.style != "pg" or sql_type is None:
        return bind(name)
    return f"{bind(name)}::text::{sql_type}"


def window_clause(window: CursorWindow | None, bind: Binder) -> str:
    """`` AND <q.column is in the window>`` for a ``WHERE`` over a source aliased ``q``.

    "" without a window (or one open on both sides).
    """
    if window is None:
        return ""
    cond = window.predicate(_ref(window.column, bind.style), bind)
    return f" AND {cond}" if cond else ""


def _ref(name: str, style: Style) -> str:
    return f"q.{quote(name, style)}"


def null_keys_sql(
    style: Style,
    relation: str,
    key: Sequence[str],
    window: CursorWindow | None = None,
    limit: int | None = None,
) -> Sql:
    """Source rows (of the window) with a NULL key part: their count, or (``limit``) keys.

    ``relation`` is the dialect's source relation aliased ``q``, put in verbatim (a user's
    query keeps its line breaks); binds: ``window.values()``.
    """
    b = Binder(style)
    refs = [_ref(c, style) for c in key]
    cond = " OR ".join(f"{r} IS NULL" for r in refs)
    clause = window_clause(window, b)
    if clause:
        cond = f"({cond}){clause}"
    if limit is None:
        count = "count(*)" if style == "pg" else "COUNT(*)"
        return embed_source(b.sql(f"SELECT {count} FROM {SOURCE} WHERE {cond}"), relation)
    tail = f"LIMIT {int(limit)}" if style == "pg" else f"FETCH FIRST {int(limit)} ROWS ONLY"
    st = b.sql(f"SELECT {', '.join(refs)} FROM {SOURCE} WHERE {cond} {tail}")
    return embed_source(st, relation)


def window_count_sql(style: Style, relation: str, window: CursorWindow) -> Sql:
    """How many source rows the window holds (a run's row estimate); binds ``window.values()``."""
    b = Binder(style)
    cond = window.predicate(_ref(window.column, style), b) or "1 = 1"
    return embed_source(b.sql(f"SELECT COUNT(*) FROM {SOURCE} WHERE {cond}"), relation)


def max_cursor_sql(style: Style, relation: str, column: str, shown: bool = False) -> Sql:
    """The source's highest value of the cursor ``column`` (NULL when it has none).

    ``shown`` (PostgreSQL): also that value as the database's text, which tells a date or
    time ``infinity`` from ``9999-12-31`` (``is_endless``).
    """
    ref = _ref(column, style)
    also = f", MAX({ref})::text" if shown and style == "pg" else ""
    return Sql(f"SELECT MAX({ref}){also} FROM {relation}")


def run_cursor(window: CursorWindow, chunks: Iterable[int], committed: Mapping[int, Any]) -> Any:
    """The cursor a run has committed: the lowest over its ``chunks``.

    ``committed`` maps each checkpointed chunk index to the cursor its checkpoint recorded;
    a chunk without a checkpoint counts as ``window.low``.  ``None`` is lower than any value
    (nothing is guaranteed: the next run reads from the start).  The result never exceeds the
    ``low`` of a run with an unacknowledged chunk, nor any checkpoint's cursor.
    An endless window's top does not order in Python (NaN; ``infinity`` read as 9999-12-31):
    the run's cursor is then its top when ``stuck``, its ``low`` otherwise.
    """
    if window.endless:
        return window.high if stuck(window, chunks, committed) else window.low
    lowest: Any = _TOP
    for index in chunks:
        value = committed.get(index, window.low)
        if value is None:
            return None
        if lowest is _TOP or value == lowest:
            lowest = value
        elif window.low in (value, lowest):  # low is the lowest: no order needed (text)
            lowest = window.low
        else:
            lowest = min(value, lowest)
    return window.low if lowest is _TOP else lowest


_TOP = object()


def cursor_text(window: CursorWindow, value: Any) -> str:
    """A cursor of ``window`` for people, an endless top as PostgreSQL spells it.

    ``infinity``, not the ``9999-12-31 23:59:59.999999`` asyncpg reads; else ``str(value)``.
    """
    return endless_text(value) if window.endless and value is window.high else str(value)


def stuck(window: CursorWindow, chunks: Iterable[int], committed: Mapping[int, Any]) -> bool:
    """Whether the run committed its endless top: a cursor that can never move again.

    So it is when every one of its ``chunks`` (one at least) is checkpointed under an
    ``endless`` window.  A new run from there could never read a row again: it is refused.
    """
    indexes = list(chunks)
    return window.endless and bool(indexes) and all(i in committed for i in indexes)


_CAPS = {"Limit": "a LIMIT / OFFSET / FETCH FIRST", "Sample Scan": "a TABLESAMPLE"}
"""Plan nodes that pass on a subset of their input's rows, and what the query says for them."""


def row_cap(plan: Any) -> str | None:
    """What picks a subset of the source's rows before the window applies; None: nothing.

    ``plan`` is PostgreSQL's ``EXPLAIN (FORMAT JSON)`` of the source (the text or its parsed
    list).  The rule and what it cannot see are in the header ("Rows capped before the
    window").  The answer names the clause, and the table of a ``TABLESAMPLE``.  A plan of
    another shape (not PostgreSQL's) gives None.
    """
    try:
        root = (json.loads(plan) if isinstance(plan, str | bytes) else plan)[0]["Plan"]
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    ctes: dict[str, Any] = {}
    stack = [root]
    while stack:  # the CTE bodies, wherever the planner hung them
        node = stack.pop()
        for child in node.get("Plans", ()):
            name = str(child.get("Subplan Name", ""))
            if child.get("Parent Relationship") == "InitPlan" and name.startswith("CTE "):
                ctes[name[4:]] = child
            stack.append(child)
    followed: set[str] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        kind = node.get("Node Type")
        if kind in _CAPS:
            table = node.get("Relation Name")
            return f"{_CAPS[kind]} on {table}" if kind == "Sample Scan" and table else _CAPS[kind]
        name = node.get("CTE Name")
        if kind == "CTE Scan" and name in ctes and name not in followed:
            followed.add(name)
            stack.append(ctes[name])
        for child in node.get("Plans", ()):
            side = child.get("Parent Relationship")
            if side in ("InitPlan", "SubPlan") or (kind == "Nested Loop" and side == "Inner"):
                continue
            stack.append(child)
    return None


def capped_refusal(column: str, cap: str) -> str:
    """The one line refusing an incremental source whose rows ``cap`` picks (``row_cap``)."""
    return (f"[source] incremental: the source's rows are picked by {cap} before the cursor "
            f"window on {column} applies (the window wraps the query), so every run would "
            "read the same rows, the cursor would stop at them and later rows would never be "
            "read; remove it (a per-row LIMIT belongs in a LATERAL join)")  # fmt: skip
