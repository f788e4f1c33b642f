"""PostgreSQL values read exactly for a Python-side target (CrateDB, Oracle).

Theory of operation
-------------------
asyncpg's default decoding changes some values without a word, and fails on others:

* ``interval`` becomes a ``timedelta``, where a month is 30 days (``'1 mon'`` and
  ``'30 days'`` read alike, so a change between them is lost);
* ``bit`` / ``varbit`` become a ``BitString`` whose ``str()`` is a Python repr;
* ``date`` / ``timestamp`` / ``timestamptz`` ``'infinity'`` become ``date.max`` /
  ``datetime.max`` (a real 9999-12-31), and a BC date or a year past 9999 raises
  ``ValueError`` / ``OverflowError`` for the whole read;
* ``time`` / ``timetz`` ``'24:00:00'`` (a valid PostgreSQL time, the end of a day) raises
  ``ValueError`` for the whole read: ``datetime.time`` stops at 23:59:59.999999.

A Python-side target reads the source with the codecs here instead (installed by
``drivers.postgres.use_exact_codecs``): ``interval`` and bit strings as PostgreSQL's own
text (an interval's under ``IntervalStyle`` ``postgres``: ``TEXT_SESSION_SQL``), and dates
and timestamps from their binary form (days or microseconds since 2000-01-01), as ``date`` /
``datetime`` when Python can hold them and as a ``PgMoment`` otherwise (an infinity, a BC
date, a year past 9999); times as ``datetime.time``, and 24:00:00 as the text ``str()`` of
such a time would have (``'24:00:00'``, ``'24:00:00+05:30'``), which is how every other time
reaches a text column.  The encoders are exact too: a chunk cut of 9999-12-31 (read with
asyncpg's codecs, as ``date.max``) is bound as 9999-12-31, as a CrateDB or Oracle target binds
it, so both split the keys alike (asyncpg would send ``infinity``); cursor bounds go as text
(``core.incremental``).  ``core.exact`` then decides what each target stores: CrateDB keeps a
finite ``PgMoment`` exactly as epoch milliseconds, no target stores an infinity.  The encoders
accept what the default ones do (``date`` / ``datetime`` / ``time``) plus ``PgMoment`` and the
24:00 texts.  Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any, Final

__all__ = [
    "TEXT_SESSION_SQL",
    "TEXT_TYPES",
    "TUPLE_CODECS",
    "PgMoment",
    "range_text",
]

TEXT_TYPES: Final = ("interval", "bit", "varbit")
"""``pg_catalog`` types read as PostgreSQL's own text form."""

TEXT_SESSION_SQL: Final = "SET intervalstyle = 'postgres'"
"""The session setting those texts are read under, whatever the role or database sets.

An ``interval``'s text follows the session's ``IntervalStyle`` (``'1 mon'`` is ``P1M`` under
``iso_8601``, ``0-1`` under ``sql_standard``): a source whose style changed between two runs
would read every interval as changed, and a type-2 job into CrateDB would write a new version
of every row.  ``postgres`` is the server's default, and what ``pg_dump`` sets for the same
reason (``setup_connection`` in ``src/bin/pg_dump/pg_dump.c``).  It also decides how an
interval literal in ``[source] query`` with a leading ``-`` and unsigned fields reads
(``'-1 2:00'``: PostgreSQL's documentation, "Interval Input")."""

_EPOCH_2000 = datetime(2000, 1, 1)
_EPOCH_2000_UTC = datetime(2000, 1, 1, tzinfo=UTC)
_fromordinal = date.fromordinal
_timedelta = timedelta
_DAYS_1970_2000 = 10_957
_MICROS_1970_2000 = _DAYS_1970_2000 * 86_400_000_000
_DATE_INF = (2**31 - 1, -(2**31))
_TS_INF = (2**63 - 1, -(2**63))
_ORDINAL_2000 = date(2000, 1, 1).toordinal()


