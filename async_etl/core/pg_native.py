"""Which batches asyncpg's own (C) COPY encoders may take as they are, checked a column at a time.

Theory of operation
-------------------
The writer's reference encoders (``row_codecs.PG_TYPES``) check every value and refuse a row
that does not fit its column, but they run in Python, a few microseconds a row.  asyncpg's
``copy_records_to_table`` encodes in C, about as fast as the raw driver can go, but it is
lenient in places: it turns a float into an int8 by truncation, an int or a ``Decimal`` into a
float8 by rounding, a ``date`` or a naive ``datetime`` into a timestamptz in the local time
zone, and the last representable instant into ``infinity``; a NUL in a text value fails the
whole COPY on the server.  So a batch goes to asyncpg only when ``ColumnPlan.plain`` holds:

* every column's type is in ``NATIVE`` (decided once per table: ``native_table``);
* each column's values are all of the exact Python type of the reference's fast path (so
  nothing is converted), NULL only where the column takes it, and the per-type extras below.

What asyncpg *raises* on (an integer out of range, a string that is not valid UTF-8) is not
checked here: the COPY fails on the client before anything is written, and the sink encodes
that batch again with the reference encoders, which refuse the bad rows by name.  So a value
is stored exactly as the reference would store it, or refused with its reason, on either path.

Every check is a whole-column builtin (``set(map(type, ...))``, ``min`` / ``max``, one
``join``), so the cost is a few tens of nanoseconds a value; the check works on any slice of a
batch, so a caller can check a large batch in slices and let its event loop run in between.

A ``timestamptz`` column of a plain batch is sent as naive datetimes of the same UTC wall time
(``wire_rows``), through asyncpg's ``timestamp`` encoder (``encode_as``): both types are int64
microseconds since 2000-01-01 on the wire (UTC for ``timestamptz``), and asyncpg's
``timestamptz`` encoder compares every aware value with its naive infinity sentinels (two
``utcoffset`` calls) and converts it to UTC before subtracting its epoch: ~450 ns a value,
against ~70 ns for the conversion here plus ~130 ns for the ``timestamp`` encoder (CPython
3.11, asyncpg 0.32, 200,000 values).  The conversion is ``v - 2000-01-01 UTC``, the
reference's own, added to the naive epoch; the ``timestamp`` encoder subtracts that epoch
again, so the microseconds sent are the reference's.  The check keeps such a column's values
strictly between the first and the last instant, so none meets the encoder's infinity.

The writer's intake asks through a ``ColumnPlan`` (decided once from the table's columns): it
answers ``plain`` and the rows' size estimate (``core.batching.column_total``) in one look a
column at a time, and spares a column its list and its type count when one pass over the rows
proves the column plain.  A text column (``text``, ``varchar``, ``bpchar``) is joined, which is
what its size and its NUL check need anyway: the join raises ``TypeError`` unless every value
is a ``str``.  A column whose check is its values' exact type (``bool``, the integers,
``float8``, ``uuid``) is one ``countOf`` of that type over the rows' values, which proves no
NULL and nothing else either.  A probe that fails, and every other column (``float4``,
``date``, ``timestamptz``: their checks need the values), takes the column's list, its types
and the per-column check (``_plain_column``).  The answer is that check's on every column but
for one thing: a text column of ``str`` subclasses (an enum's values) is plain, where the
type check refuses it; asyncpg sends such a value's own characters (``PyUnicode_AsUTF8``),
and so does the reference (``str.encode``) unless the subclass overrides ``encode``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import partial
from itertools import repeat
from typing import Any, Final
from uuid import UUID

from async_etl.core.batching import ROW_OVERHEAD, column_bytes, kinds_of
from async_etl.core.row_codecs import PgColumn, bounded, text_length

_NONE = type(None)
_TS_MAX = datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)  # asyncpg writes infinity
_TS_MIN = datetime(1, 1, 1, tzinfo=UTC)  # asyncpg writes -infinity
_not_none = partial(operator.is_not, None)


def _exact(kind: type) -> Callable[[set[type], Sequence[Any]], bool]:
    def check(kinds: set[type], values: Sequence[Any]) -> bool:
        return kinds <= {kind}

    return check


_F4_TINY = 1.5e-45  # at least the smallest float32 (1.4e-45): no smaller value underflows


def _float4(kinds: set[type], values: Sequence[Any]) -> bool:
    """Floats only, none that the C cast would flush to zero (the reference refuses those)."""
    if not kinds:
        return True
    if kinds != {float}:
        return False
    return bool(min(map(abs, filter(None, values)), default=1.0) >= _F4_TINY)


def _text(kinds: set[type], values: Sequence[Any]) -> bool:
    return kinds <= {str} and "\x00" not in "".join(values)


_TEXT: Final = frozenset(("text", "varchar", "bpchar"))
"""The text types: ``_text`` each (a column of ``str`` only: no NUL in its joined values)."""


def _between(kind: type, low: Any, high: Any) -> Callable[[set[type], Sequence[Any]], bool]:
    def check(kinds: set[type], values: Sequence[Any]) -> bool:
        if not kinds:
            return True
        if kinds != {kind}:
            return False
        return bool(low < min(values) and max(values) < high)

    return check


def _timestamptz(kinds: set[type], values: Sequence[Any]) -> bool:
    if not kinds:
        return True
    if kinds != {datetime}:
        return False
    try:  # naive with aware raises; all naive compare, and have no offset
        lo, hi = min(values), max(values)
    except TypeError:
        return False
    if lo.utcoffset() is None or hi.utcoffset() is None:
        return False
    return bool(lo > _TS_MIN and hi < _TS_MAX)


_CHECKS: Final[dict[str, Callable[[set[type], Sequence[Any]], bool]]] = {
    "bool": _exact(bool),
    "int2": _exact(int),
    "int4": _exact(int),
    "int8": _exact(int),
    "float4": _float4,
    "float8": _exact(float),
    **dict.fromkeys(_TEXT, _text),
    "timestamptz": _timestamptz,
    "date": _between(date, date.min, date.max),
    "uuid": _exact(UUID),
}

NATIVE: Final = frozenset(_CHECKS)
"""The column types (``pg_type.typname``) whose batches asyncpg may encode."""


def native_table(columns: Sequence[PgColumn]) -> bool:
    """True when every column's type is in ``NATIVE`` (else the reference encoders do it all).

    A bounded column (``timestamptz(0)``: ``row_codecs.bounded``) is not: the server would
    round what the reference refuses.  A ``varchar(n)`` / ``character(n)`` column is: its
    values' lengths are checked a column at a time (``_lengths_fit``).
    """
    return bool(columns) and all(
        c.typname in NATIVE and (text_length(c) is not None or not bounded(c)) for c in columns
    )


def _lengths_fit(col: PgColumn, limit: int, values: Iterable[str]) -> bool:
    """True when no value is longer than ``limit`` (nor shorter, for ``character(n)``).

    What ``row_codecs.length_refusal`` refuses: PostgreSQL would cut or pad it.
    """
    lengths = list(map(len, values))
    if not lengths:
        return True
    if col.typname == "bpchar":
        return min(lengths) == max(lengths) == limit
    return max(lengths) <= limit


def _plain_column(col: PgColumn, column: Sequence[Any], found: frozenset[type]) -> bool:
    """True when asyncpg would store each value of ``column`` (types ``found``) as the reference.

    False: encode the batch with ``row_codecs.encode_pg_rows``.  Raises ``KeyError`` for a
    column outside ``NATIVE`` (check ``native_table`` first).
    """
    kinds = set(found)
    checked: Sequence[Any] = column
    if _NONE in kinds:
        if not col.nullable:
            return False  # the reference refuses the row with its reason
        kinds.discard(_NONE)
        checked = tuple(filter(_not_none, column))
    if not _CHECKS[col.typname](kinds, checked):
        return False
    limit = text_length(col)
    return limit is None or _lengths_fit(col, limit, checked)


_ONE_TYPE: Final[dict[str, type]] = {
    "bool": bool, "int2": int, "int4": int, "int8": int, "float8": float, "uuid": UUID,
    **dict.fromkeys(_TEXT, str),
}  # fmt: skip
"""The column types whose probe is one pass (see the module docstring): a join for ``str``."""


@dataclass(frozen=True, slots=True)
class ColumnPlan:
    """How the intake looks at each column of a PostgreSQL table (see the module docstring).

    ``columns``: the table's columns in row order; ``probes``: each column's one-pass probe
    (the one type its values must have; None: none); ``native``: ``native_table(columns)``;
    ``lengths``: each column's ``varchar(n)`` / ``character(n)`` n (None: not checked).
    """

    columns: tuple[PgColumn, ...]
    probes: tuple[type | None, ...]
    native: bool
    lengths: tuple[int | None, ...] = ()

    @classmethod
    def of(cls, columns: Sequence[PgColumn]) -> ColumnPlan:
        """The plan for these columns (any types; ``look`` is never plain unless native)."""
        cols = tuple(columns)
        probes = tuple(_ONE_TYPE.get(c.typname) for c in cols)
        return cls(cols, probes, native_table(cols), tuple(map(text_length, cols)))

    def look(self, rows: Sequence[tuple[Any, ...]], check: bool = True) -> tuple[bool, int]:
        """``(plain, size)`` of ``rows``: tuples (or lists) of ``len(columns)`` values.

        ``plain``: ``_plain_column``'s answer on every column (but see the module docstring
        on ``str`` subclasses); always False when not ``check`` or not ``native``.  ``size``:
        ``column_total`` of the rows (a ``str`` subclass sized by its characters).
        """
        plain = check and self.native
        if not rows:
            return plain, 0
        count = len(rows)
        total = ROW_OVERHEAD * count
        lengths = self.lengths or (None,) * len(self.columns)
        for i, (col, probe, limit) in enumerate(
            zip(self.columns, self.probes, lengths, strict=True)
        ):
            pick = operator.itemgetter(i)
            if probe is str:
                try:  # every value a str: its size and its NUL check need this join alone
                    text = "".join(map(pick, rows))
                except TypeError:
                    pass
                else:
                    total += len(text) + 4 * count
                    plain = plain and "\x00" not in text
                    if plain and limit is not None:  # varchar(n) / character(n) alone
                        plain = _lengths_fit(col, limit, map(pick, rows))
                    continue
            elif probe is not None and operator.countOf(map(type, map(pick, rows)), probe) == count:
                total += 8 * count  # all of the one type the check takes (so no NULL)
                continue
            column = list(map(pick, rows))
            kinds = kinds_of(column)
            total += column_bytes(column, kinds)
            plain = plain and _plain_column(col, column, kinds)
        return plain, total

    def plain(self, rows: Sequence[tuple[Any, ...]]) -> bool:
        """``look``'s ``plain`` for ``rows``: asyncpg stores every value as the reference does."""
        return self.look(rows)[0]


