"""Encoding a host's own rows for a writer: shape them, then PostgreSQL binary COPY or CrateDB JSON.

Theory of operation
-------------------
``RowShape.normalize`` turns a tuple, dict or dataclass instance into a tuple in the table's
column order (or says in one line why it cannot).  The encoders then build a batch's wire
payload row by row; a value that does not fit its column (a string for an ``int4``, a naive
datetime for a ``timestamptz``, an integer out of range, a NULL for a NOT NULL column, JSON
that does not parse) refuses **that row** with a reason and the others go on: ``Encoded``
carries the payload, the positions of the rows it holds, and the refused positions.

PostgreSQL: the binary COPY tuple format (``int16`` field count, then per field an ``int32``
length, -1 for NULL, and the value in PostgreSQL's binary send format).  The types a writer can
fill are the keys of ``PG_TYPES`` (by ``pg_type.typname``); any other column type is refused
when the writer opens.  CrateDB: one ``{"stmt": ..., "bulk_args": [...]}`` body through orjson
(datetimes as ISO 8601, UUIDs as strings); a value orjson cannot represent, or one CrateDB
would not store exactly (``core.exact.crate_refusal``, the mapper's own decision: a datetime
with microseconds, NaN or an infinity anywhere in a row), refuses its row.
"""

from __future__ import annotations

import dataclasses
import operator
import struct
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any, Final

import orjson

from async_etl.core import crate_native
from async_etl.core.compare import base_type
from async_etl.core.encoders import PG_COPY_HEADER, PG_COPY_TRAILER
from async_etl.core.exact import (
    NEEDS_AWARE,
    NEEDS_NAIVE,
    ZONED,
    crate_row_check,
    json_refusal,
    length_refusal,
    not_an_integer,
    text_bound,
    text_length_check,
    utc_row,
)
from async_etl.core.pg_fields import FAST, prefixed, row_encoder

Encoder = Callable[[Any], bytes]
"""One value -> its PostgreSQL binary send format; raises ``ValueError`` saying why not."""

_EPOCH_2000 = datetime(2000, 1, 1, tzinfo=UTC)
_DATE_2000 = date(2000, 1, 1).toordinal()
_NULL = struct.pack(">i", -1)


