"""Graceful degradation: lower a database's parallelism on repeated transient failures.

Theory of operation
-------------------
An orchestrated plan shares one connection budget per database (``jobs.budget``): its tokens
are the connections — and so the chunk workers — every job against that database may use.
When a job attempt against a database fails with a transient error (network, dropped backend,
serialization), the scheduler retries it; before the retry, ``Degradation`` halves that
database's budget, step by step, down to the **floor**: the most connections any one of its
jobs needs at once (state store, source and target), where a job runs one chunk at a time
(sequential) — and never below ``held``, the connections the scheduler has already reserved
there for the minimums of the jobs still running (several jobs may be admitted side by side;
each holds its state connection and waits for a chunk's, so a lower level would hang them all).
A successful attempt doubles it back, step by step, up to the configured
budget.  Each step is returned, never applied here: the scheduler sets the limiter, logs it
and puts it in the report (the dbt-era orchestrators fell back from batch to concurrent to
sequential by hand; this does it per database, and comes back).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Step:
    """One change of a database's parallelism, and why."""

    database: str
    old: int
    new: int
    reason: str

    def as_dict(self) -> dict[str, object]:
        """The JSON form (report and log event)."""
        return {"database": self.database, "old": self.old, "new": self.new, "reason": self.reason}


@dataclass(slots=True)
class Degradation:
    """The parallelism of one database between ``floor`` and ``base`` (its budget).

    Raises ``ValueError`` unless ``1 <= floor <= base``.
    """

    database: str
    base: int
    floor: int
    level: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.floor <= self.base:
            raise ValueError(f"need 1 <= floor <= base, got {self.floor}..{self.base}")
        self.level = self.level or self.base

    def failed(self, why: str, *, held: int = 0) -> Step | None:
        """A transient failure against the database: halve the level.

        Not below the floor, nor below ``held`` (connections reserved for the minimums of the
        jobs still running on the database); never above the current level.
        """
        new = max(self.floor, min(self.level, held), self.level // 2)
        return self._to(new, f"transient failure: {why}")

    def succeeded(self) -> Step | None:
        """A successful attempt: double the level back (not above the base)."""
        return self._to(min(self.base, self.level * 2), "recovered: an attempt succeeded")

    def _to(self, new: int, reason: str) -> Step | None:
        if new == self.level:
            return None
        step = Step(self.database, self.level, new, reason)
        self.level = new
        return step
