"""When a key's histogram may cut the chunks, and which cuts it gives (``core.key_stats``)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from async_etl.core.chunks import plan_chunks, row_in_chunk
from async_etl.core.key_stats import (
    STALE_SHARE,
    KeyStats,
    from_sample,
    from_stats,
    histogram_cuts,
    stats_refusal,
)

BOUNDS = tuple(str(i * 10_000) for i in range(101))  # 100 buckets over 0..1,000,000
FRESH = KeyStats("r", False, 1_000_000.0, 0, BOUNDS, 0.0, "bigint")


def test_fresh_statistics_of_a_plain_table_may_cut():
    """A plain table analyzed with nothing changed since: its histogram cuts the chunks."""
    assert stats_refusal(FRESH, 4, 1_000_000) is None
    assert stats_refusal(replace(FRESH, modified=100_000), 4, 1_050_000) is None  # at the line


def test_stale_or_unfit_statistics_are_refused_with_a_reason():
    """Changed rows, growth, common values, few buckets, other relations: each says why."""
    cases = {
        "stale: 100,001 rows changed": (replace(FRESH, modified=100_001), 4, 1_000_000),
        "stale: about 1,200,000 rows now": (FRESH, 4, 1_200_000),
        "stale: about 800,000 rows now": (FRESH, 4, 800_000),
        "no count of rows changed": (replace(FRESH, modified=None), 4, 1_000_000),
        "common values": (replace(FRESH, mcv_share=0.5), 4, 1_000_000),
        "100 histogram bucket(s) for 101 chunks": (FRESH, 101, 1_000_000),
        "no histogram": (replace(FRESH, bounds=None), 4, 1_000_000),
        "no row count": (replace(FRESH, reltuples=-1.0), 4, 1_000_000),
        "not a plain table": (replace(FRESH, relkind="p"), 4, 1_000_000),
        "without children": (replace(FRESH, children=True), 4, 1_000_000),
    }
    for expect, (stats, n, estimate) in cases.items():
        why = stats_refusal(stats, n, estimate)
        assert why is not None and expect in why, (expect, why)
    assert "several columns" in (stats_refusal(FRESH, 4, 1_000_000, key_columns=2) or "")
    assert STALE_SHARE == 0.1


def test_no_relation_reads_as_no_statistics():
    """No catalog row: refused, and not sampleable (a view or nothing: read every row)."""
    stats = KeyStats.from_row(None)
    assert stats_refusal(stats, 4, 10) is not None and not stats.sampleable
    assert KeyStats.from_row(("v", False, 5.0, 0, None, None, "int")).sampleable is False
    assert KeyStats.from_row(("m", False, 5.0, 0, None, None, "int")).sampleable is True


def test_histogram_cuts_are_equi_depth_picks():
    """Four chunks of a 100-bucket histogram cut at bounds 25, 50 and 75."""
    ordered = [(i + 1, i * 10) for i in range(101)]
    assert histogram_cuts(ordered, 4) == [(250,), (500,), (750,)]
    assert histogram_cuts(ordered, 1) == []
    assert histogram_cuts(ordered, 100) == [(i * 10,) for i in range(1, 100)]


def test_histogram_in_another_order_is_refused():
    """Bounds that the chunk collation sorts otherwise than the histogram: no cuts (sample)."""
    assert histogram_cuts([(1, "M1"), (3, "a"), (2, "m2")], 2) is None


@given(st.lists(st.integers(-50, 50), min_size=2, max_size=60), st.integers(1, 80),
       st.lists(st.integers(-100, 100), max_size=80))  # fmt: skip
def test_any_histogram_plans_every_key_into_one_chunk(bounds, n, keys):
    """Whatever the bounds (stale, repeated, off the data): every key lands in one chunk."""
    ordered = list(enumerate(sorted(bounds), start=1))
    cuts = histogram_cuts(ordered, min(n, len(bounds) - 1))
    assert cuts is not None
    plan = plan_chunks(cuts)
    assert plan.chunks[0].lower is None and plan.chunks[-1].upper is None
    for k in keys:
        assert sum(row_in_chunk((k,), c) for c in plan.chunks) == 1


def test_cut_sources_say_where_they_came_from():
    """The phrases ``check`` prints: the statistics, a sample with the refusal, every row."""
    assert from_stats(FRESH).startswith("the key's statistics (pg_stats histogram, 100 buckets")
    assert from_sample(5.0, "stale: x") == "a 5 % block sample; not the statistics: stale: x"
    assert from_sample(None, None) == "every row (ntile)"
