"""Which values a target stores exactly: the refusal is a decision, never a silent change.

Theory of operation
-------------------
A source value reaches a target through a wire format: PostgreSQL binary COPY (the same
types on both sides: exact by construction, or the server refuses the row), CrateDB's JSON
``bulk_args`` and Oracle binds.  The last two cannot carry every value:

* **CrateDB (JSON)**: JSON has no NaN or infinity (``orjson`` would write ``null``: a silent
  NULL); integers beyond CrateDB's ``BIGINT`` (64 bits) do not fit; ``numeric`` is stored as
  ``DOUBLE PRECISION``, exact only when the double's shortest decimal form is the value
  itself (at most 15-17 significant digits); timestamps and dates are epoch milliseconds,
  so a timestamp with microseconds would lose them, a UTC offset is written ``HH:MM`` (one of
  seconds or microseconds would be rounded or cut: ``minute_offset``; the writer sends such a
  value in UTC to a zoned column, ``utc_row``), and ``'infinity'`` has no form (a BC
  date or a year past 9999, read as ``core.pg_values.PgMoment``, is stored exactly).
  ``real`` is stored as a 32-bit float: it is sent as the float32's shortest decimal form,
  which CrateDB hands back unchanged, so the read-back compares equal.
* **Oracle (binds)**: ``''`` is NULL in Oracle; no infinity, and the driver binds only the
  years 1 to 9999 (a ``PgMoment``); ``NUMBER`` keeps 38 significant digits and
  exponents from -130 to 125, and no NaN or infinity; ``VARCHAR2(4000)`` holds 4000 bytes;
  ``DATE`` has no fraction of a second (a ``date`` source has none); ``BINARY_DOUBLE`` and
  ``BINARY_FLOAT`` keep NaN and the infinities, but not a float's -0: "-0 is converted to
  +0" (Oracle Database Development Guide, Behavior of Special Values for Native
  Floating-Point Data Types), and Oracle's comparison calls them equal, so a later change
  between them could not be seen either.  PostgreSQL's ``numeric`` has no -0 (``'-0'`` is
  read as 0), so ``NUMBER`` needs no such rule.

``crate_refusal`` / ``oracle_refusal`` say why one value cannot be stored exactly (``None``
when it can); ``row_refusal`` names the first refused column of a row.  The drivers turn a
refused row into a reject with that reason (``on_bad_row = "reject"``) or fail the run with
it (``fail``), and keep the row's key out of the merge, so its current version stays as it
is.  ``crate_sent`` is the value as it travels in CrateDB's JSON.  The writer into CrateDB
(``core.row_codecs.encode_crate_rows``) asks ``crate_refusal`` too, with the CrateDB column
types named as PostgreSQL's (``crate_column_type``), and the writer into PostgreSQL asks
``json_refusal`` for a json / jsonb value: one decision for both paths.  The writers (not the
mapper, whose values come from a typed source) also refuse a naive datetime for a timestamp
column with a time zone and an aware one for a column without (``zone_refusal``: the same
reason into PostgreSQL and into CrateDB, which would read a naive value as UTC and store an
aware one's wall clock in UTC), a ``date`` for a timestamp column (CrateDB would store
midnight UTC) and a ``float`` for an integer column, ``1.0`` too (``writer_refusal``: the
PostgreSQL writer's encoders refuse both).  Pure: no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from async_etl.core.compare import base_type, oracle_lob
from async_etl.core.pg_values import PgMoment

__all__ = [
    "BIGINT_RANGE",
    "CRATE_INT_BITS",
    "INTEGERS",
    "ORACLE_VARCHAR_BYTES",
    "TextBound",
    "crate_column_type",
    "crate_refusal",
    "crate_row_check",
    "crate_sent",
    "crate_timestamp_text",
    "json_refusal",
    "length_refusal",
    "locale_text_problem",
    "minute_offset",
    "not_an_integer",
    "oracle_number_as_decimal",
    "oracle_refusal",
    "row_refusal",
    "text_bound",
    "text_length_check",
    "utc_row",
    "whole_minutes",
    "writer_refusal",
    "zone_refusal",
]

BIGINT_RANGE = (-(2**63), 2**63 - 1)
"""CrateDB's ``BIGINT`` (and JSON integers as ``orjson`` writes them)."""

