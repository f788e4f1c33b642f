"""Which of a bench run's ids have an answer, and which must be looked up in the target.

Theory of operation
-------------------
A row's outcome comes from the sink's answer to the request that carried it: delivered or
rejected.  Two kinds of rows end without such an answer:

* **given up**: retries ran out.  The last attempt may still have landed (a ``COMMIT`` that
  reached PostgreSQL while the client saw its connection drop, with no retry left to ask
  the ledger; a CrateDB bulk request applied while its answer was lost).
* **unanswered**: an abort (a second signal) cancelled the send in flight, or came before the
  batch was sent at all.

Totals cannot tell them apart: ``reconciled - delivered`` counts the landed rows of both kinds
together, so a landed given-up batch would make as many never-sent rows look delivered.  So
the runners keep, per id, which rows were answered (``IdOutcomes``), and at the end the sink
counts each kind's own id ranges (``open_questions`` says which; ``core.summary.settle``
turns the counts into outcomes).  A PostgreSQL batch is one transaction and a CrateDB bulk
request answers per row: either way a count of exactly those ids is what landed of them.

Cost: one ``IdSet.add`` per finished batch (a ``bisect``); batches finish in about the
order they were issued, so the set stays a handful of ranges however long a run lasts.
Nothing here does I/O.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from async_etl.core.writer_types import EncodedBatch


@dataclass(frozen=True, slots=True)
class IdRange:
    """A half-open range of record ids ``[start, start + count)``."""

    start: int
    count: int

    @property
    def stop(self) -> int:
        """One past the last id."""
        return self.start + self.count


def id_runs(ids: Sequence[int] | range) -> list[tuple[int, int]]:
    """``ids`` (ascending or not, no repeats) as sorted half-open ``(start, stop)`` runs."""
    if isinstance(ids, range) and ids.step == 1:
        return [(ids.start, ids.stop)] if len(ids) else []
    out: list[tuple[int, int]] = []
    for i in sorted(ids):
        if out and out[-1][1] == i:
            out[-1] = (out[-1][0], i + 1)
        else:
            out.append((i, i + 1))
    return out


class IdSet:
    """A set of ids kept as disjoint half-open runs, merged with their neighbours on ``add``.

    The runs' starts and stops are two sorted lists: an ``add`` is one ``bisect`` and, at
    most, one list insert or delete (runs finish in about the order issued, so mostly at the
    end).
    """

    __slots__ = ("_starts", "_stops")

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._stops: list[int] = []

    def add(self, start: int, stop: int) -> None:
        """Add the ids ``[start, stop)``; nothing for ``stop <= start``.

        Raises ``ValueError`` when one of them is in the set already, and adds none: a run's
        ids are disjoint (each issued once, each batch finished or abandoned once), so an
        overlap is a bug that would count rows twice (``core.summary.settle``).
        """
        if stop <= start:
            return
        starts, stops = self._starts, self._stops
        i = bisect_right(starts, start)  # runs before i start at or before ``start``
        if (i and stops[i - 1] > start) or (i < len(starts) and starts[i] < stop):
            at = i - 1 if i and stops[i - 1] > start else i
            raise ValueError(
                f"ids [{start}, {stop}) overlap [{starts[at]}, {stops[at]}) already in the set"
            )
        left = i > 0 and stops[i - 1] == start
        right = i < len(starts) and starts[i] == stop
        if left and right:
            stops[i - 1] = stops[i]
            del starts[i], stops[i]
        elif left:
            stops[i - 1] = stop
        elif right:
            starts[i] = start
        else:
            starts.insert(i, start)
            stops.insert(i, stop)

    def add_ids(self, ids: Sequence[int] | range) -> None:
        """Add each of ``ids``."""
        for start, stop in id_runs(ids):
            self.add(start, stop)

    def update(self, other: IdSet) -> None:
        """Add every id of ``other``."""
        for start, stop in other.runs():
            self.add(start, stop)

    def runs(self) -> list[tuple[int, int]]:
        """The ids as sorted ``(start, stop)`` runs."""
        return list(zip(self._starts, self._stops, strict=True))

    def __len__(self) -> int:
        return sum(self._stops) - sum(self._starts)

    def __getstate__(self) -> list[tuple[int, int]]:
        return self.runs()

    def __setstate__(self, runs: list[tuple[int, int]]) -> None:
        self.__init__()  # type: ignore[misc]
        for start, stop in runs:
            self.add(start, stop)


@dataclass(slots=True)
class IdOutcomes:
    """Per id, how a run's requests ended: ``answered`` or ``given_up``.

    ``answered``: delivered or rejected by the sink's answer; ``given_up``: retries ran out.
    Every other issued id is unanswered.
    """

    answered: IdSet = field(default_factory=IdSet)
    given_up: IdSet = field(default_factory=IdSet)

    def finished(self, batch: EncodedBatch, given_up: EncodedBatch | None) -> None:
        """``batch`` (as first sent) has its outcome; ``given_up``: the rows retries ran out on."""
        if given_up is None:
            self._answered_except(batch, ())
            return
        lost = given_up.row_ids()
        self.given_up.add_ids(lost)
        self._answered_except(batch, lost)

    def abandoned(self, batch: EncodedBatch, pending: EncodedBatch) -> None:
        """The run stopped waiting for ``batch``: ``pending``'s rows have no answer, the rest do."""
        self._answered_except(batch, pending.row_ids())

    def absorb(self, other: IdOutcomes) -> None:
        """Add another unit's outcomes (disjoint ids) to these."""
        self.answered.update(other.answered)
        self.given_up.update(other.given_up)

    def _answered_except(self, batch: EncodedBatch, without: Sequence[int] | range) -> None:
        ids = batch.row_ids()
        if not len(without):
            if isinstance(ids, range):
                self.answered.add(ids.start, ids.stop)
            else:
                self.answered.add_ids(ids)
            return
        skip = set(without)
        self.answered.add_ids([i for i in ids if i not in skip])


@dataclass(frozen=True, slots=True)
class Questions:
    """The id ranges whose rows the target must be asked about, by kind (see module doc)."""

    unanswered: tuple[IdRange, ...]
    given_up: tuple[IdRange, ...]

    @property
    def empty(self) -> bool:
        """True when every issued row got an answer (nothing to look up)."""
        return not self.unanswered and not self.given_up


def _gaps(issued: IdRange, taken: Iterable[tuple[int, int]]) -> list[IdRange]:
    """The runs of ``issued`` not covered by the sorted, disjoint ``taken`` runs."""
    out, at = [], issued.start
    for start, stop in taken:
        start, stop = max(start, issued.start), min(stop, issued.stop)
        if start > at:
            out.append(IdRange(at, start - at))
        at = max(at, stop)
    if at < issued.stop:
        out.append(IdRange(at, issued.stop - at))
    return out


def open_questions(issued: IdRange, outcomes: IdOutcomes) -> Questions:
    """Which ranges of ``issued`` to count in the target: the unanswered and the given-up ids."""
    known = IdSet()
    known.update(outcomes.answered)
    known.update(outcomes.given_up)
    given = tuple(IdRange(a, b - a) for a, b in outcomes.given_up.runs())
    return Questions(unanswered=tuple(_gaps(issued, known.runs())), given_up=given)


__all__ = ["IdOutcomes", "IdSet", "Questions", "id_runs", "open_questions"]