@dataclasses.dataclass(frozen=True, slots=True)
class PgMoment:
    """A PostgreSQL date or timestamp Python cannot hold: an infinity, BC, or past 9999.

    ``kind`` is ``date``, ``timestamp`` or ``timestamptz``; ``micros`` the microseconds
    since 1970-01-01 UTC (None for an infinity); ``text`` its PostgreSQL text form (UTC).
    """

    kind: str
    micros: int | None
    text: str

    def __str__(self) -> str:
        return self.text


def _civil(days: int) -> tuple[int, int, int]:
    """(year, month, day) of ``days`` since 1970-01-01, proleptic Gregorian (any year)."""
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day


def _date_text(days: int) -> str:
    year, month, day = _civil(days)
    if year <= 0:
        return f"{1 - year:04d}-{month:02d}-{day:02d} BC"
    return f"{year:04d}-{month:02d}-{day:02d}"


def _moment_text(micros: int, kind: str) -> str:
    days, rest = divmod(micros, 86_400_000_000)
    seconds, fraction = divmod(rest, 1_000_000)
    clock = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    if fraction:
        clock += f".{fraction:06d}".rstrip("0")
    if kind == "timestamptz":
        clock += "+00"
    text = _date_text(days)
    if text.endswith(" BC"):
        return f"{text[:-3]} {clock} BC"
    return f"{text} {clock}"


def decode_date(raw: tuple[int]) -> date | PgMoment:
    """A ``date`` from its binary form (days since 2000-01-01), or a ``PgMoment``."""
    try:  # the common case first: one call (an infinity is out of range too)
        return _fromordinal(raw[0] + _ORDINAL_2000)
    except (ValueError, OverflowError):
        days = raw[0]
    if days in _DATE_INF:
        return PgMoment("date", None, "infinity" if days > 0 else "-infinity")
    days += _DAYS_1970_2000
    return PgMoment("date", days * 86_400_000_000, _date_text(days))


def _moment(micros: int, kind: str) -> PgMoment:
    """The ``PgMoment`` of a timestamp Python cannot hold (microseconds since 2000-01-01)."""
    if micros in _TS_INF:
        return PgMoment(kind, None, "infinity" if micros > 0 else "-infinity")
    since_1970 = micros + _MICROS_1970_2000
    return PgMoment(kind, since_1970, _moment_text(since_1970, kind))


def decode_timestamp(raw: tuple[int]) -> datetime | PgMoment:
    """A naive ``datetime`` from microseconds since 2000-01-01, or a ``PgMoment``."""
    try:
        return _EPOCH_2000 + _timedelta(0, 0, raw[0])
    except OverflowError:
        return _moment(raw[0], "timestamp")


def decode_timestamptz(raw: tuple[int]) -> datetime | PgMoment:
    """A UTC ``datetime`` from microseconds since 2000-01-01 UTC, or a ``PgMoment``."""
    try:
        return _EPOCH_2000_UTC + _timedelta(0, 0, raw[0])
    except OverflowError:
        return _moment(raw[0], "timestamptz")


def _raw_infinity(value: PgMoment, bounds: tuple[int, int]) -> tuple[int]:
    return (bounds[0] if value.text == "infinity" else bounds[1],)


