"""Record generation for the load generator: the public face of generators + encoders.

``w_generate`` is the process-pool entry point: it turns a ``WorkUnit`` into an
``EncodedBatch`` already in the sink's wire format, so the event loop only ships bytes.
``rows`` gives the same batch as Python values, for tests, the thread mode and reconcilers.
Pure: no I/O, no asyncio, no threads.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import orjson

from async_etl.core.encoders import encode_crate_json, encode_pg_binary, pg_binary_array
from async_etl.core.generators import Columns, Text, batch_states, generate_columns
from async_etl.core.schema import Schema
from async_etl.core.seeding import PCG64State
from async_etl.errors import ConfigError
from async_etl.typing import EncodedBatch, IdRange, Row, WorkUnit

__all__ = [
    "Columns",
    "encode_crate_json",
    "encode_pg_binary",
    "encode_unit",
    "generate_columns",
    "payload_bound",
    "rows",
    "split_seeded",
    "split_unit",
    "w_generate",
    "w_generate_batches",
]

_UNIX: Final = datetime(1970, 1, 1, tzinfo=UTC)


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
    """The batch ``ids`` as Python tuples: exactly what the encoders put on the wire."""
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

    Many small batches then cost one process-pool round trip instead of one each.  Each batch
    is exactly what ``w_generate`` makes for its own id range, so grouping changes no data.
    """
    return [w_generate(part, states) for part, states in split_seeded(unit)]


def split_seeded(unit: WorkUnit) -> list[tuple[WorkUnit, list[PCG64State]]]:
    """``split_unit``'s batches, each with its column generators' states, seeded together.

    Seeding a unit's batches at once (``generators.batch_states``) costs about a tenth of
    seeding each on its own; the values are the same.
    """
    parts = split_unit(unit)
    states = batch_states(unit.schema, [part.ids for part in parts], unit.seed)
    return list(zip(parts, states, strict=True))


def encode_unit(
    unit: WorkUnit, states: Sequence[PCG64State] | None = None
) -> bytes | npt.NDArray[np.uint8]:
    """Generate one batch and encode it in its wire format, without a final copy to bytes.

    ``states``: the batch's column generators, when seeded already (``batch_states``).
    Raises ``ConfigError`` for an unknown wire format or a CrateDB encoding without statement.
    """
    cols = generate_columns(unit.schema, unit.ids, unit.seed, states)
    wire = unit.encoding.wire
    if wire == "pg_binary":
        return pg_binary_array(unit.schema, cols)
    if wire == "crate_json":
        if not unit.encoding.stmt:
            raise ConfigError("crate_json encoding needs an INSERT statement")
        return encode_crate_json(unit.encoding.stmt, unit.schema, cols)
    if wire == "none":
        return b""
    raise ConfigError(f"unknown wire format {wire!r}")


def w_generate(unit: WorkUnit, states: Sequence[PCG64State] | None = None) -> EncodedBatch:
    """Generate and encode one unit of work (a top-level, picklable process-pool function).

    ``states``: the unit's column generators, when seeded already (``batch_states``).
    Raises ``ConfigError`` for an unknown wire format or a CrateDB encoding without statement.
    """
    payload = encode_unit(unit, states)
    data = payload if isinstance(payload, bytes) else payload.tobytes()
    return EncodedBatch(ids=unit.ids, payload=data, wire=unit.encoding.wire)


def payload_bound(unit: WorkUnit) -> int:
    """An upper bound of the bytes ``w_generate_batches(unit)`` encodes, all batches together."""
    parts = -(-unit.ids.count // unit.batch_size) if unit.batch_size > 0 else 1
    per_batch = 64 + 2 * len(unit.encoding.stmt.encode())  # COPY header / JSON envelope
    return unit.ids.count * (unit.schema.max_row_bytes() + 8) + parts * per_batch