@dataclasses.dataclass(frozen=True, slots=True)
class Encoded:
    """A batch's payload, the positions of the rows in it, and the refused ``(position, why)``."""

    payload: bytes
    kept: tuple[int, ...]
    refused: tuple[tuple[int, str], ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class RowShape:
    """The target's columns in order; ``normalize`` fits a row to them.

    No columns (a ``null://`` writer without declared columns) takes tuples of any width.
    """

    columns: tuple[str, ...]
    _names: frozenset[str] = dataclasses.field(init=False, repr=False, compare=False)
    _pick: Callable[[Any], Any] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_names", frozenset(self.columns))
        pick = operator.itemgetter(*self.columns) if self.columns else tuple
        object.__setattr__(self, "_pick", pick)

    def normalize(self, row: Any) -> tuple[Any, ...] | str:
        """``row`` (tuple/list, dict by column name, or dataclass) as a tuple, or why it is not."""
        width = len(self.columns)
        if type(row) is tuple and len(row) == width:  # the common case, first
            return row
        if type(row) is dict and len(row) == width > 1:  # exactly the columns: one C call
            try:
                return self._pick(row)  # type: ignore[no-any-return]
            except KeyError:
                pass  # a key is not a column: said below
        if isinstance(row, tuple | list):
            if self.columns and len(row) != len(self.columns):  # no columns: any width
                return f"row has {len(row)} values for {len(self.columns)} columns"
            return tuple(row)
        if isinstance(row, Mapping):
            values = row
        elif dataclasses.is_dataclass(row) and not isinstance(row, type):
            values = {f.name: getattr(row, f.name) for f in dataclasses.fields(row)}
        else:
            return f"a row must be a tuple, dict or dataclass, got {type(row).__name__}"
        if not self._names.issuperset(values):
            unknown = [k for k in values if k not in self._names]
            return f"unknown column {unknown[0]!r}"
        return tuple(values.get(c) for c in self.columns)

    def normalize_many(self, rows: Sequence[Any]) -> list[tuple[Any, ...]] | None:
        """Every row of ``rows`` as ``normalize`` gives it, checked a column at a time.

        Takes lists of tuples, lists or dicts that all fit; returns None when any row may not
        (another kind of row, a wrong width, a missing or unknown key): ask ``normalize`` row by
        row then, for the rows and the reasons.  A list of tuples that fit is returned as it is
        (not copied: the caller owns it).
        """
        if not rows:
            return None
        kind, count, width = type(rows[0]), len(rows), len(self.columns)
        if operator.countOf(map(type, rows), kind) != count:  # counted: half the cost of a set
            return None
        if kind is tuple or kind is list:
            if width and operator.countOf(map(len, rows), width) != count:
                return None
            if kind is tuple:
                return rows if type(rows) is list else list(rows)
            return list(map(tuple, rows))
        if kind is not dict or not width or operator.countOf(map(len, rows), width) != count:
            return None
        try:  # width keys, each column among them: exactly the columns
            picked = list(map(self._pick, rows))
        except KeyError:
            return None
        return picked if width > 1 else [(v,) for v in picked]


def _int(low: int, high: int, fmt: str) -> Encoder:
    def enc(v: Any) -> bytes:
        if not isinstance(v, int) or isinstance(v, bool):
            raise ValueError(not_an_integer(v))
        if not low <= v <= high:
            raise ValueError(f"{v} is out of range")
        return struct.pack(fmt, v)

    return enc


def _short(value: Any, limit: int = 40) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _float(fmt: str) -> Encoder:

    def enc(v: Any) -> bytes:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError(f"expected a number, got {type(v).__name__}")
        try:
            data = struct.pack(fmt, float(v))
        except (OverflowError, struct.error):  # float(10**400) overflows before packing
            raise ValueError(f"{_short(v)} is out of range") from None
        stored = struct.unpack(fmt, data)[0]
        if isinstance(v, int) and stored != v:
            raise ValueError(f"{_short(v)} has no exact float value")
        if stored == 0 and v != 0:  # PostgreSQL's own input refuses an underflow too
            raise ValueError(f"{_short(v)} is out of range (underflow)")
        return data

    return enc


def _bool(v: Any) -> bytes:
    if not isinstance(v, bool):
        raise ValueError(f"expected a bool, got {type(v).__name__}")
    return b"\x01" if v else b"\x00"


def _text(v: Any) -> bytes:
    if not isinstance(v, str):
        raise ValueError(f"expected a str, got {type(v).__name__}")
    if "\x00" in v:
        raise ValueError("text cannot hold a NUL character")
    return v.encode()


def _bytea(v: Any) -> bytes:
    if not isinstance(v, bytes | bytearray | memoryview):
        raise ValueError(f"expected bytes, got {type(v).__name__}")
    return bytes(v)


def _json(v: Any) -> bytes:
    if isinstance(v, str):  # JSON text, as asyncpg reads it (orjson refuses NaN in text)
        try:
            orjson.loads(v)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc}") from None
        return _text(v)
    reason = json_refusal(v)
    if reason is not None:
        raise ValueError(reason)
    try:
        return orjson.dumps(v)
    except TypeError as exc:
        raise ValueError(str(exc)) from None


def _jsonb(v: Any) -> bytes:
    return b"\x01" + _json(v)