CRATE_INT_BITS = {"smallint": 16, "integer": 32, "byte": 8}
"""CrateDB integer column types narrower than ``BIGINT`` (as ``crate_column_type`` names them)
and their width in bits: a value outside the range is refused before it is sent, since CrateDB
refuses the whole bulk request for it (``400 4000 ... out of range for type integer``)."""

ORACLE_VARCHAR_BYTES = 4000
"""``VARCHAR2(4000)``: the Oracle type of unbounded ``text`` (byte length semantics)."""

_CRATE_FLOATS = frozenset({"numeric", "double precision", "real"})
"""Source types CrateDB stores as floating point (``numeric`` as ``DOUBLE PRECISION``)."""

_ORACLE_DIGITS = 38
_ORACLE_EXP = (-130, 125)

Refusal = Callable[[Any, str], "str | None"]

FLOAT32_MAX = 3.4028234663852886e38
"""The largest finite 32-bit float (``numpy.finfo(numpy.float32).max``)."""


def _short(value: Any, limit: int = 60) -> str:
    """A value for a reason: a Decimal as PostgreSQL writes it (``str``), not its repr."""
    text = str(value) if isinstance(value, Decimal) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _float32(value: float) -> float:
    """The shortest decimal form of ``value`` as a 32-bit float, back as a Python float."""
    import numpy as np  # here, not at import: a job without REAL columns skips numpy's 0.1 s

    return float(str(np.float32(value)))


def crate_sent(value: Any, pg_type: str) -> Any:
    """``value`` as it travels in CrateDB's JSON for a column of ``pg_type``.

    Only ``real`` differs from the value: it becomes its float32's shortest decimal form.
    """
    base, array = base_type(pg_type)
    if base == "real":
        if array and isinstance(value, list):
            return [None if v is None else _float32(v) for v in value]
        if isinstance(value, float) and math.isfinite(value):
            return _float32(value)
    return value


ZONED = frozenset({"timestamp with time zone", "timestamptz"})
UNZONED = frozenset({"timestamp without time zone", "timestamp"})
"""Base type names (``base_type``) of the timestamp columns with and without a time zone."""
TIMESTAMPS = ZONED | UNZONED

_CRATE_TS_TEXT = re.compile(
    r"\d{4,}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}:\d{2}(?:\.(\d+))?(Z|[+-]\d{2}(?::?\d{2})?)?)?"
)
"""CrateDB's timestamp string literal: ``date-element [time-separator [time-element
[offset]]]``, fraction ``'.' digit+``, offset ``{+ | -} HH [:mm] | 'Z'`` (CrateDB docs, Data
types, TIMESTAMP); group 1 the fraction's digits, group 2 the offset."""


def crate_timestamp_text(value: str, base: str) -> str | None:
    """Why CrateDB would store the timestamp string ``value`` changed in a ``base`` column, or None.

    CrateDB keeps milliseconds (a fraction's further digits are cut), and "A TIMESTAMP without
    a timezone will be converted to UTC without the offset" (CrateDB docs, Data types,
    TIMESTAMP): a non-zero offset into TIMESTAMP WITHOUT TIME ZONE would be dropped.  A string
    that is not such a literal is left to the server (it refuses what it cannot parse).
    """
    match = _CRATE_TS_TEXT.fullmatch(value)
    if match is None:
        return None
    fraction, offset = match.groups()
    if fraction and fraction[3:].strip("0"):
        return (
            f"timestamp {_short(value)} has digits past the millisecond; CrateDB stores "
            "milliseconds (it would cut them)"
        )
    if offset and base in UNZONED and offset != "Z" and offset[1:].strip("0:"):
        return (
            f"timestamp {_short(value)} has an offset; CrateDB ignores it for a TIMESTAMP "
            "WITHOUT TIME ZONE (it would store the wall clock as UTC)"
        )
    return None


