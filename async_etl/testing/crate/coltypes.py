"""CrateDB column types for the stand-in: names, wire type ids and value casting.

Pure: no I/O.  A cast either returns the stored form of a value (timestamps become epoch
milliseconds, ISO strings included; ``real`` a 32-bit float) or raises ``CastError``, which
the engine turns into an analysis error (HTTP 400 / 4000) before anything is written.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeAlias

import numpy as np

from async_etl.core.coerce import FALSE_WORDS, TRUE_WORDS

Caster: TypeAlias = Callable[[Any], Any]

_INT_RANGES = {"integer": (-(2**31), 2**31 - 1), "smallint": (-(2**15), 2**15 - 1)}
_BIGINT_RANGE = (-(2**63), 2**63 - 1)
_TYPE_IDS = {
    "boolean": 3,
    "text": 4,
    "double precision": 6,
    "real": 7,
    "smallint": 8,
    "integer": 9,
    "bigint": 10,
    "timestamp with time zone": 11,
    "object": 12,
    "timestamp without time zone": 15,
    "numeric": 22,
}
_TRUE = TRUE_WORDS | {"t"}  # the project's words, plus the cast's one-letter forms
_FALSE = FALSE_WORDS | {"f"}


class CastError(ValueError):
    """Raised when a value cannot be cast to a column's type."""


@dataclass(frozen=True, slots=True)
class ColumnType:
    """A column type: a scalar ``kind``, an ``array`` of ``inner``, or an ``object``.

    ``fields`` are the declared sub-columns of an object; ``policy`` is its column policy
    (``dynamic``, ``strict`` or ``ignored``).
    """

    kind: str
    inner: ColumnType | None = None
    fields: tuple[tuple[str, ColumnType], ...] = ()
    policy: str = "dynamic"
    length: int | None = None
    """``VARCHAR(n)``'s or ``CHARACTER(n)``'s n (a ``text`` kind); None: unbounded."""
    padded: bool = False
    """``CHARACTER(n)``: blank-padded to n (``length``); False: ``VARCHAR(n)``."""

    @property
    def type_id(self) -> int | list[Any]:
        """The id used in ``col_types`` (arrays are ``[100, inner]``)."""
        if self.kind == "array" and self.inner is not None:
            return [100, self.inner.type_id]
        return _TYPE_IDS.get(self.kind, 4)

    @property
    def ddl(self) -> str:
        """The type as ``SHOW CREATE TABLE`` writes it (``VARCHAR(3)``, ``ARRAY(CHARACTER(2))``)."""
        if self.kind == "array" and self.inner is not None:
            return f"ARRAY({self.inner.ddl})"
        if self.kind == "object":
            fields = ", ".join(f'"{name}" {t.ddl}' for name, t in self.fields)
            return f"OBJECT({self.policy.upper()})" + (f" AS ({fields})" if fields else "")
        if self.length is not None:
            return f"{'CHARACTER' if self.padded else 'VARCHAR'}({self.length})"
        return self.kind.upper()

    @property
    def sql_name(self) -> str:
        """The type's name in casts (``text``, ``bigint_array``, ...; ``VARCHAR(n)`` is text)."""
        if self.kind == "array" and self.inner is not None:
            return f"{self.inner.sql_name}_array"
        return self.kind

    @property
    def data_type(self) -> str:
        """information_schema's name: ``sql_name``, or the name of VARCHAR(n) / CHARACTER(n).

        ``character varying`` for VARCHAR(n), ``character`` for CHARACTER(n).
        """
        if self.kind == "array" and self.inner is not None:
            return f"{self.inner.data_type}_array"
        if self.length is None:
            return self.kind
        return "character" if self.padded else "character varying"

    def caster(self) -> Caster:
        """A function casting one JSON value to this type (``None`` passes through)."""
        if self.kind == "array" and self.inner is not None:
            return _array_caster(self.inner.caster())
        if self.kind == "object":
            subs = {name: t.caster() for name, t in self.fields}
            return _object_caster(subs, self.policy)
        if self.length is not None:
            return _varchar(self.length, self.padded)
        return _SCALAR_CASTERS.get(self.kind, _to_text)


TEXT = ColumnType("text")
BIGINT = ColumnType("bigint")
INTEGER = ColumnType("integer")
TYPE_ALIASES = {
    "text": "text",
    "string": "text",
    "varchar": "text",
    "character": "text",
    "char": "text",
    "bigint": "bigint",
    "long": "bigint",
    "int8": "bigint",
    "integer": "integer",
    "int": "integer",
    "int4": "integer",
    "smallint": "smallint",
    "short": "smallint",
    "int2": "smallint",
    "double": "double precision",
    "float8": "double precision",
    "real": "real",
    "float": "real",
    "float4": "real",
    "boolean": "boolean",
    "bool": "boolean",
    "numeric": "numeric",
    "decimal": "numeric",
    "timestamptz": "timestamp with time zone",
}
"""Single-word type names and what they mean; multi-word names are handled by the parser."""


