"""Which batches CrateDB may take as they are, checked a column at a time; their bulk bodies.

Theory of operation
-------------------
``encode_crate_rows`` (``core.row_codecs``) refuses a row holding a value CrateDB would not
store exactly (``core.exact.crate_refusal``: a NaN or an infinity, an integer past the
column's range or past 2**53 in a floating column, sub-millisecond time, a type JSON cannot
carry).  Checking row by row costs a few microseconds a row; ``plain`` answers the
same question for a whole batch with whole-column builtins (the value types of each column,
``min`` / ``max``, ``math.isfinite``): True means no row would be refused, False means "check
row by row" (it may also mean "not sure").

A batch that passes goes out as ``bulk_body``: one dump per slice of rows, joined byte for byte
into what the dump of ``{"stmt": stmt, "bulk_args": rows}`` gives, so a caller can let its event
loop run between slices (``body_parts``).  The dump is ``orjson.dumps`` unless the caller passes
``dump_plain`` (the writer's sink does): msgspec's JSON encoder, which writes a ``datetime`` about
ten times faster than orjson (25 against 190-260 ns on this machine: ``benchmarks/RESULTS.md``,
"msgspec").  For the values a ``plain`` batch holds its body reads as orjson's does: the same
strings, integers, ``true`` / ``false`` / ``null``, dates and UUIDs byte for byte; a ``float`` in
its shortest round-trip form (an exponent written ``1e64`` where orjson writes ``1e+64``: the
same double to any JSON reader); a ``datetime`` in RFC 3339 with the same digits, a UTC offset
written ``Z`` where orjson writes ``+00:00`` (the same instant: CrateDB's timestamp literal takes
``Z``, CrateDB docs, Data types, TIMESTAMP).  A subclass of ``int`` or ``str`` is written as its
builtin value, as orjson writes it; a value JSON cannot carry raises ``TypeError`` as orjson
does (then the sink encodes row by row, which refuses it with a reason).

The writer's intake asks through a ``ColumnPlan`` (decided once from the table's column types):
it answers ``plain`` and the rows' size estimate (``core.batching.column_total``) in one look a
column at a time, and spares a column the type count when one pass proves it plain.  A column
whose first value is a ``str`` is joined (but in a timestamp column, where each string is
checked: ``core.exact.crate_timestamp_text``) (what its size needs anyway): the join raises
``TypeError`` unless every value is a ``str``, which ``crate_refusal`` never refuses.  One
whose first value is an ``int``, in a column whose range is that of an ``array`` type (every
integer column; not a floating one, where 2**53 bounds an exact integer), is packed as that
type (``struct.pack`` of the values as they are read: no list of them, about a third cheaper
than ``array(code, list)``): it raises unless every value is an integer (a ``bool``, or any
object with ``__index__``) inside the column's range, which ``crate_refusal`` does not refuse
either.  A column whose first value is a ``float`` or a ``datetime`` and whose values are all
of that exact type (one type count) takes that type's check alone (``_ONE_KIND``: a finite
sum, in a column neither REAL nor integer (``core.exact.writer_refusal`` refuses a float
there); the set of microsecond fields, and the set of ``tzinfo``, which in a timestamp column
must be the column's kind, ``core.exact.zone_refusal``, and whose offsets must be whole
minutes, ``core.exact.minute_offset``: asked once per fixed ``timezone``, value by value for
another zone but UTC).  A probe that fails, and every other
column, takes the column's types and the per-column check (``_plain_column``).  The answer
may be True where that check alone says False (a ``str`` or ``int`` subclass, a ``bool``),
never the other way round; a value with ``__index__`` that JSON cannot carry (a numpy
integer) passes the probe and is refused by orjson's ``TypeError`` when the body is dumped,
as any such value is (the sink then encodes row by row).
"""

from __future__ import annotations

import math
import operator
import struct
import uuid
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timezone, tzinfo
from typing import Any

import orjson
from msgspec.json import Encoder

from async_etl.core.batching import ROW_OVERHEAD, column_bytes, kinds_of
from async_etl.core.exact import (
    CRATE_INT_BITS,
    INTEGERS,
    TIMESTAMPS,
    UNZONED,
    ZONED,
    TextBound,
    crate_timestamp_text,
    minute_offset,
    whole_minutes,
)

_NONE = type(None)
_PLAIN = frozenset({str, bool, _NONE, date, uuid.UUID})
_BIG = 2**63
_FLOAT_INTS = 2**53
_REAL_INTS = 2**24
"""Every integer of magnitude up to 2**24 is exact as a 32-bit float (its 24-bit significand,
IEEE 754 binary32); past it ``core.exact.crate_refusal`` decides value by value."""
_micros = operator.attrgetter("microsecond")
_zone = operator.attrgetter("tzinfo")
_FLOATING = frozenset({"double precision", "real", "numeric"})
_ARRAY_OF_BITS = {array(code).itemsize * 8: code for code in "bhiq"}
"""Signed integer ``array`` typecodes by width in bits (8, 16, 32 and 64 on CPython); each is
also the ``struct`` format (native sizes) of that width."""