def _timestamptz(v: Any) -> bytes:
    if not isinstance(v, datetime) or v.tzinfo is None:
        raise ValueError(NEEDS_AWARE)
    d = v - _EPOCH_2000
    return struct.pack(">q", (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds)


def _timestamp(v: Any) -> bytes:
    if not isinstance(v, datetime) or v.tzinfo is not None:
        raise ValueError(NEEDS_NAIVE)
    return _timestamptz(v.replace(tzinfo=UTC))


def _date(v: Any) -> bytes:
    if not isinstance(v, date) or isinstance(v, datetime):
        raise ValueError(f"expected a date, got {type(v).__name__}")
    return struct.pack(">i", v.toordinal() - _DATE_2000)


def _time(v: Any) -> bytes:
    if not isinstance(v, time) or v.tzinfo is not None:
        raise ValueError("time needs a naive datetime.time")
    seconds = v.hour * 3600 + v.minute * 60 + v.second
    return struct.pack(">q", seconds * 1_000_000 + v.microsecond)


def _uuid(v: Any) -> bytes:
    if isinstance(v, uuid.UUID):
        return v.bytes
    if isinstance(v, str):
        try:
            return uuid.UUID(v).bytes
        except ValueError:
            raise ValueError(f"not a UUID: {v[:40]!r}") from None
    raise ValueError(f"expected a UUID, got {type(v).__name__}")


def _numeric(v: Any) -> bytes:
    if isinstance(v, int) and not isinstance(v, bool):
        v = Decimal(v)
    if not isinstance(v, Decimal):
        raise ValueError(f"expected a Decimal or int, got {type(v).__name__}")
    if v.is_snan():  # is_nan() says True for it too
        raise ValueError(f"{v} is a signalling NaN, not NaN; numeric has no such value")
    if v.is_nan():
        return struct.pack(">hhHh", 0, 0, 0xC000, 0)
    if v.is_infinite():
        raise ValueError("numeric cannot hold infinity")
    sign, digits, exp = v.as_tuple()
    assert isinstance(exp, int)
    text = "".join(map(str, digits))
    scale = max(0, -exp)
    if exp > 0:
        text += "0" * exp
    text = text.zfill(scale)  # 0.001: digits "1", scale 3 -> fraction "001"
    whole, frac = (text[:-scale], text[-scale:]) if scale else (text, "")
    whole = whole.zfill(-(-len(whole) // 4) * 4) if whole else ""
    frac = frac.ljust(-(-len(frac) // 4) * 4, "0")
    groups = [int((whole + frac)[i : i + 4]) for i in range(0, len(whole) + len(frac), 4)]
    weight = len(whole) // 4 - 1
    while groups and groups[0] == 0:
        groups.pop(0)
        weight -= 1
    while groups and groups[-1] == 0:
        groups.pop()
    if not groups:
        weight = 0
    head = struct.pack(">hhHh", len(groups), weight, 0x4000 if sign else 0, scale)
    return head + struct.pack(f">{len(groups)}H", *groups)


PG_TYPES: Final[Mapping[str, Encoder]] = {
    "bool": _bool,
    "int2": _int(-(2**15), 2**15 - 1, ">h"),
    "int4": _int(-(2**31), 2**31 - 1, ">i"),
    "int8": _int(-(2**63), 2**63 - 1, ">q"),
    "float4": _float(">f"),
    "float8": _float(">d"),
    "numeric": _numeric,
    "text": _text,
    "varchar": _text,
    "bpchar": _text,
    "name": _text,
    "citext": _text,
    "bytea": _bytea,
    "json": _json,
    "jsonb": _jsonb,
    "timestamptz": _timestamptz,
    "timestamp": _timestamp,
    "date": _date,
    "time": _time,
    "uuid": _uuid,
}
"""The PostgreSQL column types (``pg_type.typname``) a writer encodes, and how."""


@dataclasses.dataclass(frozen=True, slots=True)
class PgColumn:
    """One target column: its name, ``typname``, whether it takes NULL, and its ``atttypmod``.

    ``typmod`` -1 means none; ``numeric(p,s)``, ``timestamp(p)``, ``time(p)``, ``varchar(n)``
    and ``character(n)`` (``bpchar``) have one.  ``defaulted``: the column has a DEFAULT or is
    an identity (said when a NULL is refused: the writer's COPY names the column, so its
    default does not apply).
    """

    name: str
    typname: str
    nullable: bool = True
    typmod: int = -1
    defaulted: bool = False

    @property
    def type_text(self) -> str:
        """The type as messages name it (``numeric(10,2)``, ``timestamptz(0)``, ``text``)."""
        bounds = _bounds(self)
        if bounds is None:
            return self.typname
        name = "character" if self.typname == "bpchar" else self.typname
        return f"{name}({','.join(map(str, bounds))})"


_PRECISION_TYPES = frozenset({"timestamp", "timestamptz", "time"})
_LENGTH_TYPES = frozenset({"varchar", "bpchar"})
"""The text types whose ``typmod`` is a length in characters plus 4 (``VARHDRSZ``)."""


def text_length(col: PgColumn) -> int | None:
    """The n of a ``varchar(n)`` or ``character(n)`` column; None for any other column."""
    if col.typname in _LENGTH_TYPES and col.typmod >= 4:
        return col.typmod - 4
    return None


def bounded(col: PgColumn) -> bool:
    """True when ``col``'s ``typmod`` bounds what it keeps (``numeric(p,s)``, ``timestamp(p)``)."""
    return _bounds(col) is not None


def _bounds(col: PgColumn) -> tuple[int, ...] | None:
    """``(precision, scale)`` of a ``numeric``, ``(precision,)`` of a timestamp; else None."""
    if col.typmod < 0:
        return None
    if col.typname == "numeric":
        mod = col.typmod - 4
        return (mod >> 16) & 0xFFFF, ((mod & 0x7FF) ^ 1024) - 1024  # the scale may be negative
    if col.typname in _PRECISION_TYPES:
        return (col.typmod,)
    if col.typname in _LENGTH_TYPES:
        return (col.typmod - 4,)
    return None


def _bounded_numeric(precision: int, scale: int) -> Encoder:
    """``_numeric`` refusing what ``numeric(precision, scale)`` would round or overflow."""

    def enc(v: Any) -> bytes:
        data = _numeric(v)
        number = Decimal(v) if isinstance(v, int) else v
        if number.is_nan() or number.is_zero():
            return data
        _, digits, exp = number.as_tuple()
        assert isinstance(exp, int)
        zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
        if exp + zeros < -scale:
            raise ValueError(
                f"{_short(v)} has more than {scale} decimal places; "
                f"numeric({precision},{scale}) would round it"
            )
        if len(digits) + exp > precision - scale:
            raise ValueError(f"{_short(v)} does not fit numeric({precision},{scale})")
        return data

    return enc


def _bounded_text(encode: Encoder, col: PgColumn, limit: int) -> Encoder:
    """A ``varchar(n)`` / ``character(n)`` encoder refusing what PostgreSQL would cut or pad."""
    padded, type_text = col.typname == "bpchar", col.type_text

    def enc(v: Any) -> bytes:
        data = encode(v)
        reason = length_refusal(v, limit, padded, type_text)
        if reason is not None:
            raise ValueError(reason)
        return data

    return enc


def _bounded_moment(encode: Encoder, precision: int, typname: str) -> Encoder:
    """A timestamp / time encoder refusing fractions ``typname(precision)`` would round."""
    step = 10 ** (6 - min(precision, 6))

    def enc(v: Any) -> bytes:
        data = encode(v)
        if v.microsecond % step:
            raise ValueError(
                f"{v.isoformat()} has a finer fraction of a second than {typname}({precision}) "
                "keeps (it would be rounded)"
            )
        return data

    return enc


def column_encoder(col: PgColumn) -> Encoder:
    """The reference encoder of ``col`` (its ``typmod`` bounds included).

    Raises ``KeyError`` for a column type outside ``PG_TYPES``.
    """
    encode = PG_TYPES[col.typname]
    bounds = _bounds(col)
    if bounds is None:
        return encode
    if col.typname == "numeric":
        return _bounded_numeric(*bounds)
    if col.typname in _LENGTH_TYPES:
        return _bounded_text(encode, col, bounds[0])
    return _bounded_moment(encode, bounds[0], col.typname)


_NOT_NULL: Final = "NULL in a NOT NULL column"
_DEFAULT_SKIPPED: Final = (
    " (a missing key is NULL: the column's DEFAULT applies only when columns= leaves the "
    "column out)"
)


def _reference_row(
    columns: Sequence[PgColumn], row: tuple[Any, ...], encoders: Sequence[Encoder] = ()
) -> bytes:
    """The COPY tuple of ``row`` by the reference encoders; ``ValueError`` names the column.

    Any failure of an encoder (an ``OverflowError`` or ``TypeError`` too) is that reason.
    """
    encoders = encoders or [column_encoder(c) for c in columns]
    fields = [struct.pack(">h", len(columns))]
    for col, encode, value in zip(columns, encoders, row, strict=True):
        try:
            if value is None:
                if not col.nullable:
                    raise ValueError(_NOT_NULL + (_DEFAULT_SKIPPED if col.defaulted else ""))
                fields.append(_NULL)
                continue
            data = encode(value)
        except ValueError as exc:
            raise ValueError(f"column {col.name!r} ({col.type_text}): {exc}") from None
        except (TypeError, ArithmeticError) as exc:
            raise ValueError(
                f"column {col.name!r} ({col.type_text}): {type(exc).__name__}: {exc}"
            ) from None
        fields.append(struct.pack(">i", len(data)))
        fields.append(data)
    return b"".join(fields)


def pg_row_encoder(columns: Sequence[PgColumn]) -> Callable[[tuple[Any, ...]], bytes]:
    """The fast encoder of one row for ``columns`` (raises on anything unusual).

    A column with ``typmod`` bounds takes its reference encoder (the fast paths check no
    bounds).  Raises ``KeyError`` for a column type outside ``PG_TYPES`` (check when opening).
    """
    fields = [
        (FAST.get(c.typname) if _bounds(c) is None else None) or prefixed(column_encoder(c))
        for c in columns
    ]
    return row_encoder(fields, [c.nullable for c in columns])


PAUSE_EVERY = 200
"""Rows between two ``pause`` calls while encoding (a fraction of a millisecond of work)."""


def encode_pg_rows(
    columns: Sequence[PgColumn],
    rows: Sequence[tuple[Any, ...]],
    fast: Callable[[tuple[Any, ...]], bytes] | None = None,
    pause: Callable[[], None] | None = None,
) -> Encoded:
    """Binary COPY payload of ``rows`` (header, tuples, trailer); refused rows are left out.

    ``fast`` is ``pg_row_encoder(columns)`` (built here when not given); a row it balks at is
    encoded, or refused with the column and reason, by the reference encoders.  ``pause`` is
    called every ``PAUSE_EVERY`` rows (a thread passes one that lets the GIL go).  Raises
    ``KeyError`` for a column type outside ``PG_TYPES`` (check when opening).
    """
    fast = fast or pg_row_encoder(columns)
    encoders: list[Encoder] = []
    parts = [PG_COPY_HEADER]
    kept: list[int] = []
    refused: list[tuple[int, str]] = []
    for pos, row in enumerate(rows):
        if pause is not None and pos % PAUSE_EVERY == PAUSE_EVERY - 1:
            pause()
        try:
            parts.append(fast(row))
        except Exception:
            encoders = encoders or [column_encoder(c) for c in columns]
            try:
                parts.append(_reference_row(columns, row, encoders))
            except ValueError as exc:
                refused.append((pos, str(exc)))
                continue
        kept.append(pos)
    parts.append(PG_COPY_TRAILER)
    return Encoded(b"".join(parts), tuple(kept), tuple(refused))


def _crate_default(value: Any) -> Any:
    """A value orjson has no form for, as it travels to CrateDB; raises ``TypeError`` otherwise.

    A finite ``Decimal`` travels as its float, as a job's ``numeric`` does (``jobs.coltypes``):
    called only for rows ``core.exact.crate_refusal`` passed, which refuses a Decimal that is
    not exactly a double.
    """
    if isinstance(value, Decimal) and value.is_finite():
        return float(value)
    raise TypeError(f"{type(value).__name__} has no CrateDB JSON form")


RowCheck = Callable[[Sequence[Any]], "str | None"]
"""Why a row would not be stored exactly (``core.exact.crate_row_check``), or None."""


def _crate_refusal(row: tuple[Any, ...], check: RowCheck, names: Sequence[str]) -> str | None:
    """Why ``row`` cannot go in a bulk body, naming the column (``"column c: reason"``)."""
    reason = check(row)
    if reason is not None:
        return reason
    try:
        orjson.dumps(row, default=_crate_default)
    except TypeError as exc:  # orjson.JSONEncodeError: a str with a lone surrogate, bytes, ...
        for name, value in zip(names, row, strict=False):
            try:
                orjson.dumps(value, default=_crate_default)
            except TypeError as one:
                return f"column {name}: {one}"
        return str(exc)
    return None


def _either(first: RowCheck, then: RowCheck) -> RowCheck:
    """A row check answering ``first``'s reason, else ``then``'s."""

    def check(row: Sequence[Any]) -> str | None:
        return first(row) or then(row)

    return check


def encode_crate_rows(
    stmt: str,
    rows: Sequence[tuple[Any, ...]],
    names: Sequence[str] = (),
    types: Sequence[str] = (),
) -> Encoded:
    """The ``/_sql`` bulk body for ``stmt`` with ``rows``; rows JSON cannot carry are refused.

    ``names`` / ``types`` are the table's columns and their types as PostgreSQL names them
    (``core.exact.crate_column_type``): a row holding a value ``core.exact.crate_refusal``
    refuses, or a text CrateDB would cut or pad in its ``character varying(n)`` /
    ``character(n)`` column (``core.exact.text_length_check``), is left out with
    ``"column c: reason"`` (unnamed columns are ``#1``, ``#2``, ...).  An aware datetime
    whose UTC offset is not whole minutes (which JSON would write rounded or cut:
    ``core.exact.minute_offset``) is sent as its instant in UTC in a timestamp with time zone
    column (or array; ``core.exact.utc_row``) and refuses its row anywhere else.  A ``date``
    in a timestamp column and a ``float`` in an integer column refuse their row too, as the
    PostgreSQL writer's encoders refuse them (``core.exact.writer_refusal``).
    """
    width = len(rows[0]) if rows else 0
    names = names or [f"#{i + 1}" for i in range(width)]
    bases = [base_type(t)[0] for t in types]
    lengths = [text_bound(t) for t in types]
    check = crate_row_check(names, types, zones=True)
    if any(n is not None for n in lengths):
        check = _either(check, text_length_check(names, types))
    refused: list[tuple[int, str]] = []
    if not crate_native.plain(rows, bases, lengths):
        zoned = [i for i, base in enumerate(bases) if base in ZONED]
        if zoned:
            rows = [utc_row(row, zoned) for row in rows]
        refused = [(pos, why) for pos, row in enumerate(rows) if (why := check(row))]
    try:
        if not refused:
            body = orjson.dumps({"stmt": stmt, "bulk_args": rows}, default=_crate_default)
            return Encoded(body, tuple(range(len(rows))))
    except TypeError:
        pass
    refused = [
        (pos, why) for pos, row in enumerate(rows) if (why := _crate_refusal(row, check, names))
    ]
    bad = {pos for pos, _ in refused}
    kept = tuple(pos for pos in range(len(rows)) if pos not in bad)
    kept_rows = [rows[pos] for pos in kept]
    body = orjson.dumps({"stmt": stmt, "bulk_args": kept_rows}, default=_crate_default)
    return Encoded(body, kept, tuple(refused))