def _fail(value: Any, kind: str) -> CastError:
    return CastError(f"Cannot cast value `{value!r}` to type `{kind}`")


def _to_text(value: Any) -> Any:
    if value is None or type(value) is str:
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(value, "text")
    return str(value)


def _varchar(length: int, padded: bool = False) -> Caster:
    """Text for a ``VARCHAR(length)`` (``CHARACTER(length)`` when ``padded``) as CrateDB stores it.

    CrateDB docs, Data types, VARCHAR(n) and CHARACTER(n).  A longer value is refused ("An
    attempt to store a string literal that exceeds the specified length ... results in an
    error": ``'john doe' is too long for the text type of length: 6``, ``... for the character
    type of length: 3``), unless the excess characters are all spaces: then it is cut to
    ``length``.  A shorter ``CHARACTER(n)`` value "will be right padded with whitespaces".
    """
    kind = "character" if padded else "text"

    def cast(value: Any) -> Any:
        text = _to_text(value)
        if text is None or len(text) == length:
            return text
        if len(text) < length:
            return text.ljust(length) if padded else text
        if not text[length:].strip(" "):
            return text[:length]
        raise CastError(f"'{text}' is too long for the {kind} type of length: {length}")

    return cast


def _integer(kind: str, low: int, high: int) -> Caster:
    def cast(value: Any) -> Any:
        if value is None:
            return None
        if type(value) is int:
            result = value
        elif isinstance(value, float) and value.is_integer():
            result = int(value)
        elif isinstance(value, str):
            try:
                result = int(value.strip())
            except ValueError:
                raise _fail(value, kind) from None
        else:
            raise _fail(value, kind)
        if not low <= result <= high:
            raise CastError(f"Value {value!r} is out of range for type `{kind}`")
        return result

    return cast


def _to_float(value: Any) -> Any:
    if value is None or type(value) is float:
        return value
    if isinstance(value, bool):
        raise _fail(value, "double precision")
    if isinstance(value, int):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise _fail(value, "double precision") from None
    raise _fail(value, "double precision")


_REAL_MAX = float(np.finfo(np.float32).max)


def _to_real(value: Any) -> Any:
    """A 32-bit float, kept as the shortest decimal form CrateDB prints for it."""
    number = _to_float(value)
    if number is None or not math.isfinite(number):
        return number
    if abs(number) > _REAL_MAX:
        raise CastError(f"Value {value!r} is out of range for type `real`")
    return float(str(np.float32(number)))


def _to_numeric(value: Any) -> Any:
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise _fail(value, "numeric") from None
        return int(number) if number.is_integer() and "." not in value else number
    raise _fail(value, "numeric")


def _to_bool(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return value.lower() in _TRUE
    raise _fail(value, "boolean")


def parse_timestamp(value: Any) -> int | None:
    """Epoch milliseconds for an epoch-ms number or an ISO-8601 string (naive means UTC)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise _fail(value, "timestamp with time zone")
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise _fail(value, "timestamp with time zone") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1000)
    raise _fail(value, "timestamp with time zone")


def _array_caster(inner: Caster) -> Caster:
    def cast(value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, list):
            raise _fail(value, "array")
        return [inner(v) for v in value]

    return cast


def _object_caster(subs: dict[str, Caster], policy: str) -> Caster:
    def cast(value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise _fail(value, "object")
        result: dict[str, Any] = {}
        for key, item in value.items():
            sub = subs.get(key)
            if sub is not None:
                result[key] = sub(item)
            elif policy == "strict":
                raise CastError(f"Cannot add column `{key}` to strict object")
            else:
                result[key] = item
        return result

    return cast


_SCALAR_CASTERS: dict[str, Caster] = {
    "text": _to_text,
    "bigint": _integer("bigint", *_BIGINT_RANGE),
    "integer": _integer("integer", *_INT_RANGES["integer"]),
    "smallint": _integer("smallint", *_INT_RANGES["smallint"]),
    "double precision": _to_float,
    "real": _to_real,
    "numeric": _to_numeric,
    "boolean": _to_bool,
    "timestamp with time zone": parse_timestamp,
    "timestamp without time zone": parse_timestamp,
}


def infer_type_id(value: Any) -> int | list[Any]:
    """The wire type id of a computed value (used for literals and system tables)."""
    if isinstance(value, bool):
        return 3
    if isinstance(value, int):
        return 10
    if isinstance(value, float):
        return 6
    if isinstance(value, dict):
        return 12
    if isinstance(value, list):
        return [100, infer_type_id(value[0]) if value else 4]
    return 4
