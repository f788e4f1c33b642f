"""Column types across dialects, and source values in the form each target stores them.

Sources describe their columns with PostgreSQL type names (``bigint``, ``numeric(12,2)``,
``character varying(20)``, ``timestamp with time zone``); the Oracle source maps its own types
to these first (``sources.oracle.pg_type_of_oracle``).  This module maps them on to CrateDB
and Oracle DDL types, and gives the function that turns a source value into what the target
hands back when read (CrateDB: timestamps and dates as epoch milliseconds, numerics as
doubles), so that the SCD comparison of source and target values is exact.  Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import orjson

from async_etl.core.compare import base_type, oracle_lob
from async_etl.core.exact import crate_sent
from async_etl.core.pg_values import PgMoment, range_text

__all__ = [
    "crate_type",
    "crate_value",
    "epoch_ms",
    "from_epoch_ms",
    "oracle_type",
]

Convert = Callable[[Any], Any]

_BASE = re.compile(r"^([a-z ]+?)\s*(\(.*\))?(\[\])?$")
_STAMP = re.compile(r"timestamp\s*\(\s*(\d)\s*\) (with|without) time zone")
"""``format_type``'s ``timestamp(p)``: the precision sits inside the name."""

_CRATE = {
    "bigint": "BIGINT",
    "integer": "INTEGER",
    "smallint": "SMALLINT",
    "text": "TEXT",
    "character varying": "TEXT",
    "character": "TEXT",
    "boolean": "BOOLEAN",
    "double precision": "DOUBLE PRECISION",
    "real": "REAL",
    "numeric": "DOUBLE PRECISION",
    "timestamp with time zone": "TIMESTAMP WITH TIME ZONE",
    "timestamp without time zone": "TIMESTAMP WITHOUT TIME ZONE",
    "date": "TIMESTAMP WITH TIME ZONE",
    "uuid": "TEXT",
}

_ORACLE = {
    "bigint": "NUMBER(19)",
    "integer": "NUMBER(10)",
    "smallint": "NUMBER(5)",
    "text": "VARCHAR2(4000)",
    "character varying": "VARCHAR2(4000)",
    "character": "CHAR(1)",
    "boolean": "NUMBER(1)",
    "double precision": "BINARY_DOUBLE",
    "real": "BINARY_FLOAT",
    "numeric": "NUMBER",
    "timestamp with time zone": "TIMESTAMP WITH TIME ZONE",
    "timestamp without time zone": "TIMESTAMP",
    "date": "DATE",
    "uuid": "VARCHAR2(36)",
}


def _split(pg_type: str) -> tuple[str, str, bool]:
    match = _BASE.fullmatch(pg_type.strip().lower())
    if match is None:
        return pg_type.strip().lower(), "", False
    return match.group(1), match.group(2) or "", bool(match.group(3))


def crate_type(pg_type: str) -> str:
    """The CrateDB column type for a PostgreSQL type name (unknown types become TEXT).

    Values of types CrateDB has no type for (json, xml, geometric, composite) are stored
    as text: geometric ones in PostgreSQL's text form, composites as a JSON object's text.
    """
    base, array = base_type(pg_type)
    inner = _CRATE.get(base, "TEXT")
    return f"ARRAY({inner})" if array else inner


def oracle_type(pg_type: str) -> str:
    """The Oracle column type for a PostgreSQL type name (length and precision kept).

    json, jsonb, xml and arrays become ``CLOB`` (any length; compared with
    ``DBMS_LOB.COMPARE`` by the merge).
    """
    base, mods, _ = _split(pg_type)
    if oracle_lob(pg_type):
        return "CLOB"
    if base in ("character varying", "character") and mods:
        return f"{'VARCHAR2' if base == 'character varying' else 'CHAR'}{mods[:-1]} CHAR)"
    if base == "numeric" and mods:
        return f"NUMBER{mods}"
    stamp = _STAMP.fullmatch(" ".join(pg_type.strip().lower().split()))
    if stamp is not None:  # TIMESTAMP(p) p < 6 as core.drift.oracle_column_type reads it back
        kind = _ORACLE[f"timestamp {stamp.group(2)} time zone"]
        digits = int(stamp.group(1))
        return kind.replace("TIMESTAMP", f"TIMESTAMP({digits})", 1) if digits < 6 else kind
    return _ORACLE.get(base, "VARCHAR2(4000)")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_ms(value: datetime | date) -> int:
    """Epoch milliseconds of a datetime (naive = UTC) or a date (midnight UTC)."""
    if not isinstance(value, datetime):
        value = datetime.combine(value, time(), tzinfo=UTC)
    elif value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def from_epoch_ms(value: int | float) -> datetime:
    """The UTC datetime of epoch milliseconds (exact: no float division of large values)."""
    return _EPOCH + timedelta(milliseconds=value)