_MINUTE = timedelta(minutes=1)


def minute_offset(value: datetime) -> bool:
    """True when ``value`` is naive or its UTC offset is a whole number of minutes.

    JSON encoders write an offset as ``HH:MM``: orjson rounds one of seconds (``-05:30:30`` as
    ``-05:31``), msgspec cuts it (``-05:30``), both drop microseconds; CrateDB's literal takes
    no more (``{+ | -} HH [:mm]``, CrateDB docs, Data types, TIMESTAMP).  Since Python 3.7 a
    ``timezone`` may carry seconds and microseconds, and zoneinfo's local mean time zones have
    seconds (``Europe/Amsterdam`` before 1937: +00:19:32).
    """
    return whole_minutes(value.utcoffset())


def whole_minutes(offset: timedelta | None) -> bool:
    """True when the UTC ``offset`` is None or whole minutes: ``minute_offset``, offset read.

    For an offset read once for many values (a fixed ``timezone``'s ``utcoffset(None)``).
    """
    return offset is None or not offset % _MINUTE


def _moved(value: Any) -> bool:
    """True for a datetime (or a list holding one) ``utc_row`` changes."""
    if isinstance(value, datetime):
        return not minute_offset(value)
    return isinstance(value, list) and any(
        isinstance(v, datetime) and not minute_offset(v) for v in value
    )


def _utc(value: Any) -> Any:
    if isinstance(value, datetime):
        return value if minute_offset(value) else value.astimezone(UTC)
    if isinstance(value, list):
        return [_utc(v) if isinstance(v, datetime) else v for v in value]
    return value


def utc_row(row: tuple[Any, ...], zoned: Sequence[int]) -> tuple[Any, ...]:
    """``row`` with its odd-offset datetimes at the positions ``zoned`` as the same instant in UTC.

    ``zoned``: the positions of timestamp with time zone columns (or arrays of them); a
    ``datetime`` there (or an array's element) whose offset is not whole minutes
    (``minute_offset``) becomes ``astimezone(UTC)``: the instant such a column stores, exact
    once JSON carries it.  The same tuple when nothing changes.
    """
    width = len(row)
    if not any(i < width and _moved(row[i]) for i in zoned):
        return row
    values = list(row)
    for i in zoned:
        if i < width:
            values[i] = _utc(values[i])
    return tuple(values)


def _crate_scalar(value: Any, base: str) -> str | None:
    if isinstance(value, str):
        return crate_timestamp_text(value, base) if base in TIMESTAMPS else None
    if isinstance(value, bool) or value is None or isinstance(value, bytes | bytearray):
        return None
    if isinstance(value, int):
        if not BIGINT_RANGE[0] <= value <= BIGINT_RANGE[1]:
            return f"integer {value} is beyond CrateDB's BIGINT range"
        bits = CRATE_INT_BITS.get(base)
        if bits is not None and not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
            return f"integer {value} is out of range for CrateDB's {base.upper()}"
        if base == "real" and int(_float32(float(value))) != value:
            return f"integer {value} is not exact as CrateDB's REAL (a 32-bit float)"
        if base in _CRATE_FLOATS and int(float(value)) != value:
            return f"integer {value} is not exact as CrateDB's DOUBLE PRECISION"
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return f"{value!r} cannot travel in CrateDB's JSON (it would arrive as NULL)"
        if base == "real" and abs(value) > FLOAT32_MAX:
            return f"{value!r} is beyond CrateDB's REAL range"
        if base == "real" and value and _float32(value) == 0:
            return f"{value!r} underflows CrateDB's REAL (it would be stored as 0)"
        return None
    if isinstance(value, Decimal):
        if not value.is_finite():
            return f"numeric {value} cannot travel in CrateDB's JSON"
        if Decimal(repr(float(value))) != value:
            return (
                f"numeric {_short(value)} is not exact as CrateDB's DOUBLE PRECISION "
                f"(would be stored as {float(value)!r})"
            )
        return None
    if isinstance(value, datetime):
        if value.microsecond % 1000:
            return f"timestamp {value.isoformat()} has microseconds; CrateDB stores milliseconds"
        if base not in TIMESTAMPS and not minute_offset(value):  # a timestamp column's go
            # as epoch ms (a job's, ``jobs.coltypes.epoch_ms``) or in UTC (``utc_row``)
            return (
                f"timestamp {value.isoformat()} has a UTC offset that is not a whole number of "
                "minutes; JSON writes HH:MM (it would be stored as another instant)"
            )
        return None
    if isinstance(value, dict | list):
        return _crate_nested(value)
    if isinstance(value, PgMoment):
        if value.micros is None:
            return f"{value.kind} '{value.text}' has no CrateDB TIMESTAMP form (no infinity)"
        if value.micros % 1000:
            return f"{value.kind} {value.text} has microseconds; CrateDB stores milliseconds"
    return None


