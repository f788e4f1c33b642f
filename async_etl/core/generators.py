"""Vectorised, deterministic column generation: one numpy call per column, never per row.

Every column of a generated id range (a unit of work: one batch, or a group of small batches
cut from it afterwards) gets its own ``np.random.default_rng`` seeded with
``[seed, ids.start, ids.count, crc32(column name)]``: the output depends only on
(schema, seed, ids), two units never share a stream (forked workers cannot duplicate data),
and adding a column does not change the others.

Text is kept as a zero-padded byte matrix (``Text``): one row per record, ``lens`` bytes used.
Pooled text (names, cities, choices, JSON attrs) also keeps the pool and the row codes, so an
encoder that needs Python strings indexes an object array instead of decoding bytes.
"""

from __future__ import annotations

import unicodedata
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, cached_property
from itertools import combinations
from typing import Any, Final, TypeAlias

import numpy as np
import numpy.typing as npt
import orjson

from async_etl.core import _words
from async_etl.core.schema import Column, Schema, constant_text
from async_etl.core.seeding import PCG64State, Seeded, pcg64_states
from async_etl.typing import IdRange

U8: TypeAlias = npt.NDArray[np.uint8]
I64: TypeAlias = npt.NDArray[np.int64]
Mask: TypeAlias = npt.NDArray[np.bool_]

EPOCH_US: Final = 1_735_689_600_000_000
"""The fixed "now" of generated timestamps: 2025-01-01T00:00:00Z, in µs since 1970."""


class Pool:
    """A fixed list of strings as a zero-padded byte matrix, for vectorised gathers."""

    def __init__(self, values: Sequence[str]) -> None:
        """Encode ``values`` once; raises ``ValueError`` when the list is empty."""
        if not values:
            raise ValueError("a pool needs at least one value")
        raw = [v.encode() for v in values]
        self.values = tuple(values)
        self.lens: I64 = np.fromiter(map(len, raw), dtype=np.int64, count=len(raw))
        width = int(self.lens.max())
        self.mat: U8 = np.zeros((len(raw), width), dtype=np.uint8)
        if width:
            self.mat[_valid(self.lens, width)] = np.frombuffer(b"".join(raw), dtype=np.uint8)
        self.objects: npt.NDArray[np.object_] = np.empty(len(raw), dtype=object)
        self.objects[:] = self.values
        self.ascii = all(v.isascii() for v in self.values)

    @cached_property
    def fragments(self) -> npt.NDArray[np.object_]:
        """The values as ``orjson.Fragment`` objects (pre-serialised JSON), built on first use."""
        out = np.empty(len(self.values), dtype=object)
        out[:] = [orjson.Fragment(v) for v in self.values]
        return out

    def repeat(self, n: int) -> Text:
        """The first value on each of ``n`` rows, as a read-only broadcast (nothing copied)."""
        mat = np.broadcast_to(self.mat[0], (n, self.mat.shape[1]))
        codes = np.zeros(n, dtype=np.intp)
        return Text(mat, np.full(n, self.lens[0]), pool=self, codes=codes, ascii=self.ascii)

    @property
    def constant(self) -> bool:
        """True when the pool holds a single value (every row is the same)."""
        return len(self.values) == 1

    def take(self, codes: npt.NDArray[np.intp]) -> Text:
        """The strings at ``codes``, one per row."""
        return Text(self.mat[codes], self.lens[codes], pool=self, codes=codes, ascii=self.ascii)


@dataclass(frozen=True, slots=True, eq=False)
class Text:
    """Per-row strings: ``mat[i, :lens[i]]`` is the UTF-8 of row i; the rest of the row is 0."""

    mat: U8
    lens: I64
    pool: Pool | None = None
    codes: npt.NDArray[np.intp] | None = None
    ascii: bool = False
    json_safe: bool = False
    """ASCII with no byte JSON escapes (no quote, backslash or control character)."""

    @property
    def width(self) -> int:
        """Bytes per matrix row (the longest string)."""
        return int(self.mat.shape[1])

    def valid(self) -> Mask:
        """The (rows, width) mask of used bytes."""
        return _valid(self.lens, self.width)

    def flat(self) -> U8:
        """All rows' bytes concatenated."""
        return self.mat[self.valid()]

    def strings(self) -> list[str]:
        """The rows as Python strings."""
        if self.pool is not None and self.codes is not None:
            return list(self.pool.objects[self.codes].tolist())
        n, width = self.mat.shape
        if width == 0:
            return [""] * n
        if self.ascii:  # numpy strips the zero padding and decodes ASCII in C
            return list(self.mat.view(f"S{width}").ravel().astype(f"U{width}").tolist())
        data = self.flat().tobytes()
        ends = np.cumsum(self.lens).tolist()
        return [data[a:b].decode() for a, b in zip([0, *ends[:-1]], ends, strict=True)]

    @classmethod
    def from_flat(cls, flat: U8, lens: I64, *, ascii: bool) -> Text:
        """Pad concatenated bytes ``flat`` (row i has ``lens[i]`` bytes) into a matrix."""
        width = int(lens.max()) if lens.size else 0
        mat = np.zeros((lens.size, width), dtype=np.uint8)
        if width:
            mat[_valid(lens, width)] = flat
        return cls(mat, lens, ascii=ascii)


