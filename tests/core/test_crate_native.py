"""The CrateDB column-at-a-time check and the bulk body built a slice at a time."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import orjson
from hypothesis import given
from hypothesis import strategies as st

from async_etl.core import crate_native
from async_etl.core.exact import crate_row_check

_values = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    st.text(max_size=5),
    st.datetimes(timezones=st.just(UTC)),
)
_rows = st.lists(st.tuples(_values, _values), max_size=30)


@given(_rows, st.integers(min_value=1, max_value=40))
def test_the_body_built_in_slices_is_the_body_dumped_at_once(
    rows: list[tuple[object, object]], every: int
) -> None:
    """``body_parts`` joined is byte for byte ``orjson.dumps`` of the whole bulk body."""
    try:
        whole = crate_native.bulk_body("INSERT INTO t (a, b) VALUES (?, ?)", rows)
    except TypeError:
        return
    parts = crate_native.body_parts("INSERT INTO t (a, b) VALUES (?, ?)", rows, every)
    assert (
        b"".join(parts)
        == whole
        == orjson.dumps({"stmt": "INSERT INTO t (a, b) VALUES (?, ?)", "bulk_args": rows})
    )


@given(_rows)
def test_a_batch_that_passes_has_no_row_the_row_check_refuses(
    rows: list[tuple[object, object]],
) -> None:
    """``plain`` True means the row-by-row check refuses none of the rows."""
    types = ("double precision", "text")
    check = crate_row_check(("a", "b"), types)
    if crate_native.plain(rows, ("double precision", "text")):
        assert not any(check(row) for row in rows)


def test_sub_millisecond_times_and_non_finite_floats_fail_the_check() -> None:
    """A microsecond time or a NaN makes the batch go row by row."""
    at = datetime(2024, 1, 1, tzinfo=UTC)
    assert crate_native.plain([(1, at)], ("bigint", "timestamp with time zone"))
    odd = at.replace(microsecond=1)
    assert not crate_native.plain([(1, at), (2, odd)], ("bigint", "timestamp with time zone"))
    assert not crate_native.plain([(math.nan, "x")], ("double precision", "text"))


_floats = st.one_of(st.floats(), st.floats(min_value=1e300), st.floats(max_value=-1e300), st.none())


@given(st.lists(_floats, min_size=1, max_size=30), st.sampled_from(["double precision", "real"]))
def test_a_float_column_passes_exactly_when_every_value_is_finite(
    column: list[float | None], base: str
) -> None:
    """The summed finiteness check answers as a check of each value (overflowing sums too)."""
    rows = [(v,) for v in column]
    floats = [v for v in column if v is not None]
    expected = not floats or (base != "real" and all(map(math.isfinite, floats)))
    assert crate_native.plain(rows, (base,)) == expected
