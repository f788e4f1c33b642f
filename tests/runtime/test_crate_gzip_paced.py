"""Gzipping a large CrateDB body in the event loop, a slice at a time."""

from __future__ import annotations

import gzip

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st

from async_etl.drivers.cratedb import _GZIP_SLICE, gzip_paced

_sizes = st.sampled_from([0, 1, _GZIP_SLICE - 1, _GZIP_SLICE, _GZIP_SLICE + 1, 3 * _GZIP_SLICE])


@settings(max_examples=30, deadline=None)
@given(size=_sizes, seed=st.binary(min_size=1, max_size=64))
def test_the_paced_stream_decompresses_to_the_body(size: int, seed: bytes) -> None:
    """``gzip_paced`` gives a gzip stream of exactly the body, for any body size."""
    body = (seed * (size // len(seed) + 1))[:size]
    assert gzip.decompress(anyio.run(gzip_paced, body)) == body