Values: TypeAlias = "npt.NDArray[Any] | Text"
"""One column of a batch: int64/int32/float64/bool/µs-int64 arrays, (n, 16) uuid bytes, or text."""


@dataclass(frozen=True, slots=True, eq=False)
class Columns:
    """A generated batch, column-major: values and NULL masks (None: no NULLs) per column."""

    ids: IdRange
    values: tuple[Values, ...]
    nulls: tuple[Mask | None, ...]

    def __len__(self) -> int:
        """Rows in the batch."""
        return self.ids.count

    def part(self, offset: int, count: int) -> Columns:
        """Rows ``offset .. offset + count`` as a batch of their own (views, nothing copied).

        Text keeps the whole batch's matrix width; every encoder reads only ``lens`` bytes of a
        row, so a part encodes exactly as the same rows generated with that width would.
        Raises ``ValueError`` when the rows are not all inside the batch.
        """
        if offset < 0 or count < 0 or offset + count > self.ids.count:
            raise ValueError(f"rows {offset}+{count} are not inside a batch of {self.ids.count}")
        end = offset + count
        return Columns(
            IdRange(self.ids.start + offset, count),
            tuple(_rows_of(v, offset, end) for v in self.values),
            tuple(None if m is None else m[offset:end] for m in self.nulls),
        )


def _rows_of(values: Values, start: int, end: int) -> Values:
    if isinstance(values, Text):
        codes = None if values.codes is None else values.codes[start:end]
        return Text(
            values.mat[start:end],
            values.lens[start:end],
            pool=values.pool,
            codes=codes,
            ascii=values.ascii,
            json_safe=values.json_safe,
        )
    return values[start:end]


def _valid(lens: I64, width: int) -> Mask:
    return np.arange(width) < lens[:, None]


def compose(parts: Sequence[Text]) -> Text:
    """Concatenate texts row by row (``a[i] + b[i] + ...``) without a per-row loop."""
    mat = np.concatenate([p.mat for p in parts], axis=1)
    mask = np.concatenate([p.valid() for p in parts], axis=1)
    lens = np.zeros(mat.shape[0], dtype=np.int64)
    for part in parts:
        lens += part.lens
    text = Text.from_flat(mat[mask], lens, ascii=all(p.ascii for p in parts))
    if all(p.json_safe for p in parts):
        return Text(text.mat, text.lens, ascii=True, json_safe=True)
    return text


def digits(values: I64) -> Text:
    """Non-negative integers as decimal ASCII text."""
    width = len(str(int(values.max()))) if values.size else 1
    pow10 = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    mat = ((values[:, None] // pow10) % 10 + 48).astype(np.uint8)  # right-aligned, 0-filled
    ndig: I64 = (values[:, None] >= pow10[:-1]).sum(axis=1, dtype=np.int64) + 1
    used = np.arange(width) >= width - ndig[:, None]
    return Text.from_flat(mat[used], ndig, ascii=True)


_UUID_POS: Final = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])
_UUID_ROW: Final = np.frombuffer(b"-" * 36, dtype=np.uint8)
_QUOTED_UUID_ROW: Final = np.frombuffer(b'"' + b"-" * 36 + b'"', dtype=np.uint8)


