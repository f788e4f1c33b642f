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
from dataclasses import dataclass
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

_BLOCK_BYTES: Final = 128 * 1024  # row-matrix bytes filled per block (fits in L2)

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


@dataclass(frozen=True, slots=True)
class _Slot:
    """Where one field lives in the row matrix and what fills it.

    ``head`` is the 4-byte length (one row broadcast, or one per row); ``pieces`` are
    (offset in the value part, bytes per row or a constant); ``used`` is how many value bytes
    each row really has (None: all ``width``).
    """

    pos: int
    width: int
    head: npt.NDArray[np.uint8]
    pieces: tuple[tuple[int, npt.NDArray[np.uint8] | int], ...]
    used: npt.NDArray[np.int64] | None


def _slot(pos: int, type_: str, values: Values, null: Mask | None) -> _Slot:
    """Plan the field of one column (whole batch, vectorised)."""
    if type_ in _FIXED:
        width = _FIXED[type_][0]
        pieces: tuple[tuple[int, npt.NDArray[np.uint8] | int], ...] = (
            (0, _be_bytes(type_, _as_array(values))),
        )
        if null is None:
            head = np.frombuffer(struct.pack(">i", width), dtype=np.uint8)
            return _Slot(pos, width, head, pieces, None)
        return _Slot(pos, width, _be_int32(np.where(null, -1, width)), pieces, width * ~null)
    text = _as_text(values)
    lens, width = text.lens, text.width
    pieces = ((0, text.mat),)
    if type_ == "json":  # jsonb binary format: version byte 1, then the text
        lens, width, pieces = lens + 1, width + 1, ((0, 1), (1, text.mat))
    if null is None:
        return _Slot(pos, width, _be_int32(lens), pieces, lens)
    return _Slot(pos, width, _be_int32(np.where(null, -1, lens)), pieces, np.where(null, 0, lens))


def encode_pg_binary(schema: Schema, cols: Columns) -> bytes:
    """The complete PostgreSQL binary COPY payload (header, tuples, trailer) for ``cols``."""
    n = len(cols)
    slots: list[_Slot] = []
    pos = 2
    for col, values, null in zip(schema.columns, cols.values, cols.nulls, strict=True):
        slots.append(_slot(pos, col.type, values, null))
        pos += 4 + slots[-1].width
    total = pos
    row_bytes = np.full(n, 2 + 4 * len(slots), dtype=np.int64)
    for slot in slots:
        row_bytes += slot.width if slot.used is None else slot.used
    ends = np.cumsum(row_bytes)
    size = int(ends[-1]) if n else 0
    out = np.empty(len(PG_COPY_HEADER) + size + len(PG_COPY_TRAILER), dtype=np.uint8)
    out[: len(PG_COPY_HEADER)] = np.frombuffer(PG_COPY_HEADER, dtype=np.uint8)
    out[len(out) - len(PG_COPY_TRAILER) :] = np.frombuffer(PG_COPY_TRAILER, dtype=np.uint8)
    body = out[len(PG_COPY_HEADER) : len(out) - len(PG_COPY_TRAILER)]
    # fill the matrix a cache-sized block of rows at a time: column-wise strided writes over a
    # whole 5000-row batch fall out of L2 and cost ~4x as much per row
    block = max(16, min(n, _BLOCK_BYTES // total))
    mat = np.empty((block, total), dtype=np.uint8)
    mat[:, :2] = np.frombuffer(struct.pack(">h", len(slots)), dtype=np.uint8)
    mask = np.ones((block, total), dtype=np.bool_)
    ramp = np.arange(total)
    for a in range(0, n, block):
        b = min(n, a + block)
        m, k = mat[: b - a], mask[: b - a]
        for slot in slots:
            value = slot.pos + 4
            m[:, slot.pos : value] = slot.head if slot.head.ndim == 1 else slot.head[a:b]
            for offset, piece in slot.pieces:
                part = piece if isinstance(piece, int) else piece[a:b]
                m[:, value + offset : value + offset + piece_width(piece)] = part
            if slot.used is not None:
                k[:, value : value + slot.width] = ramp[: slot.width] < slot.used[a:b, None]
        lo, hi = (int(ends[a - 1]) if a else 0), int(ends[b - 1])
        np.compress(k.ravel(), m.ravel(), out=body[lo:hi])
    return out.tobytes()


def piece_width(piece: npt.NDArray[np.uint8] | int) -> int:
    """Bytes per row of a slot piece (a constant fills one byte)."""
    return 1 if isinstance(piece, int) else int(piece.shape[1])


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
