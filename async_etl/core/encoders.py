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
variable-width scatter becomes one vectorised compress.  That primitive lives in
``core.packing`` (cache-sized row blocks, compress straight into the output buffer); this
module only says which parts make a field.  Header (signature, flags, extension length) and
trailer (-1) are the packer's prefix and suffix.

CrateDB (``encode_crate_json``).  The HTTP body is ``{"stmt": ..., "bulk_args": [[...], ...]}``.
Each column becomes a Python list in one C-level step (``ndarray.tolist``, an object-array take
for pooled strings, an ASCII ``S``->``U`` cast for generated ASCII text; random letters, which
need no escaping, as ``orjson.Fragment``s of quote + bytes + quote cut from the byte matrix);
``zip(*lists)`` transposes and one ``orjson.dumps`` call serialises.  JSON attributes come from a
pool of pre-serialised ``orjson.Fragment`` objects, so no dict is built per row.  Timestamps are
epoch milliseconds, uuids strings, json objects.  (A fully vectorised JSON writer on the packer was
tried and measured: orjson on lists is as fast or faster, and far simpler, so it stays.)
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import orjson

from async_etl.core.generators import (
    BLOCK_BYTES,
    Columns,
    Mask,
    Text,
    Values,
    pool_of,
    uuid_hex,
)
from async_etl.core.packing import Part, const, pack_rows
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


def _unpadded(text: Text) -> Text:
    """A ``char(n)`` constant without its trailing blanks: ``bpcharrecv`` pads to the column's n.

    The server pads with the typmod that binary COPY hands the receive function, so the stored
    value is the same as with the blanks sent (PostgreSQL ``bpchar_input``); only a constant
    fills a char column, anything else is sent as it is (the server accepts the padded form).
    """
    if text.pool is None or not text.pool.constant:
        return text
    return pool_of((text.pool.values[0].rstrip(" "),)).repeat(len(text.lens))


def _pg_parts(type_: str, values: Values, null: Mask | None) -> list[Part]:
    """The parts of one column's field: its 4-byte length, then its value bytes."""
    if type_ in _FIXED:
        width = _FIXED[type_][0]
        value = _be_bytes(type_, _as_array(values))
        if null is None:
            return [const(struct.pack(">i", width)), Part(value)]
        return [Part(_be_int32(np.where(null, -1, width))), Part(value, width * ~null)]
    text = _as_text(values)
    if type_ == "char":
        text = _unpadded(text)
    if null is None and type_ in ("text", "char") and text.pool is not None and text.pool.constant:
        raw = text.pool.mat[0, : int(text.pool.lens[0])].tobytes()
        return [const(struct.pack(">i", len(raw)) + raw)]  # written once per row block
    lens = text.lens if null is None else np.where(null, 0, text.lens)
    head = text.lens + (type_ == "json")
    if null is not None:
        head = np.where(null, -1, head)
    parts = [Part(_be_int32(head))]
    if type_ == "json":  # jsonb binary format: version byte 1, then the text
        parts.append(const(b"\x01", None if null is None else (~null).astype(np.int64)))
    parts.append(Part(text.mat, lens))
    return parts


def pg_binary_array(schema: Schema, cols: Columns) -> npt.NDArray[np.uint8]:
    """The PostgreSQL binary COPY payload of ``cols`` as a uint8 array (not copied to bytes)."""
    parts = [const(struct.pack(">h", len(schema.columns)))]
    for col, values, null in zip(schema.columns, cols.values, cols.nulls, strict=True):
        parts.extend(_pg_parts(col.type, values, null))
    return pack_rows(parts, len(cols), PG_COPY_HEADER, PG_COPY_TRAILER)


def encode_pg_binary(schema: Schema, cols: Columns) -> bytes:
    """The complete PostgreSQL binary COPY payload (header, tuples, trailer) for ``cols``."""
    return pg_binary_array(schema, cols).tobytes()


def json_string_fragments(text: Text) -> list[orjson.Fragment]:
    """Each row of a ``json_safe`` text as a pre-serialised JSON string (quote, bytes, quote).

    Built from the byte matrix in one vectorised copy per cache-sized block of rows
    (``BLOCK_BYTES``): no ``S``->``U`` cast (4 bytes per character), no ``str`` per row, no
    whole-batch quoted copy, and orjson copies the fragment without scanning it.
    """
    n, width = text.mat.shape
    step = max(1, BLOCK_BYTES // (width + 2))
    quoted = np.empty((min(n, step), width + 2), dtype=np.uint8)
    quoted[:, 0] = 34  # '"'
    out: list[orjson.Fragment] = []
    for start in range(0, n, step):
        rows = quoted[: min(step, n - start)]
        lens = text.lens[start : start + len(rows)]
        rows[:, 1 : width + 1] = text.mat[start : start + len(rows)]  # zero past each length
        rows[:, width + 1] = 0
        rows[np.arange(len(rows)), lens + 1] = 34
        # the S view drops the zero padding after the closing quote
        out += map(orjson.Fragment, rows.view(f"S{width + 2}").ravel().tolist())
    return out


def _crate_list(type_: str, values: Values) -> list[Any]:
    """One column as the Python values CrateDB expects in ``bulk_args``."""
    if isinstance(values, Text):
        if type_ != "json":
            if values.json_safe:
                return json_string_fragments(values)
            return values.strings()
        if values.pool is not None and values.codes is not None:
            return list(values.pool.fragments[values.codes].tolist())
        return [orjson.Fragment(s) for s in values.strings()]
    if type_ == "uuid":  # pre-serialised JSON strings: no str per row for orjson to scan
        return list(
            map(orjson.Fragment, uuid_hex(values, quoted=True).view("S38").ravel().tolist())
        )
    if type_ == "timestamptz":
        return list((values // 1000).tolist())
    return list(values.tolist())


def encode_crate_json(stmt: str, schema: Schema, cols: Columns) -> bytes:
    """The whole CrateDB ``_sql`` HTTP body: ``{"stmt": stmt, "bulk_args": [[...], ...]}``."""
    return crate_json_bodies(stmt, schema, cols, [len(cols)])[0]


def crate_json_bodies(
    stmt: str, schema: Schema, cols: Columns, sizes: Sequence[int]
) -> list[bytes]:
    """``cols`` cut into consecutive bodies of ``sizes`` rows, each ``encode_crate_json``'s.

    Each column becomes a Python list once for all the bodies (one C-level step per column, not
    per column per body: at 100-row bodies those calls are the cost); each body is then one
    ``orjson.dumps`` of its rows.  Raises ``ValueError`` when ``sizes`` do not add up to the rows.
    """
    if sum(sizes) != len(cols) or any(n < 0 for n in sizes):
        raise ValueError(f"body sizes {list(sizes)} do not cut {len(cols)} rows")
    lists: list[list[Any]] = []
    for col, values, null in zip(schema.columns, cols.values, cols.nulls, strict=True):
        items = _crate_list(col.type, values)
        if null is not None:
            items = [None if m else v for v, m in zip(items, null.tolist(), strict=True)]
        lists.append(items)
    rows = list(zip(*lists, strict=True))
    bodies: list[bytes] = []
    start = 0
    for n in sizes:
        bodies.append(orjson.dumps({"stmt": stmt, "bulk_args": rows[start : start + n]}))
        start += n
    return bodies