def _walk(value: Any, leaf: Callable[[Any], str | None]) -> str | None:
    """``leaf``'s reason for the first refused scalar inside dicts and lists, or None."""
    if isinstance(value, dict):
        items: Sequence[Any] = list(value.values())
    elif isinstance(value, list | tuple):
        items = value
    else:
        return leaf(value)
    for item in items:
        reason = _walk(item, leaf)
        if reason is not None:
            return reason
    return None


def _crate_nested(value: Any) -> str | None:
    return _walk(value, lambda v: _crate_scalar(v, "json"))


def _crate_value(value: Any, base: str, array: bool) -> str | None:
    if array and isinstance(value, list):
        for item in value:
            reason = None if item is None else _crate_scalar(item, base)
            if reason is not None:
                return f"array element: {reason}"
        return None
    return _crate_scalar(value, base)


NEEDS_AWARE = "timestamptz needs a timezone-aware datetime"
NEEDS_NAIVE = "timestamp (without time zone) needs a naive datetime"


def zone_refusal(value: Any, base: str) -> str | None:
    """Why a writer refuses ``value`` for a column of this base type's time zone kind, or None.

    A naive ``datetime`` for a zoned timestamp, an aware one for an unzoned timestamp; other
    values and other columns are not this check's business (None).
    """
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:
        return NEEDS_AWARE if base in ZONED else None
    return NEEDS_NAIVE if base in UNZONED else None


INTEGERS = frozenset({"smallint", "integer", "bigint", "byte"})
"""Base type names of the integer columns (``crate_column_type``'s names; ``byte``: CrateDB's)."""


def not_an_integer(value: Any) -> str:
    """A writer's reason for a value that is no ``int`` in an integer column.

    Both writers refuse a ``float`` there (``1.0`` too): the PostgreSQL writer's binary
    ``int`` encoders (``core.row_codecs``) and the CrateDB writer's intake (``writer_refusal``),
    which CrateDB would otherwise cast (``1.5`` into an ``INTEGER`` is not stored as given).
    """
    return f"expected an integer, got {type(value).__name__}"


def writer_refusal(value: Any, base: str) -> str | None:
    """Why a writer (not the mapper) refuses ``value`` for a column of this base type, or None.

    The rules the PostgreSQL writer's encoders keep (``core.row_codecs``), asked by the CrateDB
    writer's intake too: ``zone_refusal``; a ``date`` (not a ``datetime``) for a timestamp
    column, which CrateDB would store as midnight UTC (the same reason as a datetime of the
    other kind: ``NEEDS_AWARE`` / ``NEEDS_NAIVE``); a ``float`` for an integer column
    (``not_an_integer``).
    """
    if isinstance(value, datetime):
        return zone_refusal(value, base)
    if isinstance(value, date):
        if base in ZONED:
            return NEEDS_AWARE
        return NEEDS_NAIVE if base in UNZONED else None
    if isinstance(value, float) and base in INTEGERS:
        return not_an_integer(value)
    return None


def crate_refusal(value: Any, pg_type: str) -> str | None:
    """Why ``value`` of a ``pg_type`` column cannot be stored exactly in CrateDB, or None."""
    base, array = base_type(pg_type)
    return _crate_value(value, base, array)


