"""Wire encoders for generated batches: PostgreSQL binary COPY and the CrateDB bulk JSON body.

Theory of operation
-------------------
Both encoders take a column-major ``Columns`` batch and must produce a row-major byte stream
without a per-row Python loop (a per-row loop caps a core at ~250k rows/s).

PostgreSQL binary COPY (``encode_pg_binary``).  A tuple is ``int16 field count`` followed, per
field, by ``int32 length`` (-1 for NULL) and that many bytes, all big-endian.  We lay a batch
out as one ``(rows, W)`` byte matrix ``M`` where every field owns a fixed *slot* of columns:
4 length bytes plus the widest value of that column in the batch (8 for int8, 16 for a uuid,
the longest string for text, 1 + longest for jsonb).  Fixed-width values are written with one
strided copy per column from a big-endian view (``astype('>i8').view(uint8)``); text is the
zero-padded matrix the generator already holds.  A boolean matrix of the same shape marks the
bytes that belong to the stream: all of a fixed slot, the first ``len`` bytes of a text slot,
nothing of a NULL value.  ``M[mask]`` walks row-major, so it *is* the tuple stream: the
variable-width scatter becomes one vectorised compress.  When no column is variable or
nullable the mask is all true and ``M`` is used as is.  Header (signature, flags, extension
length) and trailer (-1) are glued on once per batch.

CrateDB (``encode_crate_json``).  The HTTP body is ``{"stmt": ..., "bulk_args": [[...], ...]}``.
Each column becomes a Python list in one C-level step (``ndarray.tolist``, an object-array take
for pooled strings, an ASCII ``S``->``U`` cast for generated ASCII text); ``zip(*lists)``
transposes and one ``orjson.dumps`` call serialises.  JSON attributes come from a pool of
pre-serialised ``orjson.Fragment`` objects, so no dict is built per row.  Timestamps are epoch
milliseconds, uuids strings, json objects.
"""

from __future__ import annotations

import struct
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import orjson

from async_etl.core.generators import Columns, Mask, Text, Values, uuid_hex
from async_etl.core.schema import Schema

PG_EPOCH_US: Final = 946_684_800_000_000
"""2000-01-01T00:00:00Z in µs since 1970: PostgreSQL's timestamp origin."""

PG_COPY_HEADER: Final = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
PG_COPY_TRAILER: Final = struct.pack(">h", -1)

# fixed-width types: (bytes per value, big-endian dtype to view the numpy column as)
_FIXED: Final[dict[str, tuple[int, str]]] = {
    "bigint": (8, ">i8"),
    "int": (4, ">i4"),
    "double": (8, ">f8"),
    "bool": (1, "u1"),
    "timestamptz": (8, ">i8"),
    "uuid": (16, "u1"),
}


def _as_text(values: Values) -> Text:
    if not isinstance(values, Text):  # pragma: no cover - generators guarantee it
        raise TypeError("expected a text column")
    return values


def _as_array(values: Values) -> npt.NDArray[Any]:
    if isinstance(values, Text):  # pragma: no cover - generators guarantee it
        raise TypeError("expected an array column")
    return values


def _be_bytes(type_: str, values: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    """A fixed-width column as an (n, width) matrix of its big-endian bytes."""
    width, dtype = _FIXED[type_]
    if type_ == "uuid":
        return values.astype(np.uint8, copy=False)
    if type_ == "timestamptz":
        values = values - PG_EPOCH_US
    return values.astype(dtype).view(np.uint8).reshape(-1, width)


def _be_int32(values: npt.NDArray[np.int64]) -> npt.NDArray[np.uint8]:
    return values.astype(">i4").view(np.uint8).reshape(-1, 4)


def encode_pg_binary(schema: Schema, cols: Columns) -> bytes:
    """The complete PostgreSQL binary COPY payload (header, tuples, trailer) for ``cols``."""
    n = len(cols)
    slots: list[int] = []
    for col, values in zip(schema.columns, cols.values, strict=True):
        if col.type in _FIXED:
            slots.append(_FIXED[col.type][0])
        else:
            slots.append(_as_text(values).width + (col.type == "json"))
    total = 2 + 4 * len(slots) + sum(slots)
    mat = np.empty((n, total), dtype=np.uint8)
    mat[:, :2] = np.frombuffer(struct.pack(">h", len(slots)), dtype=np.uint8)
    mask: Mask | None = None
    pos = 2
    for col, values, null, width in zip(
        schema.columns, cols.values, cols.nulls, slots, strict=True
    ):
        field = slice(pos + 4, pos + 4 + width)
        if col.type in _FIXED:
            mat[:, field] = _be_bytes(col.type, _as_array(values))
            if null is None:
                mat[:, pos : pos + 4] = np.frombuffer(struct.pack(">i", width), dtype=np.uint8)
            else:
                mat[:, pos : pos + 4] = _be_int32(np.where(null, -1, width))
                if mask is None:
                    mask = np.ones((n, total), dtype=np.bool_)
                mask[:, field] = ~null[:, None]
        else:
            text = _as_text(values)
            lens = text.lens
            if col.type == "json":  # jsonb binary format: version byte 1, then the text
                mat[:, pos + 4] = 1
                mat[:, pos + 5 : field.stop] = text.mat
                lens = lens + 1
            else:
                mat[:, field] = text.mat
            if null is not None:
                mat[:, pos : pos + 4] = _be_int32(np.where(null, -1, lens))
                lens = np.where(null, 0, lens)
            else:
                mat[:, pos : pos + 4] = _be_int32(lens)
            if mask is None:
                mask = np.ones((n, total), dtype=np.bool_)
            mask[:, field] = np.arange(width) < lens[:, None]
        pos = field.stop
    body = mat if mask is None else mat[mask]
    return b"".join((PG_COPY_HEADER, body.tobytes(), PG_COPY_TRAILER))


def _crate_list(type_: str, values: Values) -> list[Any]:
    """One column as the Python values CrateDB expects in ``bulk_args``."""
    if isinstance(values, Text):
        if type_ != "json":
            return values.strings()
        if values.pool is not None and values.codes is not None:
            return list(values.pool.fragments[values.codes].tolist())
        return [orjson.Fragment(s) for s in values.strings()]
    if type_ == "uuid":
        return Text(
            uuid_hex(values), np.full(len(values), 36, dtype=np.int64), ascii=True
        ).strings()
    if type_ == "timestamptz":
        return list((values // 1000).tolist())
    return list(values.tolist())


def encode_crate_json(stmt: str, schema: Schema, cols: Columns) -> bytes:
    """The whole CrateDB ``_sql`` HTTP body: ``{"stmt": stmt, "bulk_args": [[...], ...]}``."""
    lists: list[list[Any]] = []
    for col, values, null in zip(schema.columns, cols.values, cols.nulls, strict=True):
        items = _crate_list(col.type, values)
        if null is not None:
            items = [None if m else v for v, m in zip(items, null.tolist(), strict=True)]
        lists.append(items)
    return orjson.dumps({"stmt": stmt, "bulk_args": list(zip(*lists, strict=True))})
