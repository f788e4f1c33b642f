"""Which batches CrateDB may take as they are, checked a column at a time; their bulk bodies.

Theory of operation
-------------------
``encode_crate_rows`` (``core.row_codecs``) refuses a row holding a value CrateDB would not
store exactly (``core.exact.crate_refusal``: a NaN or an infinity, an integer past the
column's range or past 2**53 in a floating column, sub-millisecond time, a type JSON cannot
carry).  Checking row by row costs a few microseconds a row; ``plain_columns`` answers the
same question for a whole batch with whole-column builtins (the value types of each column,
``min`` / ``max``, ``math.isfinite``): True means no row would be refused, False means "check
row by row" (it may also mean "not sure").

A batch that passes goes out as ``bulk_body``: one ``orjson.dumps`` per slice of rows, joined
byte for byte into what ``orjson.dumps({"stmt": stmt, "bulk_args": rows})`` gives, so a caller
can let its event loop run between slices (``body_parts``).
"""

from __future__ import annotations

import math
import operator
import uuid
from collections.abc import Iterator, Sequence
from datetime import date, datetime
from typing import Any

import orjson

from async_etl.core.batching import Columns
from async_etl.core.exact import CRATE_INT_BITS

_NONE = type(None)
_PLAIN = frozenset({str, bool, _NONE, date, uuid.UUID})
_BIG = 2**63
_FLOAT_INTS = 2**53
_micros = operator.attrgetter("microsecond")


def _plain_column(column: Sequence[Any], kinds: frozenset[type], base: str) -> bool:
    """True when ``crate_refusal`` refuses no value of ``column`` (whole-column builtins)."""
    if kinds <= _PLAIN:
        return True
    values: Sequence[Any] = column
    if _NONE in kinds:
        kinds = kinds - {_NONE}
        values = [v for v in column if v is not None]
    if kinds == {float}:  # a finite sum has no NaN or infinity in it (one C pass)
        if base == "real":
            return False
        return math.isfinite(sum(values)) or all(map(math.isfinite, values))
    if kinds == {int}:
        bound = _FLOAT_INTS if base in ("double precision", "real", "numeric") else _BIG
        if base in CRATE_INT_BITS:
            bound = 2 ** (CRATE_INT_BITS[base] - 1)
        return bool(-bound <= min(values) and max(values) < bound)
    if kinds == {datetime}:  # whole milliseconds: each distinct microsecond field once
        return not any(m % 1000 for m in set(map(_micros, values)))
    return False


def plain_columns(columns: Columns, bases: Sequence[str]) -> bool:
    """True when ``crate_refusal`` refuses no value of the rows seen as ``columns``.

    ``bases``: each column's base type name (empty: decide by the value's type).
    """
    names = bases or [""] * len(columns.values)
    return all(
        _plain_column(column, kinds, base)
        for column, kinds, base in zip(columns.values, columns.kinds, names, strict=True)
    )


def plain(rows: Sequence[tuple[Any, ...]], bases: Sequence[str]) -> bool:
    """``plain_columns`` for rows; False also for rows of different widths (check row by row)."""
    if not rows:
        return True
    width = len(rows[0])
    if set(map(len, rows)) != {width}:
        return False
    return plain_columns(Columns.of(rows, width), bases)


def body_parts(stmt: str, rows: Sequence[tuple[Any, ...]], every: int) -> Iterator[bytes]:
    """The pieces of ``bulk_body(stmt, rows)``: ``every`` rows dumped per piece.

    Raises ``TypeError`` (from orjson) for a value JSON cannot carry: check ``plain`` first.
    """
    yield b'{"stmt":' + orjson.dumps(stmt) + b',"bulk_args":['
    for start in range(0, len(rows), every):
        part = orjson.dumps(rows[start : start + every])[1:-1]
        yield part if not start else b"," + part
    yield b"]}"


def bulk_body(stmt: str, rows: Sequence[tuple[Any, ...]]) -> bytes:
    """``orjson.dumps({"stmt": stmt, "bulk_args": rows})``; raises ``TypeError`` like it."""
    return orjson.dumps({"stmt": stmt, "bulk_args": rows})


__all__ = ["body_parts", "bulk_body", "plain", "plain_columns"]
