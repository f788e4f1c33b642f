"""Row packing: lay per-row byte parts side by side and compress out the unused bytes.

The one vectorised primitive behind both wire encoders.  A row is a sequence of ``Part``s, each
a fixed-width byte matrix of which every row uses its first ``used[i]`` bytes (all of them when
``used`` is None).  ``pack_rows`` copies the parts into a ``(rows, total width)`` matrix, marks
the used bytes in a boolean matrix of the same shape and compresses: a row-major walk of the
used bytes is exactly the concatenation ``row0part0 row0part1 ... row1part0 ...``.

The matrix is filled a cache-sized block of rows at a time (column-wise strided writes over a
whole 5000-row batch fall out of L2 and cost several times as much per row), constant parts are
written once per call, and the compress writes straight into the output buffer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from async_etl.core.generators import I64, U8

_BLOCK_BYTES: Final = 128 * 1024


@dataclass(frozen=True, slots=True)
class Part:
    """Bytes of one piece of every row: ``data`` is (rows, width), or (width,) for all rows."""

    data: U8
    used: I64 | None = None  # bytes each row really has; None: all ``width``

    @property
    def width(self) -> int:
        """Bytes reserved per row."""
        return int(self.data.shape[-1])


def const(text: bytes, used: I64 | None = None) -> Part:
    """The same bytes on every row (``used`` may still shorten some rows)."""
    return Part(np.frombuffer(text, dtype=np.uint8), used)


def _merge_constants(parts: Sequence[Part]) -> list[Part]:
    """Fuse neighbouring fully-used constant parts (fewer strided copies per block)."""
    out: list[Part] = []
    for part in parts:
        prev = out[-1] if out else None
        if (
            prev is not None
            and prev.data.ndim == part.data.ndim == 1
            and prev.used is None
            and part.used is None
        ):
            out[-1] = Part(np.concatenate([prev.data, part.data]))
        else:
            out.append(part)
    return out


def pack_rows(parts: Sequence[Part], n: int, prefix: bytes, suffix: bytes) -> U8:
    """``prefix + row0 + row1 + ... + suffix`` as one uint8 array (rows of ``n``)."""
    parts = _merge_constants(parts)
    row_bytes = np.zeros(n, dtype=np.int64)
    for part in parts:
        row_bytes += part.width if part.used is None else part.used
    ends = np.cumsum(row_bytes)
    size = int(ends[-1]) if n else 0
    out = np.empty(len(prefix) + size + len(suffix), dtype=np.uint8)
    out[: len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
    out[len(prefix) + size :] = np.frombuffer(suffix, dtype=np.uint8)
    if n == 0:
        return out
    body = out[len(prefix) : len(prefix) + size]
    offsets = np.cumsum([0] + [p.width for p in parts]).tolist()
    total = offsets[-1]
    block = max(16, min(n, _BLOCK_BYTES // max(total, 1)))
    mat = np.empty((block, total), dtype=np.uint8)
    mask = np.ones((block, total), dtype=np.bool_)
    ramp = np.arange(max(total, 1))
    for part, start in zip(parts, offsets, strict=False):
        if part.data.ndim == 1:  # constant: written once for every block
            mat[:, start : start + part.width] = part.data
    variable = any(p.used is not None for p in parts)
    for a in range(0, n, block):
        b = min(n, a + block)
        m, k = mat[: b - a], mask[: b - a]
        for part, start in zip(parts, offsets, strict=False):
            stop = start + part.width
            if part.data.ndim == 2:
                m[:, start:stop] = part.data[a:b]
            if part.used is not None:
                k[:, start:stop] = ramp[: part.width] < part.used[a:b, None]
        lo, hi = (int(ends[a - 1]) if a else 0), int(ends[b - 1])
        if variable:
            np.compress(k.ravel(), m.ravel(), out=body[lo:hi])
        else:
            body[lo:hi] = m.ravel()
    return out
