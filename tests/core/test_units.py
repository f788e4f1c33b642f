"""The unit book: pull-based assignment, re-sends after an actor dies, exactly-once accounting."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from async_etl.core.plan import BatchPlanner
from async_etl.core.units import UnitBook


def _book(total: int | None = 100, size: int = 10, start: int = 1) -> UnitBook:
    return UnitBook(BatchPlanner(start=start, batch_size=size, total=total))


def test_fresh_units_are_consecutive_ranges() -> None:
    """Fresh units come from the planner in order, each held by whoever asked for it."""
    book = _book()
    a, b = book.assign("a"), book.assign("b")
    assert a is not None and b is not None
    assert (a.ids.start, a.ids.count, b.ids.start, b.ids.count) == (1, 10, 11, 10)
    assert (book.held_by("a"), book.held_by("b")) == (1, 1)
    assert not a.resend and not b.resend


def test_dead_actor_units_are_resent_first_elsewhere() -> None:
    """A dead actor's unacknowledged units go to the next asker first, marked as re-sends."""
    book = _book()
    a1, a2, b1 = book.assign("a"), book.assign("a"), book.assign("b")
    assert a1 is not None and a2 is not None and b1 is not None
    assert book.acknowledge("a", a1.unit)
    taken = book.lost("a")
    assert [t.unit for t in taken] == [a2.unit]
    again = book.assign("b")
    assert again is not None and again.resend and again.ids == a2.ids and again.unit == a2.unit
    assert book.resends == 1
    assert book.assign("a") is None


def test_late_acknowledgement_from_a_dead_actor_is_refused() -> None:
    """An acknowledgement from an actor that no longer holds the unit changes nothing."""
    book = _book()
    a = book.assign("a")
    assert a is not None
    book.lost("a")
    assert not book.acknowledge("a", a.unit)
    assert a.unit not in book.acknowledged


def test_stop_finishes_issued_units_only() -> None:
    """After stop() no fresh range is issued, and done waits for the held units."""
    book = _book(total=None)
    a = book.assign("a")
    assert a is not None
    book.stop()
    assert book.assign("b") is None
    assert not book.done
    assert book.acknowledge("a", a.unit)
    assert book.done
    assert book.issued_range.count == a.ids.count


@settings(max_examples=300, deadline=None)
@given(
    total=st.integers(0, 200),
    size=st.integers(1, 30),
    actors=st.integers(1, 4),
    script=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 9)), max_size=200),
    kills=st.sets(st.integers(0, 2), max_size=2),
)
def test_every_unit_acknowledged_exactly_once(
    total: int, size: int, actors: int, script: list[tuple[int, int]], kills: set[int]
) -> None:
    """Any interleaving of asks, acks and deaths: at done, the acknowledged units tile the run."""
    book = _book(total=total, size=size, start=7)
    names = [f"actor{i}" for i in range(actors)]
    held: dict[str, list[int]] = {n: [] for n in names}
    acks = 0
    for step, (who, what) in enumerate(script):
        name = names[who % actors]
        if what < 5:
            got = book.assign(name)
            if got is not None:
                held[name].append(got.unit)
        elif what < 9 and held[name]:
            unit = held[name].pop(0)
            assert book.acknowledge(name, unit)
            acks += 1
        elif step % 3 in kills and len(book.dead) < actors - 1:
            book.lost(name)
            held[name].clear()
    survivor = next(n for n in names if n not in book.dead)
    while not book.done:  # one survivor drains what is left
        for n in names:
            for unit in held[n]:
                if n not in book.dead:
                    assert book.acknowledge(n, unit)
                    acks += 1
            held[n] = []
        got = book.assign(survivor)
        if got is not None:
            assert book.acknowledge(survivor, got.unit)
            acks += 1
    assert acks == len(book.acknowledged)
    ranges = sorted(book.acknowledged.values(), key=lambda r: r.start)
    assert sum(r.count for r in ranges) == total == book.issued_range.count
    expected = 7
    for r in ranges:
        assert r.start == expected
        expected = r.stop
