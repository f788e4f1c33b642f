"""Resolving undecided CrateDB bulk items against a model of CrateDB's per-shard error cap."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from async_etl.core.crate_protocol import (
    NO_DETAIL,
    BulkVerdict,
    Response,
    parse_response,
    verdict_for,
)
from async_etl.core.crate_resolve import (
    Resolution,
    bulk_items,
    detail_group,
    judge_resent,
    subset_items,
)

SHARDS = 4
NOT_NULL = (4003, "ColumnValidationException[Validation failed for note: null]")
CHECK = (4000, "IllegalArgumentException[Failed CONSTRAINT c_pos CHECK (v > 0)]")
SHARD_DOWN = (5002, "ShardUnavailableException[[doc][1] shard is not available]")
OUTCOMES = st.sampled_from(["ok", "ok", "ok", "not_null", "check", "shard"])


def _answer(
    outcome: Sequence[str], items: Sequence[int], version: tuple[int, int, int]
) -> Response:
    """What CrateDB answers to a bulk of ``items``: 10 detailed failures per shard at most."""
    budget: Counter[int] = Counter()
    results: list[dict[str, object]] = []
    for item in items:
        kind = outcome[item]
        if kind == "ok":
            results.append({"rowcount": 1})
            continue
        code, message = {"not_null": NOT_NULL, "check": CHECK, "shard": SHARD_DOWN}[kind]
        shard = item % SHARDS
        if version >= (5, 10, 0) and budget[shard] < 10:
            budget[shard] += 1
            results.append({"rowcount": -2, "error": {"code": code, "message": message}})
        else:
            results.append({"rowcount": -2})
    failed = [r for r in results if r["rowcount"] == -2]
    if len(items) == 1 and failed and version < (5, 10, 11):
        code, message = {"not_null": NOT_NULL, "check": CHECK, "shard": SHARD_DOWN}[
            outcome[items[0]]
        ]
        status = 400 if code < 5000 else 500
        return parse_response(status, orjson.dumps({"error": {"code": code, "message": message}}))
    return parse_response(200, orjson.dumps({"cols": [], "results": results}))


def _resolve(outcome: Sequence[str], version: tuple[int, int, int]) -> tuple[BulkVerdict, int]:
    """Send a bulk, resolve its undecided items; the final verdict and the requests made."""
    rows = len(outcome)
    first = verdict_for(rows, _answer(outcome, range(rows), version), where="w", attempt=1,
                        upsert=False)  # fmt: skip
    resolution = Resolution(first, rows, detail_group(".".join(map(str, version))))
    requests = 1
    while (group := resolution.next_group()) is not None:
        requests += 1
        judged = judge_resent(resolution, group, _answer(outcome, group, version), "w",
                              attempt=1, upsert=False)  # fmt: skip
        if judged is not None:
            resolution.feed(group, judged)
    return resolution.verdict(), requests


@pytest.mark.parametrize("version", [(5, 10, 11), (5, 10, 0), (5, 9, 0), (4, 8, 0)])
def test_every_second_row_not_null_is_rejected_with_its_reason(
    version: tuple[int, int, int],
) -> None:
    """2,000 items, every second NOT NULL, 4 shards: 1,000 rejects with the reason, no retry."""
    outcome = ["ok" if i % 2 else "not_null" for i in range(2000)]
    verdict, requests = _resolve(outcome, version)
    assert verdict.delivered == 1000 and verdict.retry == () and verdict.undecided == ()
    assert [i for i, _ in verdict.rejected] == list(range(0, 2000, 2))
    assert {reason for _, reason in verdict.rejected} == {f"{NOT_NULL[0]} {NOT_NULL[1]}"}
    assert requests <= 1 + math.ceil(1000 / 10) + 1000


@given(st.lists(OUTCOMES, min_size=2, max_size=120),
       st.sampled_from([(5, 10, 11), (5, 10, 3), (5, 4, 0)]))  # fmt: skip
def test_resolution_learns_every_items_true_outcome(
    outcome: list[str], version: tuple[int, int, int]
) -> None:
    """For any mix, refusals end rejected with their own reason, nothing undecided, bounded work."""
    # (a first attempt of one item fails as a whole before 5.10.11: the sender's own case)
    verdict, requests = _resolve(outcome, version)
    rejected = dict(verdict.rejected)
    refusals = {"not_null": NOT_NULL, "check": CHECK}
    for index, kind in enumerate(outcome):
        if kind in refusals:
            code, message = refusals[kind]
            assert rejected.pop(index) == f"{code} {message}"
    assert rejected == {}
    assert NO_DETAIL not in {reason for _, reason in verdict.rejected}
    shard_items = {i for i, kind in enumerate(outcome) if kind == "shard"}
    assert set(verdict.retry) == shard_items
    assert verdict.delivered == outcome.count("ok")
    assert bool(verdict.retry_reason) == bool(verdict.retry)
    undecided = len(outcome) - outcome.count("ok")
    assert requests <= 1 + math.ceil(undecided / 10) + undecided


def test_single_bare_item_alone_is_rejected_without_detail() -> None:
    """An item still bare when sent alone is rejected NO_DETAIL: never retried, never lost."""
    base = BulkVerdict(0, undecided=(0,))
    resolution = Resolution(base, 1, group=1)
    group = resolution.next_group()
    assert group == (0,)
    bare = parse_response(200, b'{"cols": [], "results": [{"rowcount": -2}]}')
    judged = judge_resent(resolution, group, bare, "w", attempt=1, upsert=False)
    assert judged is not None
    resolution.feed(group, judged)
    assert resolution.next_group() is None
    assert resolution.verdict() == BulkVerdict(0, rejected=((0, NO_DETAIL),))


def test_unfinished_resolution_and_bad_group_size_raise() -> None:
    """verdict() before every group was resent, or a group size below 1, raise ValueError."""
    with pytest.raises(ValueError, match="not finished"):
        Resolution(BulkVerdict(0, undecided=(0, 1)), 2).verdict()
    with pytest.raises(ValueError, match="at least 1"):
        Resolution(BulkVerdict(0), 0, group=0)


def test_detail_group_by_version() -> None:
    """Groups of 10 from 5.10.0 on (and for an unknown version), single items before."""
    assert [detail_group(v) for v in ("6.0.1", "5.10.0", "5.9.12", "4.8.4", "")] == [
        10,
        10,
        1,
        1,
        10,
    ]


def test_bulk_items_and_subsets() -> None:
    """A body parsed once gives the bodies of any of its items, with the same statement."""
    body = bulk_items(
        orjson.dumps({"stmt": "INSERT INTO t VALUES (?)", "bulk_args": [[1], [2], [3]]})
    )
    assert orjson.loads(subset_items(body, (2, 0))) == {
        "stmt": "INSERT INTO t VALUES (?)",
        "bulk_args": [[3], [1]],
    }
    with pytest.raises(ValueError, match="not a bulk body"):
        bulk_items(b'{"stmt": "s"}')


CAST = "4000 SQLParseException[Value 1099511627776 is out of range for type `integer`]"


def _whole(bad: set[int], rows: int) -> tuple[BulkVerdict, int]:
    """Bisect a bulk refused as a whole (400 4000) because of the items in ``bad``."""
    refused = orjson.dumps({"error": {"code": 4000, "message": CAST.partition(" ")[2]}})
    resolution = Resolution.whole(rows)
    requests = 0
    while (group := resolution.next_group()) is not None:
        requests += 1
        if bad & set(group):
            answer = parse_response(400, refused)
        else:
            answer = parse_response(
                200, orjson.dumps({"cols": [], "results": [{"rowcount": 1}] * len(group)})
            )
        judged = judge_resent(resolution, group, answer, "w", attempt=1, upsert=False)
        if judged is not None:
            resolution.feed(group, judged)
    return resolution.verdict(), requests


@given(st.integers(min_value=2, max_value=300), st.data())
def test_a_bulk_refused_as_a_whole_rejects_only_its_bad_items(
    rows: int, data: st.DataObject
) -> None:
    """Bisecting a 400-refused bulk: good items delivered, each bad one rejected, work bounded."""
    bad = data.draw(st.sets(st.integers(min_value=0, max_value=rows - 1), max_size=4))
    verdict, requests = _whole(bad, rows)
    assert verdict.delivered == rows - len(bad)
    assert verdict.rejected == tuple((i, CAST) for i in sorted(bad))
    assert verdict.retry == () and verdict.undecided == ()
    assert requests <= max(2, 2 * len(bad) * math.ceil(math.log2(rows) + 1))
