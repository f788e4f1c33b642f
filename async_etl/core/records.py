"""Record generation for the load generator: the public face of generators + encoders.

``w_generate_batches`` is the process-pool entry point: it turns a ``WorkUnit`` into
``EncodedBatch``es already in the sink's wire format, so the event loop only ships bytes.  A
unit is generated whole (one random stream per column per unit) and cut into its batches.
``rows`` gives a unit's rows as Python values, for tests, the thread mode and reconcilers.
Pure: no I/O, no asyncio, no threads.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeAlias

import numpy as np
import numpy.typing as npt
import orjson

from async_etl.core.encoders import (
    crate_json_bodies,
    encode_crate_json,
    encode_pg_binary,
    pg_binary_array,
)
from async_etl.core.generators import Columns, Text, generate_columns
from async_etl.core.schema import Schema
from async_etl.errors import ConfigError
from async_etl.typing import EncodedBatch, IdRange, Row, WorkUnit

__all__ = [
    "Columns",
    "Payload",
    "encode_batches",
    "encode_crate_json",
    "encode_pg_binary",
    "generate_columns",
    "payload_bound",
    "rows",
    "split_unit",
    "w_generate",
    "w_generate_batches",
]

_UNIX: Final = datetime(1970, 1, 1, tzinfo=UTC)

Payload: TypeAlias = "bytes | npt.NDArray[np.uint8]"
"""An encoded batch in its wire format, not yet copied to ``bytes`` when it is an array."""


def _py_list(type_: str, values: Any) -> list[Any]:
    """One column as Python values (int, float, bool, str, datetime, UUID, dict)."""
    if isinstance(values, Text):
        strings = values.strings()
        return [orjson.loads(s) for s in strings] if type_ == "json" else strings
    if type_ == "uuid":
        raw = values.tobytes()
        return [uuid.UUID(bytes=raw[i : i + 16]) for i in range(0, len(raw), 16)]
    if type_ == "timestamptz":
        return [_UNIX + timedelta(microseconds=us) for us in values.tolist()]
    return list(values.tolist())


def columns_to_rows(schema: Schema, cols: Columns) -> list[Row]:
    """A generated batch as Python tuples in schema column order; NULLs are None."""
    lists: list[list[Any]] = []
    for col, values, null in zip(schema.columns, cols.values, cols.nulls, strict=True):
        items = _py_list(col.type, values)
        if null is not None:
            items = [None if m else v for v, m in zip(items, null.tolist(), strict=True)]
        lists.append(items)
    return list(zip(*lists, strict=True)) if lists else []


def rows(schema: Schema, ids: IdRange, seed: int) -> list[Row]:
    """The unit ``ids`` as Python tuples: exactly what the encoders put on the wire, in order."""
    return columns_to_rows(schema, generate_columns(schema, ids, seed))


def split_unit(unit: WorkUnit) -> list[WorkUnit]:
    """A unit as consecutive units of ``unit.batch_size`` rows (one batch each)."""
    size = unit.batch_size if unit.batch_size > 0 else max(1, unit.ids.count)
    return [
        replace(unit, ids=IdRange(start, min(size, unit.ids.stop - start)))
        for start in range(unit.ids.start, unit.ids.stop, size)
    ]


def w_generate_batches(unit: WorkUnit) -> list[EncodedBatch]:
    """Generate a unit as consecutive batches of ``unit.batch_size`` rows (top-level, picklable).

    Many small batches then cost one process-pool round trip instead of one each.  The batches
    are the unit's rows (``generate_columns`` over the unit's whole id range) cut in order, so
    their payloads together hold exactly the rows of the unit generated as one batch.
    Raises ``ConfigError`` for an unknown wire format or a CrateDB encoding without statement.
    """
    return [
        EncodedBatch(ids, _bytes(payload), unit.encoding.wire)
        for ids, payload in encode_batches(unit)
    ]


def encode_batches(unit: WorkUnit) -> list[tuple[IdRange, Payload]]:
    """Generate ``unit`` once and encode it as consecutive batches of ``unit.batch_size`` rows.

    The unit is the unit of the random streams: each column draws once for all of the unit's
    rows (``generate_columns(schema, unit.ids, seed)``), and the batches are slices of that.
    At 100-row batches one numpy call per column per batch was most of the generators' CPU
    (RESULTS.md, issue 12, "a unit's columns in one call").  A unit of one batch (batch size of
    4,000 rows or more, ``plan.batches_per_unit``) draws exactly as before, from its own id
    range.  Raises ``ConfigError`` for an unknown wire format or a CrateDB encoding without
    statement.
    """
    return _encoded(unit, [part.ids for part in split_unit(unit)])


def _encoded(unit: WorkUnit, parts: Sequence[IdRange]) -> list[tuple[IdRange, Payload]]:
    """``unit`` generated once, encoded as the batches ``parts`` (consecutive, covering it)."""
    cols = generate_columns(unit.schema, unit.ids, unit.seed)
    wire = unit.encoding.wire
    if wire == "pg_binary":
        return [
            (ids, pg_binary_array(unit.schema, cols.part(ids.start - unit.ids.start, ids.count)))
            for ids in parts
        ]
    if wire == "crate_json":
        if not unit.encoding.stmt:
            raise ConfigError("crate_json encoding needs an INSERT statement")
        sizes = [ids.count for ids in parts]
        bodies = crate_json_bodies(unit.encoding.stmt, unit.schema, cols, sizes)
        return list(zip(parts, bodies, strict=True))
    if wire == "none":
        return [(ids, b"") for ids in parts]
    raise ConfigError(f"unknown wire format {wire!r}")


def w_generate(unit: WorkUnit) -> EncodedBatch:
    """Generate and encode ``unit`` as one batch (a top-level, picklable process-pool function).

    Raises ``ConfigError`` for an unknown wire format or a CrateDB encoding without statement.
    """
    ((ids, payload),) = _encoded(unit, [unit.ids])
    return EncodedBatch(ids, _bytes(payload), unit.encoding.wire)


def _bytes(payload: Payload) -> bytes:
    return payload if isinstance(payload, bytes) else payload.tobytes()


def payload_bound(unit: WorkUnit) -> int:
    """An upper bound of the bytes ``w_generate_batches(unit)`` encodes, all batches together."""
    parts = -(-unit.ids.count // unit.batch_size) if unit.batch_size > 0 else 1
    per_batch = 64 + 2 * len(unit.encoding.stmt.encode())  # COPY header / JSON envelope
    return unit.ids.count * (unit.schema.max_row_bytes() + 8) + parts * per_batch
