"""Rows per chunk: an explicit ``chunk_size`` is kept; unset, a new table gets larger chunks."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from async_etl.core.chunks import (
    AUTO_CHUNKS_PER_WORKER,
    AUTO_MAX_CHUNK_SIZE,
    DEFAULT_CHUNK_SIZE,
    MAX_CHUNKS,
    WHOLE,
    Chunk,
    ChunkSizing,
    capped_whole,
    chunk_count,
    chunk_sizing,
)
from async_etl.core.dryrun import ChunkRead, JobFacts, report
from async_etl.core.modes import indexes_after_load, indexes_during_load
from async_etl.core.specs import ParallelSpec, ScdSpec
from async_etl.jobs.planning import stored_sizing
from async_etl.jobs.spec import parse_job

MERGE = "a merge into the existing table"
"""Why a merge keeps the target's indexes (``core.modes.indexes_during_load``)."""

JOB = """
name = "j"
[source]
url = "postgresql://u@h/s"
table = "src.t"
key = ["id"]
[target]
url = "postgresql://u@h/d"
table = "dw.t"
[scd]
business_key = ["id"]
"""


def test_unset_into_a_new_table_gives_every_worker_two_chunks() -> None:
    """1M rows, 2 workers, unset, into a new table: 4 chunks of 250,000 rows."""
    spec = ParallelSpec(max_workers=2)
    got = chunk_sizing(1_000_000, spec, kept=None)
    assert got.rows == 250_000 and got.why.startswith("auto: a load into a new table")
    assert "2 chunks per worker (2)" in got.why
    assert chunk_count(1_000_000, got) == 4


def test_unset_elsewhere_is_the_old_default() -> None:
    """Unset, a load that is not into a new table is cut into 50,000-row chunks as before."""
    spec = ParallelSpec(max_workers=2)
    got = chunk_sizing(1_000_000, spec, kept=MERGE)
    assert got == ChunkSizing(50_000, "auto: the default 50,000 (a merge into the existing table)")
    assert chunk_count(1_000_000, got) == 20


def test_auto_size_is_bounded_on_both_sides() -> None:
    """Small tables keep 50,000-row chunks, large ones never pass 500,000; unknown: 50,000."""
    spec = ParallelSpec(max_workers=4)
    assert chunk_sizing(120_000, spec, kept=None).rows == 50_000
    assert chunk_sizing(100_000_000, spec, kept=None).rows == 500_000
    unknown = chunk_sizing(-1, spec, kept=None)
    assert unknown.rows == 50_000 and "no row estimate" in unknown.why
    sequential = ParallelSpec(max_workers=4, min_rows_for_parallel=10**9)  # one worker
    assert chunk_sizing(300_000, sequential, kept=None).rows == 150_000


@given(st.integers(1, 10**7), st.booleans(), st.integers(1, 16), st.integers(-1, 10**9))
def test_an_explicit_chunk_size_is_always_kept(size: int, new: bool, n: int, rows: int) -> None:
    """A chunk_size from the job file is the size used, whatever the load and estimate."""
    spec = ParallelSpec(max_workers=n, chunk_size=size)
    assert chunk_sizing(rows, spec, kept=None if new else MERGE) == ChunkSizing(
        size, "set: [parallel] chunk_size"
    )


@given(st.integers(0, 10**9), st.integers(1, 16), st.booleans())
def test_auto_chunks_stay_in_bounds_and_keep_workers_busy(rows: int, n: int, par: bool) -> None:
    """Unset into a new table: 50k..500k rows a chunk, and at least two chunks per worker."""
    spec = ParallelSpec(max_workers=n, enabled=par)
    got = chunk_sizing(rows, spec, kept=None)
    assert DEFAULT_CHUNK_SIZE <= got.rows <= AUTO_MAX_CHUNK_SIZE
    used = n if par and rows >= spec.min_rows_for_parallel else 1
    count = chunk_count(rows, got)
    if rows >= used * AUTO_CHUNKS_PER_WORKER * DEFAULT_CHUNK_SIZE:
        if rows <= used * AUTO_CHUNKS_PER_WORKER * AUTO_MAX_CHUNK_SIZE:
            assert count == used * AUTO_CHUNKS_PER_WORKER
        else:
            assert count == math.ceil(rows / AUTO_MAX_CHUNK_SIZE)
    assert count <= max(1, math.ceil(rows / DEFAULT_CHUNK_SIZE))  # never more than before


@pytest.mark.parametrize(
    ("mode", "on_bad_row", "dialect", "why"),
    [
        ("full_refresh", "fail", "cratedb", "a CrateDB target keeps its indexes during the load"),
        ("scd2", "reject", "oracle", "an Oracle target keeps its indexes during the load"),
        ("full_refresh", "reject", "postgresql",
         'on_bad_row = "reject" needs the indexes during the load'),
        ("merge", "reject", "postgresql", "a merge into the existing table"),
        ("scd2", "fail", "postgresql", "a merge into the existing table"),
        ("append", "fail", "postgresql", "an append loads the target table itself"),
    ],
)  # fmt: skip
def test_the_default_size_names_why_the_load_is_not_into_a_new_table(
    mode: str, on_bad_row: str, dialect: str, why: str
) -> None:
    """Unset, not a new table: 50,000 rows, and the reason names the target, mode or on_bad_row."""
    kept = indexes_during_load(mode, on_bad_row, dialect)
    got = chunk_sizing(1_000_000, ParallelSpec(max_workers=2), kept=kept)
    assert got == ChunkSizing(50_000, f"auto: the default 50,000 ({why})")
    assert indexes_during_load("full_refresh", "fail", "postgresql") is None


