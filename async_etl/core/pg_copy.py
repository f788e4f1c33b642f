"""A binary COPY payload taken apart into its rows, and a payload of some of them (pure).

The format: ``PG_COPY_HEADER`` (signature, flags, a header extension), then per row an int16
field count and per field an int32 length (-1 for NULL) and that many bytes, then the int16 -1
trailer.  The writer uses this to COPY part of a refused batch again (``sinks.postgres_rows``).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from async_etl.core.encoders import PG_COPY_HEADER, PG_COPY_TRAILER

__all__ = ["copy_payload", "copy_rows"]

_SIGNATURE = PG_COPY_HEADER[:11]


def copy_rows(payload: bytes) -> list[bytes]:
    """Each row's bytes (field count and fields), in order.

    Raises ``ValueError`` when ``payload`` is not a binary COPY payload.
    """
    if not payload.startswith(_SIGNATURE) or len(payload) < 19:
        raise ValueError("not a binary COPY payload: bad signature")
    (extension,) = struct.unpack_from(">i", payload, 15)
    pos = 19 + extension
    rows: list[bytes] = []
    try:
        while True:
            (fields,) = struct.unpack_from(">h", payload, pos)
            if fields == -1:
                break
            start, pos = pos, pos + 2
            for _ in range(fields):
                (size,) = struct.unpack_from(">i", payload, pos)
                pos += 4 + max(size, 0)
            if pos > len(payload):
                raise ValueError("not a binary COPY payload: a row runs past the end")
            rows.append(payload[start:pos])
    except struct.error as exc:
        raise ValueError(f"not a binary COPY payload: {exc}") from exc
    return rows


def copy_payload(rows: Iterable[bytes]) -> bytes:
    """A binary COPY payload of ``rows`` (as ``copy_rows`` returns them)."""
    return b"".join((PG_COPY_HEADER, *rows, PG_COPY_TRAILER))
