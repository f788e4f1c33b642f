"""Chunk planning, exact plan serialisation and the checkpoint watermark."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from ipaddress import IPv4Interface, IPv4Network, IPv6Address, IPv6Network
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from async_etl.core.chunks import (
    Chunk,
    ChunkPlan,
    Key,
    Watermark,
    advance,
    chunk_count,
    chunk_sizing,
    estimate_parallel,
    plan_chunks,
    remaining,
    row_in_chunk,
    sample_percent,
    workers,
)
from async_etl.core.specs import ParallelSpec
from async_etl.errors import DataError

keys2 = st.tuples(st.integers(-5, 5), st.text("abc", max_size=2))


@given(st.lists(keys2, max_size=8), st.lists(keys2, min_size=1, max_size=30))
def test_chunks_partition_key_space(bounds: list[tuple[int, str]], keys: list[tuple[int, str]]):
    """Every composite key falls in exactly one chunk, and chunk_for finds that one."""
    plan = plan_chunks(sorted(bounds))
    for key in keys:
        holding = [c for c in plan.chunks if row_in_chunk(key, c)]
        assert len(holding) == 1
        assert plan.chunk_for(key) == holding[0]


@given(st.lists(st.integers(), max_size=10))
def test_plan_shape(bounds: list[int]):
    """Sorted boundaries are de-duplicated; first chunk open below, last open above."""
    plan = plan_chunks([(b,) for b in sorted(bounds)])
    assert len(plan) == len(set(bounds)) + 1
    assert plan.chunks[0].lower is None and plan.chunks[-1].upper is None
    assert [c.index for c in plan.chunks] == list(range(len(plan)))
    for a, b in zip(plan.chunks, plan.chunks[1:], strict=False):
        assert a.upper == b.lower


scalar = st.one_of(
    st.integers(-(2**70), 2**70),
    st.text(max_size=5),
    st.decimals(allow_nan=False, allow_infinity=False, places=3),
    st.dates(),
    st.datetimes(timezones=st.just(UTC)),
    st.datetimes(),
)


@given(st.lists(st.tuples(scalar), max_size=6))
def test_plan_json_round_trip_is_exact(bounds: list[tuple[object]]):
    """A stored plan reads back equal, with the same value types (through real JSON text)."""
    plan = plan_chunks(bounds)
    back = ChunkPlan.from_json(json.loads(json.dumps(plan.to_json())))
    assert back == plan
    for a, b in zip(back.chunks, plan.chunks, strict=True):
        for x, y in zip(a.lower or (), b.lower or (), strict=True):
            assert type(x) is type(y) and str(x) == str(y)


def test_decimal_scale_and_aware_datetime_survive():
    """Decimal('1.50') keeps its scale and a +02:00 datetime keeps its offset."""
    tz = datetime(2024, 1, 1, 12, tzinfo=UTC).astimezone().tzinfo
    bound = (Decimal("1.50"), datetime(2024, 1, 1, 12, tzinfo=tz), date(2024, 2, 29))
    back = ChunkPlan.from_json(json.loads(json.dumps(plan_chunks([bound]).to_json())))
    assert str(back.chunks[1].lower[0]) == "1.50"  # type: ignore[index]
    assert back.chunks[1].lower == bound


def test_from_json_rejects_gaps():
    """A plan whose chunks do not meet end to start is refused."""
    data = plan_chunks([(1,), (2,)]).to_json()
    data["chunks"][1]["upper"] = [["int", "3"]]
    with pytest.raises(ValueError, match="does not end"):
        ChunkPlan.from_json(data)


def test_null_keys_rejected():
    """A key with a NULL part raises DataError instead of silently landing somewhere."""
    chunk = Chunk(0, None, None)
    with pytest.raises(DataError, match="NULL"):
        row_in_chunk((1, None), chunk)
    with pytest.raises(ValueError, match="NULL"):
        plan_chunks([(None,)])


def test_mixed_width_boundaries_rejected():
    """Boundary tuples of different lengths are refused."""
    with pytest.raises(ValueError, match="same"):
        plan_chunks([(1,), (1, 2)])


def test_parallel_decision_and_counts():
    """Parallel needs enabled + estimate >= threshold; chunk count is ceil(rows / chunk_size)."""
    spec = ParallelSpec(enabled=True, max_workers=3, chunk_size=100, min_rows_for_parallel=1000)
    assert estimate_parallel(1000, spec) and not estimate_parallel(999, spec)
    assert not estimate_parallel(10**6, ParallelSpec(enabled=False))
    assert not estimate_parallel(-1, ParallelSpec(min_rows_for_parallel=0))
    sized = chunk_sizing(1001, spec, kept="a merge")
    assert chunk_count(1001, sized) == 11
    assert chunk_count(0, sized) == 1 and chunk_count(-1, sized) == 1
    assert workers(5000, spec) == 3 and workers(10, spec) == 1


@given(st.integers(1, 30), st.data())
def test_watermark_never_passes_uncommitted(total: int, data: st.DataObject):
    """Committing chunks in any order, the watermark only covers committed chunks, and grows."""
    order = data.draw(st.permutations(range(total)))
    mark = Watermark(total)
    done: set[int] = set()
    for idx in order:
        done.add(idx)
        new = mark.advance(done)
        assert new.value >= mark.value
        assert all(i in done for i in range(new.value + 1))
        assert new.value + 1 == total or new.value + 1 not in done
        mark = new
    assert mark.complete


def test_advance_and_remaining():
    """advance stops at the first gap; remaining lists the uncommitted chunks in key order."""
    assert advance(set()) == -1
    assert advance({0, 1, 3}) == 1
    plan = plan_chunks([(10,), (20,), (30,)])
    assert [c.index for c in remaining(plan, {0, 2})] == [1, 3]


def test_time_bounds():
    """Datetime keys partition correctly at a boundary (lower inclusive, upper exclusive)."""
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    plan = plan_chunks([(t0,)])
    assert plan.chunk_for((t0,)).index == 1
    assert plan.chunk_for((t0 - timedelta(microseconds=1),)).index == 0


alphabet = "aAbBmMzZéÉßäÄ0"
collations = st.permutations(alphabet).map(lambda p: {ch: i for i, ch in enumerate(p)})
text_keys = st.text(alphabet, min_size=1, max_size=3)


def _sort_key(rank: dict[str, int]) -> Callable[[Key], Any]:
    """The Python sort key of a collation that ranks single characters by ``rank``."""
    return lambda key: tuple(tuple(rank[ch] for ch in v) if isinstance(v, str) else v for v in key)


@given(
    collations,
    st.lists(st.tuples(text_keys, st.integers(0, 3)), min_size=1, max_size=40, unique=True),
    st.data(),
)
def test_planner_keeps_source_order_and_chunks_partition(
    rank: dict[str, int], keys: list[tuple[str, int]], data: st.DataObject
):
    """Cuts in any collation's order stay in that order; chunks partition the keys in order."""
    order = _sort_key(rank)
    ordered = sorted(keys, key=order)
    picks = sorted(data.draw(st.sets(st.integers(0, len(ordered) - 1), max_size=6)))
    cuts = [ordered[i] for i in picks]
    plan = plan_chunks(cuts, collate=("und-x-icu", None))
    assert [c.lower for c in plan.chunks[1:]] == cuts
    assert {c.collate for c in plan.chunks} == {("und-x-icu", None)}
    read: list[tuple[str, int]] = []
    for chunk in plan.chunks:
        inside = [k for k in ordered if row_in_chunk(k, chunk, order)]
        read += inside
        assert all(plan.chunk_for(k, order) == chunk for k in inside)
    assert read == ordered