_PLAIN = frozenset({str, bool, type(None)})
"""Value types CrateDB's JSON always carries as they are (checked without a call)."""
_PLAIN_TS = frozenset({bool, type(None)})
"""``_PLAIN`` for a timestamp column: a string is checked (``crate_timestamp_text``)."""


def _intake(value: Any, base: str, array: bool) -> str | None:
    if array and isinstance(value, list):
        for item in value:
            reason = writer_refusal(item, base)
            if reason is not None:
                return f"array element: {reason}"
        return None
    return writer_refusal(value, base)


def crate_row_check(
    names: Sequence[str], pg_types: Sequence[str], zones: bool = False
) -> Callable[[Sequence[Any]], str | None]:
    """``row_refusal`` with ``crate_refusal`` for rows of these columns, types parsed once.

    An empty ``pg_types`` decides by each value's own type; ``zones`` (the writer's intake)
    asks ``writer_refusal`` first (``zone_refusal``, a date for a timestamp, a float for an
    integer).  The check returns ``"column c: reason"`` for the first
    refused value of a row, or None.
    """
    types = pg_types or [""] * len(names)
    columns = [(n, *base_type(t)) for n, t in zip(names, types, strict=True)]
    skips = [_PLAIN_TS if base in TIMESTAMPS else _PLAIN for _, base, _ in columns]

    def check(row: Sequence[Any]) -> str | None:
        for value, (name, base, array), plain in zip(row, columns, skips, strict=False):
            if type(value) in plain:
                continue
            reason = (zones and _intake(value, base, array)) or _crate_value(value, base, array)
            if reason is not None:
                return f"column {name}: {reason}"
        return None

    return check


def _oracle_number(value: Decimal | int) -> str | None:
    number = Decimal(value)
    if not number.is_finite():
        return f"{value} has no Oracle NUMBER form"
    if number.is_zero():
        return None
    _, raw, exponent = number.as_tuple()  # not normalize(): it rounds to 28 digits
    assert isinstance(exponent, int)
    digits = "".join(map(str, raw)).rstrip("0")
    exponent += len(raw) - len(digits)
    if len(digits) > _ORACLE_DIGITS:
        return (
            f"{_short(value)} has {len(digits)} significant digits; Oracle NUMBER keeps "
            f"{_ORACLE_DIGITS}"
        )
    magnitude = len(digits) + exponent - 1
    if not _ORACLE_EXP[0] <= magnitude <= _ORACLE_EXP[1]:
        return f"{_short(value)} is outside Oracle NUMBER's range"
    return None


def oracle_refusal(value: Any, pg_type: str) -> str | None:
    """Why ``value`` of a ``pg_type`` column cannot be stored exactly in Oracle, or None."""
    base, array = base_type(pg_type)
    if value is None or array or oracle_lob(pg_type) or isinstance(value, bool):
        return None  # arrays and LOB types travel as CLOB text
    if isinstance(value, str):
        if value == "":
            return "empty string: Oracle stores '' as NULL"
        size = len(value.encode())
        if size > ORACLE_VARCHAR_BYTES:
            return f"text of {size} bytes exceeds Oracle VARCHAR2 ({ORACLE_VARCHAR_BYTES} bytes)"
        return None
    if isinstance(value, Decimal | int):
        if base in ("double precision", "real"):
            return None
        try:
            return _oracle_number(value)
        except InvalidOperation:
            return f"{_short(value)} has no Oracle NUMBER form"
    if isinstance(value, float):
        if value == 0 and math.copysign(1.0, value) < 0:  # NaN and the infinities are kept
            kind = "BINARY_FLOAT" if base == "real" else "BINARY_DOUBLE"
            return f"-0.0: Oracle {kind} stores -0 as 0"
        return None
    if isinstance(value, date) and not isinstance(value, datetime):
        return None  # a date has no time of day: Oracle DATE keeps it exactly
    if isinstance(value, PgMoment):
        if value.micros is None:
            return f"{value.kind} '{value.text}' has no Oracle form (no infinity)"
        return f"{value.kind} {value.text} is outside the years 1-9999 the Oracle driver binds"
    return None