def uuid_hex(raw: U8, *, quoted: bool = False) -> U8:
    """(n, 16) uuid bytes -> (n, 36) ASCII ``8-4-4-4-12`` lowercase hex.

    ``quoted``: (n, 38), each row a JSON string (the hex between double quotes).  The hex
    digits come from one ``bytes.hex()`` of the whole block (a few numpy calls, not one per
    nibble step: at 100 rows the calls, not the bytes, are the cost).
    """
    n = raw.shape[0]
    row = _QUOTED_UUID_ROW if quoted else _UUID_ROW
    out = np.empty((n, len(row)), dtype=np.uint8)
    out[:] = row
    digits = np.frombuffer(raw.tobytes().hex().encode("ascii"), dtype=np.uint8)
    out[:, _UUID_POS + 1 if quoted else _UUID_POS] = digits.reshape(n, 32)
    return out


@cache
def pool_of(values: tuple[str, ...]) -> Pool:
    """The ``Pool`` of ``values``, built once per distinct tuple (cached)."""
    return Pool(values)


def _ascii(word: str) -> str:
    plain = unicodedata.normalize("NFKD", word).encode("ascii", "ignore").decode()
    return "".join(ch for ch in plain.lower() if ch.isalnum())


@cache
def _named_pool(kind: str) -> Pool:
    first, last = _words.FIRST_NAMES, _words.LAST_NAMES
    if kind == "name":
        return Pool([f"{f} {la}" for f in first for la in last])
    if kind == "email_local":
        return Pool([f"{_ascii(f)}.{_ascii(la)}" for f in first for la in last])
    if kind == "email_domain":
        return Pool([f"@{d}" for d in _words.EMAIL_DOMAINS])
    if kind == "city":
        return Pool(_words.CITIES)
    if kind == "json":  # every combination, so picking one uniformly varies all fields
        tags = [list(c) for k in range(4) for c in combinations(_words.JSON_TAGS, k)]
        return Pool(
            [
                orjson.dumps({"source": s, "score": score, "tags": t}).decode()
                for s in _words.JSON_SOURCES
                for score in range(101)
                for t in tags
            ]
        )
    raise ValueError(f"no pool named {kind!r}")


_LETTER_TABLE: Final = (_words.LETTERS * 5)[:256]
"""Random byte b -> letter ``LETTERS[b % 52]``, as a ``bytes.translate`` table."""

BLOCK_BYTES: Final = 1 << 17
"""Bytes per cache-sized step of letters generation and of JSON quoting (128 KiB).

A 5,000-row batch of 2,000-byte rows is 10 MB per array; several such arrays per batch left
every pass in main memory, which two generator processes then shared (issue 12, RESULTS.md
"CPU-heavy rows in cache-sized blocks").  A multiple of 8: every step draws whole 64-bit words.
"""


