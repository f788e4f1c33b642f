"""Batch planning: split a run's id space into disjoint, contiguous id ranges.

Ids are handed out as ranges so that every record id is unique by construction, and loss or
duplication can be checked afterwards by counting the ids of the run's range in the target.
"""

from __future__ import annotations

from dataclasses import dataclass

from async_etl.typing import IdRange


@dataclass(slots=True)
class BatchPlanner:
    """Hands out consecutive ``IdRange`` batches from ``start``, up to ``total`` ids.

    Pure and synchronous; the runner decides *when* to ask for the next batch (stop requests,
    deadlines), the planner decides *which* ids it gets.
    """

    start: int
    batch_size: int
    total: int | None = None
    issued: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.total is not None and self.total < 0:
            raise ValueError(f"total must be >= 0, got {self.total}")

    @property
    def exhausted(self) -> bool:
        """True when every id of a bounded plan has been issued."""
        return self.total is not None and self.issued >= self.total

    def next(self) -> IdRange | None:
        """The next batch, or None when the plan is exhausted."""
        if self.exhausted:
            return None
        count = self.batch_size
        if self.total is not None:
            count = min(count, self.total - self.issued)
        ids = IdRange(self.start + self.issued, count)
        self.issued += count
        return ids

    @property
    def issued_range(self) -> IdRange:
        """The range of every id issued so far."""
        return IdRange(self.start, self.issued)


def batches_per_unit(batch_size: int, *, min_rows: int = 4000, most: int = 32) -> int:
    """How many batches one unit of generation work should hold.

    Small batches are grouped (up to ``most``) so that a unit carries at least ``min_rows``
    rows: the per-unit cost of a process-pool round trip is then paid once per group.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return max(1, min(most, -(-min_rows // batch_size)))


def plan_batches(start: int, total: int, batch_size: int) -> list[IdRange]:
    """Every batch of a bounded plan, in order."""
    planner = BatchPlanner(start=start, batch_size=batch_size, total=total)
    out: list[IdRange] = []
    while (ids := planner.next()) is not None:
        out.append(ids)
    return out


# -- the generation window, shared by the async and the thread runner ----------------------


def generation_window(workers: int) -> int:
    """Units generating at once: two per generator process (one computing, one handing over)."""
    return 2 * max(1, workers)


def queue_size(workers: int) -> int:
    """Batches that may wait, generated, for a sender (the bounded stream / queue)."""
    return max(4, 2 * workers)


@dataclass(frozen=True, slots=True)
class Step:
    """What the producer does next: generate ``ids``, or stop (``ids`` None).

    ``stop`` names the reason the run must now be stopped ("duration"), or is empty when it
    simply ends (a stop was already requested, or every id of a bounded plan was issued).
    """

    ids: IdRange | None
    stop: str = ""


def next_step(planner: BatchPlanner, *, stopping: bool, now: float, deadline: float | None) -> Step:
    """The producer's one decision per unit, the same in both runners.

    A requested stop wins, then the deadline, then the planner's next range (None: exhausted).
    """
    if stopping:
        return Step(None)
    if deadline is not None and now >= deadline:
        return Step(None, "duration")
    return Step(planner.next())