def json_refusal(value: Any) -> str | None:
    """Why a JSON value (dicts, lists, scalars) would not be stored as given, or None.

    NaN and the infinities have no JSON form: ``orjson`` writes them as ``null``.
    """
    return _walk(value, _json_scalar)


def _json_scalar(value: Any) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value!r} has no JSON form (it would be null)"
    return None


_CRATE_AS_PG = {
    "double": "double precision",
    "float": "real",
    "long": "bigint",
    "int": "integer",
    "short": "smallint",
}


def crate_column_type(data_type: str) -> str:
    """A CrateDB ``information_schema`` type as the PostgreSQL name ``crate_refusal`` takes.

    ``double`` -> ``double precision``, ``real_array`` / ``array(real)`` -> ``real[]``;
    other names are kept (``crate_refusal`` then decides by the value's own type).
    """
    name = " ".join(data_type.strip().lower().split())
    array = False
    if name.endswith("_array"):
        name, array = name[: -len("_array")], True
    elif name.startswith("array(") and name.endswith(")"):
        name, array = name[len("array(") : -1], True
    name = _CRATE_AS_PG.get(name, name)
    return f"{name}[]" if array else name


def oracle_number_as_decimal(precision: int | None, scale: int | None) -> bool:
    """Whether an Oracle ``NUMBER(precision, scale)`` must be fetched as ``Decimal``.

    python-oracledb fetches a non-integer ``NUMBER`` as a binary float by default, which
    rounds its 38 decimal digits (``0.1`` becomes ``0.1000000000000000055...`` in a numeric
    target).  Integer columns (scale 0 with a precision) come back as exact ``int``.
    """
    return not (scale == 0 and bool(precision))


def row_refusal(
    row: Sequence[Any], names: Sequence[str], types: Sequence[str], refusal: Refusal
) -> str | None:
    """``"column c: reason"`` for the first value of ``row`` that ``refusal`` refuses, or None."""
    for value, name, pg_type in zip(row, names, types, strict=True):
        if value is None:
            continue
        reason = refusal(value, pg_type)
        if reason is not None:
            return f"column {name}: {reason}"
    return None


_LOCALE_TEXT = {"money": "lc_monetary"}
"""Source types asyncpg reads as the server's text, written per a session setting: a value
would be stored as that text (``'$1,234.50'``), and a role or database whose setting changes
makes every value a change.  ``interval`` is read with ``IntervalStyle`` fixed instead
(``core.pg_values.TEXT_SESSION_SQL``)."""


def locale_text_problem(columns: Sequence[tuple[str, str]], target: str) -> str | None:
    """One line naming the first ``money`` (or ``money[]``) column a ``target`` cannot take.

    ``columns``: the source's (name, PostgreSQL type); ``target``: ``"cratedb"`` or
    ``"oracle"`` (None for any other: a PostgreSQL target copies money as money).  asyncpg
    has no binary codec for money and hands its text in ``lc_monetary``'s format (PostgreSQL
    docs, Monetary Types: "Output is generally in the latter form but depends on the locale"),
    so it is refused rather than stored as locale text.  The cure named: cast it to numeric
    in the source query.  Into CrateDB that is a DOUBLE PRECISION column, each value refused
    unless exact: CrateDB creates no NUMERIC column ("You cannot create table columns of type
    NUMERIC", CrateDB docs, Data types, NUMERIC) and a double keeps 15-17 of money's 19
    digits.  Oracle's NUMBER (38 digits) holds every money value exactly.
    """
    if target not in ("cratedb", "oracle"):
        return None
    for name, pg_type in columns:
        base, _ = base_type(pg_type)
        setting = _LOCALE_TEXT.get(base)
        if setting is None:
            continue
        into = (
            "a CrateDB DOUBLE PRECISION column, each value refused unless exact (CrateDB "
            "creates no NUMERIC column)"
            if target == "cratedb"
            else "numbers (Oracle's NUMBER keeps every money value exactly)"
        )
        cast = "numeric[]" if pg_type.strip().endswith("[]") else "numeric"
        return (
            f"column {name!r} is {pg_type}: its values would be stored as text in the source "
            f"session's {setting} format ('$1,234.50'), not as numbers; cast it in [source] "
            f"query ({name}::{cast} AS {name}) to load it as {into}"
        )
    return None


