"""Fast paths for PostgreSQL binary COPY fields: one call per value, length prefix included.

``row_codecs.PG_TYPES`` is the reference: it checks every value and says why one does not
fit.  The functions here do the same work for the common, well-typed values with fewer
steps (exact-type checks, the ``int32`` length packed with the value in one ``struct``
call) and raise on anything unusual; ``encode_pg_rows`` then asks the reference for the
row's reason.  So a fast path may refuse more than the reference, never accept more.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

Field = Callable[[Any], bytes]
"""One value -> ``int32 length + value bytes``; raises (any ``Exception``) when unsure."""

_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_len = struct.Struct(">i").pack
NULL: Final = _len(-1)


def _fixed(fmt: str, size: int, kind: type) -> Field:
    pack = struct.Struct(f">i{fmt}").pack

    def field(v: Any) -> bytes:
        if type(v) is not kind:
            raise TypeError(type(v).__name__)
        return pack(size, v)  # struct.error when out of range

    return field


def _text(v: Any) -> bytes:
    if type(v) is not str or "\x00" in v:
        raise TypeError("not plain text")
    data = v.encode()
    return _len(len(data)) + data


_ts = struct.Struct(">iq").pack


def _timestamptz(v: Any) -> bytes:
    if type(v) is not datetime or v.tzinfo is None:
        raise TypeError("not an aware datetime")
    d = v - _EPOCH
    return _ts(8, (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds)


_f4 = struct.Struct(">if").pack
_ZEROS = (b"\x00\x00\x00\x00", b"\x80\x00\x00\x00")


def _float4(v: Any) -> bytes:
    if type(v) is not float:
        raise TypeError(type(v).__name__)
    data = _f4(4, v)  # struct.error when out of range
    if v and data[4:] in _ZEROS:
        raise ValueError("underflow")  # the reference refuses it with the reason
    return data


def _bool(v: Any) -> bytes:
    if v is True:
        return b"\x00\x00\x00\x01\x01"
    if v is False:
        return b"\x00\x00\x00\x01\x00"
    raise TypeError("not a bool")


FAST: Final[Mapping[str, Field]] = {
    "int2": _fixed("h", 2, int),
    "int4": _fixed("i", 4, int),
    "int8": _fixed("q", 8, int),
    "float8": _fixed("d", 8, float),
    "float4": _float4,
    "text": _text,
    "varchar": _text,
    "bpchar": _text,
    "name": _text,
    "citext": _text,
    "timestamptz": _timestamptz,
    "bool": _bool,
}
"""The types with a fast path; every other type uses its reference encoder plus a prefix."""


def prefixed(encode: Callable[[Any], bytes]) -> Field:
    """A reference encoder with the length prefix added."""

    def field(v: Any) -> bytes:
        data = encode(v)
        return _len(len(data)) + data

    return field


def row_encoder(fields: Sequence[Field], nullable: Sequence[bool]) -> Callable[[Any], bytes]:
    """One row (a tuple of ``len(fields)`` values) -> its COPY tuple; raises when unsure.

    Generated as straight-line code (one unpack, one ``join``): no per-value loop.  The
    source holds only indices, never a column name.
    """
    n = len(fields)
    names = [f"v{i}" for i in range(n)]
    parts = ["COUNT"]
    for i, null_ok in enumerate(nullable):
        call = f"f{i}(v{i})"  # a NOT NULL column's field raises on None: the reference says why
        parts.append(f"(NULL if v{i} is None else {call})" if null_ok else call)
    unpack = f"    {', '.join(names)}, = row\n" if n else "    if row: raise ValueError\n"
    source = f"def encode(row):\n{unpack}    return b''.join(({', '.join(parts)},))\n"
    scope: dict[str, Any] = {f"f{i}": f for i, f in enumerate(fields)}
    scope.update(COUNT=struct.pack(">h", n), NULL=NULL)
    exec(compile(source, "<pg row encoder>", "exec"), scope)
    encode: Callable[[Any], bytes] = scope["encode"]
    return encode