def _num(x: float) -> str:
    text = repr(float(x))
    return text[:-2] if text.endswith(".0") else text


def _point(p: Sequence[float]) -> str:
    return f"({_num(p[0])},{_num(p[1])})"


def _geometric(value: Any) -> str | None:
    """PostgreSQL's text form of an asyncpg geometric value (None when it is not one).

    ``str()`` of an asyncpg ``Path`` or ``Polygon`` names its memory address, so it would
    differ on every read and every run would see a change.
    """
    kind = type(value).__name__ if type(value).__module__.startswith("asyncpg") else ""
    if kind == "Point":
        return _point(value)
    if kind == "Box":
        return f"{_point(value[0])},{_point(value[1])}"
    if kind == "LineSegment":
        return f"[{_point(value[0])},{_point(value[1])}]"
    if kind == "Line":
        return "{" + ",".join(_num(v) for v in value) + "}"
    if kind == "Circle":
        return f"<{_point(value[0])},{_num(value[1])}>"
    if kind in ("Path", "Polygon"):
        points = ",".join(_point(p) for p in value.points)
        return f"({points})" if kind == "Polygon" or value.is_closed else f"[{points}]"
    return None


def _hstore_text(value: dict[Any, Any]) -> str:
    """PostgreSQL's text form of an ``hstore`` (asyncpg reads it as a dict)."""

    def quoted(text: Any) -> str:
        return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'

    return ", ".join(f"{quoted(k)}=>{'NULL' if v is None else quoted(v)}" for k, v in value.items())


def _to_crate(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return epoch_ms(value)
    if isinstance(value, PgMoment):  # an infinity keeps its text: refused, never sent
        return value.text if value.micros is None else value.micros // 1000
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, list):
        return [_to_crate(v) for v in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if (text := _geometric(value)) is not None:
        return text
    if isinstance(value, dict):
        return _hstore_text(value)
    if type(value).__name__ == "Range":
        return range_text(value)
    if type(value).__name__ == "Record":  # a composite: its fields as a JSON object's text
        return orjson.dumps({k: _to_crate(v) for k, v in value.items()}).decode()
    return str(value)


def _int_text(value: Any, sent: Any) -> Any:
    """``sent`` (``value`` as converted), an int value as the text CrateDB stores (``'5'``).

    A type CrateDB has no type for (``oid``, ``oid[]``) is a TEXT column there, which reads
    back ``'5'``: compared as the int, every run saw a change.
    """
    if isinstance(value, list) and isinstance(sent, list):
        return [_int_text(v, s) for v, s in zip(value, sent, strict=True)]
    return str(value) if type(value) is int else sent


def crate_value(pg_types: Sequence[str]) -> Callable[[Sequence[Any]], list[Any]]:
    """A function turning one source row (tuple) into CrateDB's stored form of each value.

    ``real`` values become their float32's shortest decimal form (``core.exact.crate_sent``),
    which is what CrateDB hands back when the row is read for comparison.
    """
    types = list(pg_types)
    reals = [i for i, t in enumerate(types) if base_type(t)[0] == "real"]
    texts = [i for i, t in enumerate(types) if _CRATE.get(base_type(t)[0], "TEXT") == "TEXT"]

    def convert(row: Sequence[Any]) -> list[Any]:
        out = [_to_crate(v) for v in row]
        if len(out) == len(types):
            for i in reals:
                out[i] = crate_sent(out[i], types[i])
            for i in texts:
                out[i] = _int_text(row[i], out[i])
        return out

    return convert