_BOUNDED = re.compile(
    r"^(character varying|varchar|character|char|bpchar)\s*\(\s*(\d+)\s*\)$", re.IGNORECASE
)


def length_refusal(
    value: str, limit: int, padded: bool, type_text: str, server: str = "PostgreSQL"
) -> str | None:
    """Why ``server`` would store ``value`` changed in ``type_text`` (n = ``limit``), or None.

    The one rule for PostgreSQL's ``varchar(n)`` / ``character(n)`` and CrateDB's
    ``VARCHAR(n)`` / ``CHARACTER(n)``: both refuse a longer value "unless the excess characters
    are all spaces, in which case the string will be truncated" (PostgreSQL docs, Character
    Types; CrateDB docs, Data types, VARCHAR(n) and CHARACTER(n)), and a ``character(n)``
    value shorter than n is blank-padded (``padded``; PostgreSQL: "will be space-padded";
    CrateDB: "will be right padded with whitespaces").  Both are refused here, so a value is
    stored exactly or not at all; length in characters (code points), as both count them.
    """
    size = len(value)
    if size > limit:
        would = "refuse it" if value[limit:].strip(" ") else (
            f"store it cut to its first {limit} (its excess is blanks)")  # fmt: skip
        return f"text of {size} characters is longer than {type_text}; {server} would {would}"
    if padded and size < limit:
        return (
            f"text of {size} characters is shorter than {type_text}; {server} would store "
            f"it padded with blanks (pass exactly {limit} characters, or use varchar or text)"
        )
    return None


@dataclass(frozen=True, slots=True)
class TextBound:
    """A CrateDB ``VARCHAR(n)`` (``padded`` False) or ``CHARACTER(n)`` (True) column's rule."""

    limit: int
    padded: bool

    @property
    def type_text(self) -> str:
        """``the target's VARCHAR(n)`` / ``the target's CHARACTER(n)``, as a reason names it."""
        return f"the target's {'CHARACTER' if self.padded else 'VARCHAR'}({self.limit})"

    def fits(self, size: int) -> bool:
        """True when a text of ``size`` characters is stored as it is."""
        return size == self.limit if self.padded else size <= self.limit

    def refusal(self, value: str) -> str | None:
        """``length_refusal`` of ``value`` with CrateDB's words; None: stored as it is."""
        if self.fits(len(value)):
            return None
        return length_refusal(value, self.limit, self.padded, self.type_text, "CrateDB")


def text_bound(target_type: str) -> TextBound | None:
    """The rule of a ``character varying(n)`` / ``varchar(n)`` / ``character(n)`` type.

    None for any other type (``text``, an array, ``""``: not known).
    """
    m = _BOUNDED.fullmatch(target_type.strip())
    if m is None:
        return None
    return TextBound(int(m.group(2)), m.group(1).lower() in ("character", "char", "bpchar"))


def text_length_check(
    names: Sequence[str], target_types: Sequence[str]
) -> Callable[[Sequence[Any]], str | None]:
    """A row check refusing a text CrateDB would cut or pad in its VARCHAR(n) / CHAR(n) column.

    ``TextBound.refusal``: a longer text, or one shorter than a ``CHARACTER(n)``.

    ``target_types``: the target's type per column of ``names`` (``drift.crate_listed_type``;
    ``""`` or any other type: not checked).  The check returns ``"column c: reason"`` for the
    first refused value of a row, or None.
    """
    bounds = [
        (i, name, bound)
        for i, (name, t) in enumerate(zip(names, target_types, strict=False))
        if (bound := text_bound(t)) is not None
    ]

    def check(row: Sequence[Any]) -> str | None:
        for i, name, bound in bounds:
            value = row[i]
            if isinstance(value, str) and (reason := bound.refusal(value)) is not None:
                return f"column {name}: {reason}"
        return None

    return check