def encode_date(value: Any) -> tuple[int]:
    """The binary form of a ``date`` or a date ``PgMoment`` (``TypeError`` otherwise)."""
    if isinstance(value, PgMoment):
        if value.micros is None:
            return _raw_infinity(value, _DATE_INF)
        return (value.micros // 86_400_000_000 - _DAYS_1970_2000,)
    if isinstance(value, datetime):
        value = value.date()
    if not isinstance(value, date):
        raise TypeError(f"expected a date, got {type(value).__name__}")
    return (value.toordinal() - _ORDINAL_2000,)


def _encode_moment(value: Any, aware: bool) -> tuple[int]:
    if isinstance(value, PgMoment):
        if value.micros is None:
            return _raw_infinity(value, _TS_INF)
        return (value.micros - _MICROS_1970_2000,)
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}")
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None) if aware else value.replace(tzinfo=None)
    d = value - _EPOCH_2000
    return ((d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds,)


def encode_timestamp(value: Any) -> tuple[int]:
    """The binary form of a naive ``datetime`` (or a ``PgMoment``)."""
    return _encode_moment(value, aware=False)


def encode_timestamptz(value: Any) -> tuple[int]:
    """The binary form of a ``datetime`` (naive = UTC) or a ``PgMoment``."""
    return _encode_moment(value, aware=True)


_DAY_MICROS = 86_400_000_000
_MIDNIGHT_END = "24:00:00"


def _clock(micros: int, tz: timezone | None) -> time | str:
    if micros >= _DAY_MICROS:  # 24:00:00, the only time past 23:59:59.999999
        return _MIDNIGHT_END + time(0, tzinfo=tz).isoformat()[8:]
    seconds, fraction = divmod(micros, 1_000_000)
    return time(seconds // 3600, seconds // 60 % 60, seconds % 60, fraction, tz)


def decode_time(raw: tuple[int]) -> time | str:
    """A naive ``time`` from microseconds since midnight; ``'24:00:00'`` for 24:00."""
    return _clock(raw[0], None)


def decode_timetz(raw: tuple[int, int]) -> time | str:
    """An aware ``time`` from (microseconds, seconds west of UTC); 24:00 as its text.

    24:00:00 at +05:30 is ``'24:00:00+05:30'``, the ``str()`` of other aware times.
    """
    return _clock(raw[0], timezone(timedelta(seconds=-raw[1])))


def _clock_micros(value: time) -> int:
    return ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000 + value.microsecond


def encode_time(value: Any) -> tuple[int]:
    """The binary form of a naive ``time`` or of ``'24:00:00'`` (``TypeError`` otherwise)."""
    if value == _MIDNIGHT_END:
        return (_DAY_MICROS,)
    if not isinstance(value, time):
        raise TypeError(f"expected a time, got {type(value).__name__}")
    return (_clock_micros(value),)


def encode_timetz(value: Any) -> tuple[int, int]:
    """The binary form of a ``time`` (naive = UTC) or of ``decode_timetz``'s 24:00 text."""
    if isinstance(value, str) and value.startswith(_MIDNIGHT_END):
        end = time.fromisoformat("00" + value[2:])
        return (_DAY_MICROS, -int((end.utcoffset() or timedelta(0)).total_seconds()))
    if not isinstance(value, time):
        raise TypeError(f"expected a time, got {type(value).__name__}")
    offset = value.utcoffset() or timedelta(0)
    return (_clock_micros(value), -int(offset.total_seconds()))


Codec = tuple[Callable[[Any], Any], Callable[[Any], Any]]

TUPLE_CODECS: Final[dict[str, Codec]] = {
    "date": (encode_date, decode_date),
    "timestamp": (encode_timestamp, decode_timestamp),
    "timestamptz": (encode_timestamptz, decode_timestamptz),
    "time": (encode_time, decode_time),
    "timetz": (encode_timetz, decode_timetz),
}
"""``pg_catalog`` type -> (encoder, decoder) over asyncpg's ``tuple`` format."""


def _bound_text(value: Any) -> str:
    if isinstance(value, datetime):
        text = value.isoformat(sep=" ")
        if value.tzinfo is not None and text.endswith("+00:00"):
            text = text[:-6] + "+00"
        return f'"{text}"'
    return str(value)


def range_text(value: Any) -> str:
    """PostgreSQL's text form of an asyncpg ``Range`` (``[1,5)``, ``(,3]``, ``empty``)."""
    if value.isempty:
        return "empty"
    lower = "" if value.lower_inf or value.lower is None else _bound_text(value.lower)
    upper = "" if value.upper_inf or value.upper is None else _bound_text(value.upper)
    left = "[" if value.lower_inc and lower else "("  # an infinite bound is never inclusive
    right = "]" if value.upper_inc and upper else ")"
    return f"{left}{lower},{upper}{right}"
