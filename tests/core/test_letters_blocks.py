"""Letters drawn and quoted in cache-sized blocks: the same bytes as one whole-batch draw."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from async_etl.core import _words
from async_etl.core.encoders import json_string_fragments
from async_etl.core.generators import (
    BLOCK_BYTES,
    Text,
    column_rng,
    generate_columns,
    random_bytes,
)
from async_etl.core.schema import Schema, column
from async_etl.typing import IdRange

seeds = st.integers(0, 2**64 - 1)
_LUT = np.frombuffer((_words.LETTERS * 5)[:256], dtype=np.uint8)

# widths around the block size and its divisors, so that blocks end mid-row and at row ends
widths = st.sampled_from(
    [0, 1, 3, 8, 1000, 2000, BLOCK_BYTES // 4, BLOCK_BYTES - 1, BLOCK_BYTES + 3]
)


def _reference_letters(
    rng: np.random.Generator, n: int, lo: int, hi: int
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """Letters as generated before blocks: one ``rng.bytes`` call for the whole batch."""
    mat = _LUT[np.frombuffer(rng.bytes(n * hi), dtype=np.uint8).reshape(n, hi)]
    if lo == hi:
        return mat, np.full(n, hi, dtype=np.int64)
    lens = rng.integers(lo, hi, size=n, endpoint=True, dtype=np.int64)
    mat[np.arange(hi) >= lens[:, None]] = 0
    return mat, lens


def _next_draws(rng: np.random.Generator) -> list[float]:
    """What a generator yields next through its buffered 32-bit path and its 64-bit path."""
    return [*rng.integers(0, 2**32, size=3, dtype=np.uint32).tolist(), *rng.random(2).tolist()]


@given(length=st.integers(0, 200), seed=seeds)
def test_random_bytes_equal_generator_bytes(length: int, seed: int) -> None:
    """random_bytes returns rng.bytes' bytes and leaves the generator where rng.bytes does."""
    ours, numpys = np.random.default_rng(seed), np.random.default_rng(seed)
    assert random_bytes(ours, length) == numpys.bytes(length)
    assert _next_draws(ours) == _next_draws(numpys)


@given(
    hi=widths,
    shrink=st.integers(0, 5),
    blocks=st.floats(0, 3.5),
    nullable=st.sampled_from([0.0, 0.4]),
    seed=seeds,
)
@settings(max_examples=40, deadline=None)
def test_letters_equal_one_whole_batch_draw(
    hi: int, shrink: int, blocks: float, nullable: float, seed: int
) -> None:
    """A letters column spanning block boundaries equals the whole-batch draw, NULL mask too."""
    lo = max(0, hi - shrink)
    count = int(blocks * BLOCK_BYTES / max(hi, 1)) if hi else int(blocks * 10)
    params: dict[str, object] = {"min_len": lo, "max_len": hi}
    if nullable:
        params["nullable"] = nullable
    schema = Schema((column("id", "bigint", "sequence"), column("note", "text", "text", **params)))
    ids = IdRange(11, count)
    cols = generate_columns(schema, ids, seed)
    rng = column_rng(seed, ids, "note")
    mat, lens = _reference_letters(rng, count, lo, hi)
    text = cols.values[1]
    assert isinstance(text, Text)
    assert np.array_equal(text.mat, mat) and np.array_equal(text.lens, lens)
    expected_nulls = rng.random(count) < nullable if nullable else None
    got_nulls = cols.nulls[1]
    if expected_nulls is None:
        assert got_nulls is None
    else:
        assert got_nulls is not None and np.array_equal(got_nulls, expected_nulls)


@given(
    rows=st.lists(st.integers(0, 3000), min_size=50, max_size=120),
    seed=seeds,
)
@settings(max_examples=20, deadline=None)
def test_fragments_across_block_boundaries(rows: list[int], seed: int) -> None:
    """Quoting in blocks of rows gives each row's JSON string when a batch spans many blocks."""
    lens = np.array([*rows, 3000], dtype=np.int64)  # at least 51 rows of a 3,000-byte matrix
    flat = _LUT[np.frombuffer(np.random.default_rng(seed).bytes(int(lens.sum())), dtype=np.uint8)]
    text = Text.from_flat(flat, lens, ascii=True)
    assert text.mat.size > BLOCK_BYTES
    data = flat.tobytes()
    ends = np.cumsum(lens).tolist()
    strings = [data[a:b].decode() for a, b in zip([0, *ends[:-1]], ends, strict=True)]
    assert orjson.dumps(json_string_fragments(text)) == orjson.dumps(strings)
