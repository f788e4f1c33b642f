from __future__ import annotations

import pickle

from hypothesis import given
from hypothesis import strategies as st

from async_etl.core.reckoning import IdOutcomes, IdSet, id_runs, open_questions
from async_etl.typing import EncodedBatch, IdRange


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