def test_planner_does_not_resort_in_code_point_order():
    """Cuts in ICU order (m00101 < M00201 < m00301) are kept, not re-sorted by code point."""
    cuts = [("m00101",), ("M00201",), ("m00301",)]
    plan = plan_chunks(cuts, collate=("en-x-icu",))
    assert [c.lower for c in plan.chunks[1:]] == cuts
    assert [c.upper for c in plan.chunks[:-1]] == cuts


def test_collate_survives_json_and_must_agree():
    """A plan's collations round-trip through JSON; chunks cut in different ones are refused."""
    plan = plan_chunks([("b", 1)], collate=("en-x-icu", None))
    back = ChunkPlan.from_json(json.loads(json.dumps(plan.to_json())))
    assert back == plan and back.collate == ("en-x-icu", None)
    legacy = plan_chunks([("b", 1)]).to_json()
    assert "collate" not in legacy["chunks"][0]
    assert ChunkPlan.from_json(legacy).collate == ()
    mixed = plan.to_json()
    mixed["chunks"][1]["collate"] = ["C", None]
    with pytest.raises(ValueError, match="different collations"):
        ChunkPlan.from_json(mixed)
    with pytest.raises(ValueError, match="collations for a key"):
        plan_chunks([("b", 1)], collate=("C",))


def test_interval_network_and_array_bounds_survive_json():
    """interval, inet, cidr and array key values are stored bounds that read back equal."""
    bounds = [
        (timedelta(days=32, microseconds=7), IPv4Interface("10.0.0.1/8"), IPv6Network("::/64"),
         [1, None]),
        (timedelta(days=40), IPv6Address("::2"), IPv4Network("10.1.0.0/16"), [3, [4]]),
    ]  # fmt: skip
    plan = plan_chunks(bounds)
    back = ChunkPlan.from_json(json.loads(json.dumps(plan.to_json())))
    assert back == plan
    for got, want in zip(back.chunks[1].lower or (), bounds[0], strict=True):
        assert type(got) is type(want) and got == want


def test_nan_bounds_read_back_as_a_covering_plan():
    """A plan cut at NaN keys (float and numeric) reads back: NaN meets NaN end to start."""
    plan = plan_chunks([(float("nan"), 1), (float("nan"), 5), (2, Decimal("NaN"))])
    back = ChunkPlan.from_json(json.loads(json.dumps(plan.to_json())))
    assert len(back) == 4 and math.isnan(back.chunks[1].lower[0])  # type: ignore[index]
    assert back.chunks[3].lower[1].is_nan()  # type: ignore[index]


def test_sample_percent_only_for_large_tables():
    """Large tables are cut from a block sample of at least SAMPLE_ROWS rows; small ones whole."""
    assert sample_percent(1_000_000, 20) == 5.0
    assert sample_percent(3_000_000, 60) == 2.0
    assert sample_percent(10_000_000, 200) == 2.0  # 1,000 sampled rows per chunk
    assert sample_percent(99_999, 2) is None
    assert sample_percent(-1, 20) is None
    assert sample_percent(10_000_000, 1) is None