SLICE_VALUES: Final = 16_384
"""Values checked or encoded between two yields to the event loop (a millisecond or two)."""

PACE_ABOVE: Final = 2 * SLICE_VALUES
"""A batch with more values than this is encoded in slices of ``SLICE_VALUES`` (below it, the
pause would cost more than the couple of milliseconds it saves)."""


_EPOCH_UTC = datetime(2000, 1, 1, tzinfo=UTC)  # the reference's epoch (row_codecs)
_EPOCH_NAIVE = datetime(2000, 1, 1)  # asyncpg's timestamp epoch


def encode_as(columns: Sequence[PgColumn]) -> tuple[str | None, ...]:
    """Per column, the type whose asyncpg encoder takes ``wire_rows``'s values (None: its own).

    ``timestamp`` for a ``timestamptz`` column (see the module docstring); ``()`` when no
    column needs another encoder.
    """
    cast = tuple("timestamp" if c.typname == "timestamptz" else None for c in columns)
    return cast if any(cast) else ()


def naive_utc(values: list[Any]) -> list[Any]:
    """Aware datetimes (or None) as naive datetimes of the same UTC wall time (None kept).

    ``naive_utc(vs)[i] - datetime(2000, 1, 1) == vs[i] - datetime(2000, 1, 1, tzinfo=UTC)``.
    Raises ``TypeError`` for a naive datetime or a value that is no datetime, and
    ``OverflowError`` for an instant whose UTC wall time is outside years 1-9999.
    """
    try:  # one C-level pass when there is no NULL (it raises TypeError at a None)
        return list(map(operator.add, map(operator.sub, values, repeat(_EPOCH_UTC)),
                        repeat(_EPOCH_NAIVE)))  # fmt: skip
    except TypeError:
        if None not in values:
            raise
    return [None if v is None else v - _EPOCH_UTC + _EPOCH_NAIVE for v in values]


def wire_rows(
    rows: Sequence[tuple[Any, ...]], cast: Sequence[str | None]
) -> Iterable[tuple[Any, ...]]:
    """``rows`` as asyncpg's encoders of ``cast`` (``encode_as``) take them: ``rows`` when ().

    Each ``timestamptz`` value (a ``plain`` batch's: aware, or None) becomes ``naive_utc``'s;
    the rows are made one at a time as they are read (no list of them).  Raises like
    ``naive_utc``.
    """
    if not cast:
        return rows
    columns: list[Iterable[Any]] = [map(operator.itemgetter(i), rows) for i in range(len(cast))]
    for i, kind in enumerate(cast):
        if kind is not None:
            columns[i] = naive_utc(list(columns[i]))
    return zip(*columns, strict=True)
