from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from async_etl.core.delivery import Delivery
from async_etl.core.reckoning import IdOutcomes, IdSet, id_runs, open_questions
from async_etl.core.retry import RetryPolicy
from async_etl.core.stats import RunStats
from async_etl.errors import TransientLoadError
from async_etl.typing import EncodedBatch, IdRange, SendResult


def _batch(start: int, count: int, keys: tuple[int, ...] | None = None) -> EncodedBatch:
    return EncodedBatch(IdRange(start, count), b"", "pg_binary", keys=keys)


def test_id_runs_coalesce_consecutive_ids() -> None:
    """Ids in any order become sorted half-open runs; a step-1 range is one run."""
    assert id_runs((7, 3, 4, 5, 9, 8)) == [(3, 6), (7, 10)]
    assert id_runs(range(4, 9)) == [(4, 9)]
    assert id_runs(()) == [] and id_runs(range(3, 3)) == []


@given(st.lists(st.integers(0, 40), unique=True))
def test_an_id_set_holds_exactly_the_ids_added_in_any_order(ids: list[int]) -> None:
    """Adding ids one by one (any order) gives the same runs as coalescing them at once."""
    found = IdSet()
    for i in ids:
        found.add(i, i + 1)
    assert found.runs() == id_runs(ids) and len(found) == len(ids)
    assert pickle.loads(pickle.dumps(found)).runs() == found.runs()  # crosses to workers


def test_questions_split_given_up_ids_from_unanswered_ones() -> None:
    """Answered batches are not asked about; given-up and never-answered ids each get ranges."""
    seen = IdOutcomes()
    seen.finished(_batch(1, 100), None)  # delivered
    seen.finished(_batch(101, 100), _batch(101, 100))  # given up whole (a PostgreSQL COPY)
    seen.finished(_batch(301, 100), None)  # delivered out of order: 201-300 still in flight
    q = open_questions(IdRange(1, 500), seen)
    assert q.given_up == (IdRange(101, 100),)
    assert q.unanswered == (IdRange(201, 100), IdRange(401, 100))
    assert not q.empty
    done = IdOutcomes()
    done.finished(_batch(1, 100), None)
    assert open_questions(IdRange(1, 100), done).empty


def test_a_per_row_given_up_subset_and_an_abandoned_retry_ask_only_about_their_rows() -> None:
    """CrateDB answers per row: only the rows given up / still pending are in question."""
    seen = IdOutcomes()
    seen.finished(_batch(1, 10), _batch(1, 10, keys=(3, 4, 8)))
    seen.abandoned(_batch(11, 10), _batch(11, 10, keys=(15, 16)))
    q = open_questions(IdRange(1, 20), seen)
    assert q.given_up == (IdRange(3, 2), IdRange(8, 1))
    assert q.unanswered == (IdRange(15, 2),)


def test_outcomes_absorbed_from_units_add_up() -> None:
    """A coordinator's union of acknowledged units: an unacknowledged unit stays unanswered."""
    total, one, two = IdOutcomes(), IdOutcomes(), IdOutcomes()
    one.finished(_batch(1, 50), None)
    two.finished(_batch(101, 50), _batch(101, 50))
    total.absorb(pickle.loads(pickle.dumps(one)))
    total.absorb(two)
    q = open_questions(IdRange(1, 150), total)
    assert q.unanswered == (IdRange(51, 50),) and q.given_up == (IdRange(101, 50),)


def test_an_id_set_refuses_ids_it_already_holds() -> None:
    """An overlap raises ValueError and leaves the set as it was; touching runs still merge."""
    found = IdSet()
    found.add(1, 10)
    for start, stop in ((5, 15), (1, 10), (3, 4), (0, 2), (9, 10), (-5, 20)):
        with pytest.raises(ValueError, match="overlap"):
            found.add(start, stop)
        assert found.runs() == [(1, 10)] and len(found) == 9
    found.add(10, 15)
    found.add(-3, 1)
    found.add(20, 20)  # empty: nothing to add
    assert found.runs() == [(-3, 15)] and len(found) == 18


@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 8))))
def test_an_id_set_holds_the_ids_it_took_and_refuses_any_it_had(
    adds: list[tuple[int, int]],
) -> None:
    """Each add either takes ids none of which it holds, or raises ValueError and takes none."""
    found, held = IdSet(), set[int]()
    for start, size in adds:
        ids = set(range(start, start + size))
        if ids & held:
            with pytest.raises(ValueError):
                found.add(start, start + size)
        else:
            found.add(start, start + size)
            held |= ids
    assert found.runs() == id_runs(sorted(held)) and len(found) == len(held)


_STEP = st.one_of(
    st.just(("fail", frozenset[int]())),
    st.just(("abandon", frozenset[int]())),
    st.tuples(st.just("answer"), st.frozensets(st.integers(0, 9))),
)
"""One step of a batch's delivery: a transient failure, the run abandoning it, or an answer
for the pending rows at these offsets (the others are asked for again, per row)."""


@given(
    st.lists(st.lists(_STEP, max_size=5), min_size=1, max_size=6),
    st.integers(0, 3),
    st.integers(0, 2),
)
def test_deliveries_leave_every_issued_id_answered_given_up_or_unanswered_once(
    scripts: list[list[tuple[str, frozenset[int]]]], unsent: int, retries: int
) -> None:
    """Any sent / failed / abandon sequences: the three kinds are disjoint and cover the ids."""
    stats = RunStats(started_at=0.0, ids=IdOutcomes())
    policy = RetryPolicy(max_retries=retries, base=0.0, cap=0.0, connect_base=0.0)
    answered, given_up, at = set[int](), set[int](), 1
    for script in scripts:
        d = Delivery(_batch(at, 10), stats, policy)
        steps = iter(script)
        while (current := d.pending) is not None:
            kind, offsets = next(steps, ("answer", frozenset(range(10))))
            ids = list(current.row_ids())
            if kind == "abandon":
                d.abandon()
                break
            if kind == "fail":
                d.failed(TransientLoadError("503"), 0.0, jitter=0.0)
                continue
            done = [i for n, i in enumerate(ids) if n in offsets]
            rest = tuple(i for i in ids if i not in done)
            answered.update(done)
            retry = _batch(at, 10, keys=rest) if rest else None
            d.sent(SendResult(len(done), retry=retry), 0.0, jitter=0.0)
        if d.given_up is not None:
            given_up.update(d.given_up[0].row_ids())
        at += 10
    issued = IdRange(1, at - 1 + 10 * unsent)
    assert stats.ids is not None
    q = open_questions(issued, stats.ids)
    unanswered = {i for r in q.unanswered for i in range(r.start, r.stop)}
    said_given_up = {i for r in q.given_up for i in range(r.start, r.stop)}
    seen = {i for a, b in stats.ids.answered.runs() for i in range(a, b)}
    assert seen == answered and said_given_up == given_up
    assert not (seen & said_given_up) and not (unanswered & (seen | said_given_up))
    assert seen | said_given_up | unanswered == set(range(issued.start, issued.stop))