def _plain_column(column: Sequence[Any], kinds: frozenset[type], base: str) -> bool:
    """True when ``crate_refusal`` refuses no value of ``column`` (whole-column builtins).

    In a timestamp column a ``str`` is checked one by one (``crate_timestamp_text``), and a
    ``date`` (not a ``datetime``) is never plain (``core.exact.writer_refusal`` refuses it).
    """
    if kinds <= _PLAIN and not ((str in kinds or date in kinds) and base in TIMESTAMPS):
        return True
    values: Sequence[Any] = column
    if _NONE in kinds:
        kinds = kinds - {_NONE}
        values = [v for v in column if v is not None]
    if kinds == {str}:
        return not any(crate_timestamp_text(v, base) for v in values)
    if kinds == {float}:
        return _finite(values, base)
    if kinds == {int}:
        bound = _FLOAT_INTS if base in ("double precision", "numeric") else _BIG
        if base == "real":
            bound = _REAL_INTS
        if base in CRATE_INT_BITS:
            bound = 2 ** (CRATE_INT_BITS[base] - 1)
        return bool(-bound <= min(values) and max(values) < bound)
    if kinds == {datetime}:
        return _whole_ms(values, base)
    return False


def _finite(column: Sequence[float], base: str) -> bool:
    """``_plain_column`` of a column of ``float`` values alone: finite, not a REAL or integer.

    A finite sum has no NaN or infinity in it (one C pass); an infinite one may be an overflow.
    A float in an integer column is refused (``core.exact.writer_refusal``), ``1.0`` too.
    """
    if base == "real" or base in INTEGERS:
        return False
    return math.isfinite(sum(column)) or all(map(math.isfinite, column))


def _whole_ms(column: Sequence[datetime], base: str) -> bool:
    """``_plain_column`` of a column of ``datetime`` values alone.

    Whole milliseconds (each distinct microsecond field once), UTC offsets of whole minutes
    (``_minute_offsets``: JSON writes ``HH:MM``; the row check sends or refuses the others)
    and, in a timestamp column, the time zone kind ``zone_refusal`` asks for (each distinct
    ``tzinfo`` once).
    """
    zones = set(map(_zone, column))
    if (base in ZONED or base in UNZONED) and (
        (None in zones) if base in ZONED else (zones != {None})
    ):
        return False
    if not zones <= _MINUTE_ZONES and not _minute_offsets(column, zones):
        return False
    return not any(m % 1000 for m in set(map(_micros, column)))


_MINUTE_ZONES = frozenset({None, UTC})


def _minute_offsets(column: Sequence[datetime], zones: set[tzinfo | None]) -> bool:
    """True when every value's UTC offset is whole minutes (``core.exact.minute_offset``).

    A fixed ``timezone`` is asked once; any other zone (zoneinfo's offsets change with the
    date) value by value.
    """
    fixed = [zone for zone in zones if isinstance(zone, timezone)]
    if len(fixed) == len(zones - {None}):
        return all(whole_minutes(zone.utcoffset(None)) for zone in fixed)
    return all(map(minute_offset, column))


_ONE_KIND: dict[type, Callable[[Any, str], bool]] = {float: _finite, datetime: _whole_ms}
"""The check of a column whose values are all of one of these exact types (``_plain_column``'s
answer for it, without the type set)."""


def _int_code(base: str) -> str | None:
    """The ``array`` typecode whose range is the integers ``_plain_column`` lets a ``base`` take.

    None for a floating column (2**53 bounds its exact integers: no ``array`` type's range).
    """
    if base in _FLOATING:
        return None
    return _ARRAY_OF_BITS.get(CRATE_INT_BITS.get(base, 64))