def random_bytes(rng: np.random.Generator, length: int) -> bytes:
    """Exactly ``rng.bytes(length)``, leaving ``rng`` in the same state, with fewer copies.

    ``Generator.bytes`` draws ceil(length / 4) 32-bit words (PCG64, the bit generator of
    ``default_rng``, serves the low then the high half of each 64-bit output), then copies them
    twice.  The raw 64-bit outputs in little-endian order are those bytes; an odd last word is
    drawn through ``integers`` so that its unused high half stays buffered as before (numpy
    draws one word for ``length`` 0 too).  Calls whose lengths are positive multiples of 8
    therefore concatenate to one call's bytes.
    """
    words = max(1, -(-length // 4))
    data = rng.bit_generator.random_raw(words // 2).astype("<u8", copy=False).tobytes()
    if words % 2:
        data += rng.integers(0, 2**32, size=1, dtype=np.uint32).astype("<u4").tobytes()
    return data[:length]


def _letters(rng: np.random.Generator, n: int, lo: int, hi: int) -> Text:
    """Random ASCII letters, ``lo..hi`` bytes per row.

    The random bytes are drawn and mapped in ``BLOCK_BYTES`` steps, so only the letter matrix
    itself leaves the cache; the bytes equal one ``rng.bytes(n * hi)`` mapped at once.
    """
    mat = np.empty((n, hi), dtype=np.uint8)
    flat = mat.reshape(-1)
    for start in range(0, max(flat.size, 1), BLOCK_BYTES):  # an empty matrix draws too
        block = random_bytes(rng, min(BLOCK_BYTES, flat.size - start))
        flat[start : start + len(block)] = np.frombuffer(
            block.translate(_LETTER_TABLE), dtype=np.uint8
        )
    if lo == hi:
        return Text(mat, np.full(n, hi, dtype=np.int64), ascii=True, json_safe=True)
    lens = rng.integers(lo, hi, size=n, endpoint=True, dtype=np.int64)
    mat[~_valid(lens, hi)] = 0
    return Text(mat, lens, ascii=True, json_safe=True)


def _uuids(rng: np.random.Generator, n: int) -> U8:
    raw = np.frombuffer(rng.bytes(16 * n), dtype=np.uint8).reshape(n, 16).copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    return raw


def _column(col: Column, ids: IdRange, rng: np.random.Generator) -> Values:
    """Generate one column of ``ids.count`` values."""
    n, gen = ids.count, col.gen
    if gen == "sequence":
        return np.arange(ids.start, ids.stop, dtype=np.int64)
    if gen == "uuid":
        raw = _uuids(rng, n)
        if col.type == "uuid":
            return raw
        return Text(uuid_hex(raw), np.full(n, 36, dtype=np.int64), ascii=True)
    if gen == "int":
        lo, hi = col.param("min", 0), col.param("max", 1000)
        ints = rng.integers(lo, hi, size=n, endpoint=True, dtype=np.int64)
        return ints.astype(np.int32) if col.type == "int" else ints
    if gen == "uniform":
        lo_f, hi_f = float(col.param("min", 0.0)), float(col.param("max", 10000.0))
        return np.round(rng.uniform(lo_f, hi_f, size=n), col.param("decimals", 2))
    if gen == "choice":
        choices: tuple[Any, ...] = col.param("values", ())
        codes = rng.integers(0, len(choices), size=n)
        if col.type == "text":
            return pool_of(choices).take(codes)
        dtype = {"int": np.int32, "bigint": np.int64, "double": np.float64}[col.type]
        return np.array(choices, dtype=dtype)[codes]
    if gen == "text":
        return _letters(rng, n, col.param("min_len", 5), col.param("max_len", 40))
    if gen == "constant":
        return pool_of((constant_text(col),)).repeat(n)
    if gen in ("name", "city", "json"):
        pool = _named_pool(gen)
        return pool.take(rng.integers(0, len(pool.values), size=n))
    if gen == "email":
        local, domain = _named_pool("email_local"), _named_pool("email_domain")
        return compose(
            [
                local.take(rng.integers(0, len(local.values), size=n)),
                digits(np.arange(ids.start, ids.stop, dtype=np.int64) % 10**18),
                domain.take(rng.integers(0, len(domain.values), size=n)),
            ]
        )
    if gen == "timestamp":
        span_ms = max(1, int(float(col.param("days", 365)) * 86_400_000))
        return EPOCH_US - rng.integers(0, span_ms, size=n, dtype=np.int64) * 1000
    if gen == "bool":
        return rng.random(n) < float(col.param("p", 0.5))
    raise ValueError(f"column {col.name!r}: no generator {gen!r}")  # Schema validated it


def column_key(seed: int, ids: IdRange, name: str) -> tuple[int, int, int, int]:
    """The seed key of one column of one batch (what ``column_rng`` seeds ``default_rng`` with)."""
    return seed % 2**64, ids.start % 2**64, ids.count, zlib.crc32(name.encode())


def column_rng(seed: int, ids: IdRange, name: str) -> np.random.Generator:
    """The random stream of one column of one batch."""
    return np.random.default_rng(column_key(seed, ids, name))


def column_states(schema: Schema, ids: IdRange, seed: int) -> list[PCG64State]:
    """The states of ``ids``' column generators (``column_rng``'s), one per column, in order.

    Seeded together by ``core.seeding`` (one pass over the columns' keys) instead of one
    ``column_rng`` each; the states are the same.
    """
    return pcg64_states([column_key(seed, ids, col.name) for col in schema.columns])


def generate_columns(schema: Schema, ids: IdRange, seed: int) -> Columns:
    """Generate the id range ``ids`` of ``schema``; the result depends only on ``ids`` and ``seed``.

    Each column draws from ``column_rng(seed, ids, name)``, seeded through ``column_states``
    and one re-seeded ``Generator`` (``core.seeding.Seeded``).
    """
    states = column_states(schema, ids, seed)
    seeded = Seeded()
    values: list[Values] = []
    nulls: list[Mask | None] = []
    for col, state in zip(schema.columns, states, strict=True):
        rng = seeded.at(state)
        values.append(_column(col, ids, rng))
        p = col.null_fraction
        nulls.append(rng.random(ids.count) < p if p > 0 else None)
    return Columns(ids, tuple(values), tuple(nulls))
