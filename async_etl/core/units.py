"""The unit book: which id-range unit each remote actor holds, and what happens when one dies.

Theory of operation
-------------------
A scale-out bench hands id-range *units* to actors that pull work: an actor asks for a unit
when it has room (``assign``), and reports back when every row of it is accounted for
(``acknowledge``).  The book is the coordinator's only state and decides everything:

* **Order.** Units lost with a dead actor are handed out first (``resend=True``: the sink must
  check whether a batch already landed, so the re-send is idempotent), then fresh ranges from
  the ``BatchPlanner``, so the ids of the run stay one contiguous range.
* **Death.** ``lost(actor)`` takes back every unit the actor held and had not acknowledged;
  the actor gets nothing more.  A late acknowledgement from it is refused.
* **Stop.** ``stop()`` ends fresh ranges; units already issued are still finished.
* **Done** when nothing is held, nothing waits to be re-sent, and no fresh range remains.

Invariant (the hypothesis properties in ``tests/core/test_units.py``): at ``done``, every unit
issued was acknowledged exactly once, and the acknowledged ranges tile ``issued_range``.
Pure and synchronous: no I/O, no clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from async_etl.core.plan import BatchPlanner
from async_etl.typing import IdRange


@dataclass(frozen=True, slots=True)
class Assignment:
    """One unit handed to an actor: its number, its ids, and whether it is a re-send."""

    unit: int
    ids: IdRange
    resend: bool = False


@dataclass(slots=True)
class UnitBook:
    """Hands out units to named actors, takes back a dead actor's, and tells when all are done."""

    planner: BatchPlanner
    _held: dict[int, tuple[str, Assignment]] = field(default_factory=dict)
    _requeued: deque[Assignment] = field(default_factory=deque)
    _dead: set[str] = field(default_factory=set)
    _stopped: bool = False
    _next_unit: int = 0
    acknowledged: dict[int, IdRange] = field(default_factory=dict)
    resends: int = 0

    def assign(self, actor: str) -> Assignment | None:
        """The next unit for ``actor``, or None (nothing to hand out now, or the actor is dead)."""
        if actor in self._dead:
            return None
        if self._requeued:
            lost = self._requeued.popleft()
            self._held[lost.unit] = (actor, lost)
            self.resends += 1
            return lost
        ids = None if self._stopped else self.planner.next()
        if ids is None:
            return None
        fresh = Assignment(self._next_unit, ids)
        self._next_unit += 1
        self._held[fresh.unit] = (actor, fresh)
        return fresh

    def acknowledge(self, actor: str, unit: int) -> bool:
        """``actor`` finished ``unit``; False (and nothing changes) when it no longer holds it."""
        holder = self._held.get(unit)
        if holder is None or holder[0] != actor:
            return False
        del self._held[unit]
        self.acknowledged[unit] = holder[1].ids
        return True

    def lost(self, actor: str) -> list[Assignment]:
        """``actor`` died: take back its unacknowledged units (returned) to re-send elsewhere."""
        self._dead.add(actor)
        taken = [a for holder, a in self._held.values() if holder == actor]
        for a in taken:
            del self._held[a.unit]
            self._requeued.append(Assignment(a.unit, a.ids, resend=True))
        return taken

    def stop(self) -> None:
        """Issue no fresh range any more (units already issued are still finished)."""
        self._stopped = True

    def held_by(self, actor: str) -> int:
        """How many units ``actor`` holds now."""
        return sum(1 for holder, _ in self._held.values() if holder == actor)

    @property
    def done(self) -> bool:
        """True when every issued unit is acknowledged and no fresh range remains."""
        if self._held or self._requeued:
            return False
        return self._stopped or self.planner.exhausted

    @property
    def issued_range(self) -> IdRange:
        """Every id handed out so far: one contiguous range (reconcile counts it)."""
        return self.planner.issued_range

    @property
    def dead(self) -> frozenset[str]:
        """The actors reported lost."""
        return frozenset(self._dead)


__all__ = ["Assignment", "UnitBook"]