@dataclass(frozen=True, slots=True)
class ColumnPlan:
    """How the intake looks at each column of a CrateDB table (see the module docstring).

    ``bases``: each column's base type name (empty: decide by the value's type), ``codes``
    each column's ``array`` typecode for its integers (None: no probe), ``lengths`` each
    column's ``VARCHAR(n)`` / ``CHARACTER(n)`` rule (None: not checked; ``()``: none is).
    """

    bases: tuple[str, ...]
    codes: tuple[str | None, ...]
    lengths: tuple[TextBound | None, ...] = ()

    @classmethod
    def of(
        cls, bases: Sequence[str], width: int, lengths: Sequence[TextBound | int | None] = ()
    ) -> ColumnPlan:
        """The plan for ``width`` columns of these base types (``()``: not known).

        ``lengths``: each column's rule (``core.exact.text_bound``; an int n: ``VARCHAR(n)``)
        or None; a str it would not store as it is (longer, or not exactly n for
        ``CHARACTER(n)``) is not plain (``core.exact.text_length_check`` refuses it).
        """
        names = tuple(bases) or ("",) * width
        limits = tuple(TextBound(n, False) if isinstance(n, int) else n for n in lengths)
        if all(n is None for n in limits):
            limits = ()
        return cls(names, tuple(map(_int_code, names)), limits)

    def look(self, rows: Sequence[tuple[Any, ...]], check: bool = True) -> tuple[bool, int]:
        """``(plain, size)`` of ``rows``: tuples (or lists) as wide as the plan.

        ``plain``: ``crate_refusal`` refuses none of their values (see the module docstring;
        always False when not ``check``); ``size``: ``column_total`` of them (an object that
        is both a ``str`` and an integer, in an integer column, is sized as an integer).
        """
        if not rows:
            return check, 0
        count = len(rows)
        total = ROW_OVERHEAD * count
        plain = check
        first = rows[0]
        lengths = self.lengths or (None,) * len(self.bases)
        for i, (base, code, limit) in enumerate(zip(self.bases, self.codes, lengths, strict=True)):
            pick = operator.itemgetter(i)
            head = first[i]
            kind = type(head)
            if isinstance(head, str) and base not in TIMESTAMPS:
                try:  # every value a str: never refused (but by VARCHAR(n) / CHAR(n)), sized
                    total += len("".join(map(pick, rows))) + 4 * count
                    if plain and limit is not None:
                        sizes = list(map(len, map(pick, rows)))
                        plain = limit.fits(max(sizes)) and limit.fits(min(sizes))
                    continue
                except TypeError:
                    pass
            elif code is not None and kind is int:
                try:  # every value an integer inside the column's range (no list of them)
                    struct.pack(f"{count}{code}", *map(pick, rows))
                    total += 8 * count
                    continue
                except (struct.error, TypeError, OverflowError):
                    pass
            column = list(map(pick, rows))
            if kind in _ONE_KIND and operator.countOf(map(type, column), kind) == count:
                total += 8 * count  # one type, not sized by length: its check alone
                plain = plain and _ONE_KIND[kind](column, base)
                continue
            kinds = kinds_of(column)
            total += column_bytes(column, kinds)
            plain = plain and _plain_column(column, kinds, base)
            if plain and limit is not None and str in kinds:
                plain = all(limit.fits(len(v)) for v in column if isinstance(v, str))
        return plain, total

    def plain(self, rows: Sequence[tuple[Any, ...]]) -> bool:
        """``look``'s answer for ``rows``; False for rows of other widths (check row by row)."""
        width = len(self.bases)
        if rows and set(map(len, rows)) != {width}:
            return False
        return self.look(rows)[0]


def plain(
    rows: Sequence[tuple[Any, ...]],
    bases: Sequence[str],
    lengths: Sequence[TextBound | int | None] = (),
) -> bool:
    """``ColumnPlan.plain`` for rows; False also for rows of different widths."""
    if not rows:
        return True
    return ColumnPlan.of(bases, len(rows[0]), lengths).plain(rows)


def _builtin(value: Any) -> Any:
    """The ``enc_hook`` of msgspec: an ``int`` or ``str`` subclass as its builtin value (as orjson).

    ``int.__int__`` / ``str.__str__`` read the value itself, not a subclass's override.  Raises
    ``TypeError`` for any other type msgspec does not know (as orjson does).
    """
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, str):
        return str.__str__(value)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


Dump = Callable[[Any], bytes]
"""A JSON dump: ``orjson.dumps`` or ``dump_plain``."""


_ENCODE = Encoder(enc_hook=_builtin).encode


def dump_plain(value: Any) -> bytes:
    """``value`` as JSON through msgspec (see the module docstring for how it reads as orjson's).

    Raises ``TypeError`` for a value JSON cannot carry (a ``str`` with a lone surrogate too:
    msgspec raises ``UnicodeEncodeError`` for it, orjson ``TypeError``).  For rows ``plain``
    passed only: msgspec writes values orjson refuses (``bytes`` as base64, a ``Decimal`` or a
    ``timedelta`` as text, a ``set`` as an array), and ``plain`` never passes one.
    """
    try:
        body: bytes = _ENCODE(value)
    except UnicodeEncodeError as exc:
        raise TypeError(f"str is not valid UTF-8: {exc.reason}") from exc
    return body


def body_parts(
    stmt: str, rows: Sequence[tuple[Any, ...]], every: int, dump: Dump = orjson.dumps
) -> Iterator[bytes]:
    """The pieces of ``bulk_body(stmt, rows, dump)``: ``every`` rows dumped per piece.

    Raises ``TypeError`` (from the dump) for a value JSON cannot carry: check ``plain`` first.
    """
    yield b'{"stmt":' + dump(stmt) + b',"bulk_args":['
    for start in range(0, len(rows), every):
        part = dump(rows[start : start + every])[1:-1]
        yield part if not start else b"," + part
    yield b"]}"


def bulk_body(stmt: str, rows: Sequence[tuple[Any, ...]], dump: Dump = orjson.dumps) -> bytes:
    """``dump({"stmt": stmt, "bulk_args": rows})``; raises ``TypeError`` like it."""
    return dump({"stmt": stmt, "bulk_args": rows})


__all__ = ["ColumnPlan", "Dump", "body_parts", "bulk_body", "dump_plain", "plain"]