@pytest.mark.parametrize(
    ("mode", "on_bad_row", "dialect", "expected"),
    [
        ("full_refresh", "fail", "postgresql", True),
        ("full_refresh", "reject", "postgresql", False),
        ("full_refresh", "fail", "cratedb", False),
        ("full_refresh", "fail", "oracle", False),
        ("scd2", "fail", "postgresql", False),
        ("append", "fail", "postgresql", False),
    ],
)
def test_only_a_postgresql_full_refresh_failing_on_bad_rows_builds_indexes_after(
    mode: str, on_bad_row: str, dialect: str, expected: bool
) -> None:
    """The new-table path (indexes after the load) is a PostgreSQL full refresh with fail."""
    assert indexes_after_load(mode, on_bad_row, dialect) is expected


def test_job_file_leaves_chunk_size_unset_or_keeps_it() -> None:
    """No chunk_size in the file is None (auto); a value, from the file or --set, is kept."""
    assert parse_job(JOB, env={}).parallel.chunk_size is None
    assert parse_job(JOB + "[parallel]\nchunk_size = 50000\n", env={}).parallel.chunk_size == 50_000
    kept = parse_job(JOB, env={}, overrides=["parallel.chunk_size=7"])
    assert kept.parallel.chunk_size == 7


def test_stored_plan_gives_back_its_sizing() -> None:
    """A plan records its sizing; one stored before that (or malformed) gives None."""
    assert stored_sizing({"chunk_size": {"rows": 250000, "why": "auto"}}) == ChunkSizing(
        250_000, "auto"
    )
    assert stored_sizing({"version": 1, "chunks": []}) is None
    assert stored_sizing({"chunk_size": {"rows": "x", "why": "auto"}}) is None
    assert stored_sizing({"chunk_size": 5}) is None
    whole = {"chunk_size": {"rows": None, "why": WHOLE}}  # one chunk of every row
    assert stored_sizing(whole) == ChunkSizing(None, WHOLE)


def test_check_report_says_the_chunk_size_and_why() -> None:
    """``check`` prints the rows per chunk and the reason (or that a stored plan sets it)."""
    cols = ScdSpec(type=1, business_key=("id",)).resolve(["id", "v"])
    base = JobFacts(job="j", mode="full_refresh", dialect="postgresql", table="dw.t",
                    source="s", target="t", as_of="T", run="new", estimate=1_000_000,
                    workers=2, cols=cols, key=("id",), names=("id", "v"),
                    chunks=(ChunkRead(Chunk(0, None, None), "SELECT 1", ()),),
                    sizing=ChunkSizing(250_000, "auto: why"))  # fmt: skip
    assert "  rows per chunk 250,000 (auto: why)" in report(base)
    resumed = dataclasses.replace(base, sizing=None)
    assert "  rows per chunk as the unfinished run's stored plan was cut" in report(resumed)
    whole = dataclasses.replace(base, estimate=-1, sizing=ChunkSizing(None, WHOLE))
    line = f"  rows per chunk: every row ({WHOLE})"
    assert line in report(whole)


@pytest.mark.parametrize("estimate", [-1, 0, 10, 10_000_000])
@pytest.mark.parametrize("size", [None, 7])
def test_a_limited_source_query_is_one_chunk_of_every_row(estimate: int, size: int | None) -> None:
    """A top-level LIMIT: no row count per chunk (not the estimate, unknown or 0), set or not."""
    spec = ParallelSpec(chunk_size=size)
    assert chunk_sizing(estimate, spec, kept=None, whole=True) == ChunkSizing(None, WHOLE)
    assert WHOLE == "one chunk: the source query has a top-level LIMIT / OFFSET / FETCH"
    assert chunk_count(estimate, ChunkSizing(None, WHOLE)) == 1


@pytest.mark.parametrize("estimate", [-1, 0, 10, 10_000_000])
@pytest.mark.parametrize("size", [None, 7])
@pytest.mark.parametrize("kept", [None, MERGE])
def test_a_query_capped_inside_is_one_chunk_whatever_the_mode(
    estimate: int, size: int | None, kept: str | None
) -> None:
    """A cap inside the query (``row_cap``): one chunk of every row, the cap named, any mode."""
    sized = chunk_sizing(
        estimate, ParallelSpec(chunk_size=size), kept=kept, cap="a TABLESAMPLE on t"
    )
    assert sized == ChunkSizing(None, capped_whole("a TABLESAMPLE on t"))
    assert "picked by a TABLESAMPLE on t inside it" in sized.why
    assert chunk_count(estimate, sized) == 1


@given(st.integers(-1, 10**9), st.one_of(st.none(), st.integers(1, 10**6)), st.booleans())
def test_the_chunk_count_follows_from_the_sizing(rows: int, size: int | None, new: bool) -> None:
    """The count the survey cuts follows only from the one sizing the plan records."""
    sized = chunk_sizing(rows, ParallelSpec(max_workers=2, chunk_size=size),
                         kept=None if new else MERGE)  # fmt: skip
    assert sized.rows is not None
    expected = 1 if rows <= 0 else min(MAX_CHUNKS, math.ceil(rows / sized.rows))
    assert chunk_count(rows, sized) == expected
    assert chunk_count(rows, ChunkSizing(sized.rows, "another reason")) == expected
