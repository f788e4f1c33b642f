"""A circuit breaker per target database, as a sans-I/O state machine.

Theory of operation::

    CLOSED --K consecutive transient failures--> OPEN --cool-down elapsed, one job starts-->
    HALF_OPEN --the trial succeeds (or fails for a non-transient reason)--> CLOSED
    HALF_OPEN --the trial fails transiently--> OPEN (a new cool-down starts)

The driver asks ``allows(now)`` before launching a job for the target, calls ``start(now)``
when it launches one and feeds the outcome back with ``finish(ticket, now, outcome)``.  Each
call returns the ``Transition`` events it caused so the driver can log them; the clock is passed
in, so tests drive it by hand.  Only transient outcomes (network, database-transient) count
against a database: a permanent or data error says the database answered.  Outcomes of jobs
started before the breaker last opened are ignored (their ticket's generation is stale), and a
stopped trial gives its place back without changing the state.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from async_etl.core.scheduling import Gate, Outcome

__all__ = ["Breaker", "BreakerState", "Breakers", "Gate", "Outcome", "Ticket", "Transition"]


class BreakerState(StrEnum):
    """Where a breaker is."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


@dataclass(frozen=True, slots=True)
class Transition:
    """One state change of the breaker of ``target`` (log it)."""

    target: str
    old: BreakerState
    new: BreakerState
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class Ticket:
    """Handed out by ``start``: whether the job is the half-open trial, and the generation."""

    trial: bool
    generation: int


class Breaker:
    """The breaker of one target database (``threshold`` failures, ``cooldown`` seconds)."""

    def __init__(self, target: str, *, threshold: int, cooldown: float) -> None:
        """Raises ``ValueError`` when ``threshold < 1`` or ``cooldown < 0``."""
        if threshold < 1 or cooldown < 0:
            raise ValueError("threshold must be >= 1 and cooldown >= 0")
        self.target = target
        self.threshold = threshold
        self.cooldown = cooldown
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.opened_at: float | None = None
        self.trial_running = False
        self.generation = 0

    def allows(self, now: float) -> bool:
        """True when a job for this target may start at ``now``."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            assert self.opened_at is not None
            return now >= self.opened_at + self.cooldown
        return not self.trial_running

    def gate(self, now: float) -> Gate:
        """What the breaker lets through at ``now``: any job, one trial, or none."""
        if not self.allows(now):
            return Gate.SHUT
        return Gate.OPEN if self.state is BreakerState.CLOSED else Gate.TRIAL

    def reopens_at(self) -> float | None:
        """When an open breaker will let a trial through (None unless OPEN)."""
        if self.state is BreakerState.OPEN and self.opened_at is not None:
            return self.opened_at + self.cooldown
        return None

    def start(self, now: float) -> tuple[Ticket, list[Transition]]:
        """Record that a job for this target starts now; raises ``RuntimeError`` if not allowed."""
        if not self.allows(now):
            raise RuntimeError(f"breaker for {self.target} is {self.state} and allows no job")
        events: list[Transition] = []
        if self.state is BreakerState.OPEN:
            events.append(self._move(BreakerState.HALF_OPEN, "cool-down over: one trial", now))
        if self.state is BreakerState.HALF_OPEN:
            self.trial_running = True
            return Ticket(trial=True, generation=self.generation), events
        return Ticket(trial=False, generation=self.generation), events

    def finish(self, ticket: Ticket, now: float, outcome: Outcome) -> list[Transition]:
        """Feed back how a started job ended; returns the transitions it caused."""
        if ticket.trial:
            return self._finish_trial(now, outcome)
        if ticket.generation != self.generation or self.state is not BreakerState.CLOSED:
            return []
        if outcome == "transient":
            self.failures += 1
            if self.failures >= self.threshold:
                return [self._open(f"{self.failures} consecutive transient failures", now)]
        elif outcome in ("success", "permanent"):
            self.failures = 0
        return []

    def _finish_trial(self, now: float, outcome: Outcome) -> list[Transition]:
        self.trial_running = False
        if outcome == "stopped":
            return []
        if outcome == "transient":
            return [self._open("trial failed transiently", now)]
        self.failures = 0
        return [self._move(BreakerState.CLOSED, f"trial ended: {outcome}", now)]

    def _open(self, reason: str, now: float) -> Transition:
        self.opened_at = now
        self.generation += 1
        self.failures = 0
        return self._move(BreakerState.OPEN, reason, now)

    def _move(self, new: BreakerState, reason: str, now: float) -> Transition:
        event = Transition(self.target, self.state, new, reason, now)
        self.state = new
        return event


class Breakers:
    """One ``Breaker`` per target key, created on first use with the same settings."""

    def __init__(self, *, threshold: int, cooldown: float) -> None:
        """Raises ``ValueError`` like ``Breaker``."""
        Breaker("probe", threshold=threshold, cooldown=cooldown)
        self.threshold, self.cooldown = threshold, cooldown
        self._by_target: dict[str, Breaker] = {}

    def __getitem__(self, target: str) -> Breaker:
        """The breaker of ``target``."""
        breaker = self._by_target.get(target)
        if breaker is None:
            breaker = Breaker(target, threshold=self.threshold, cooldown=self.cooldown)
            self._by_target[target] = breaker
        return breaker

    def gates(self, now: float) -> dict[str, Gate]:
        """The gate of every breaker used so far (an unused target's is ``Gate.OPEN``)."""
        return {target: b.gate(now) for target, b in self._by_target.items()}

    def next_reopen(self) -> float | None:
        """The earliest time an open breaker lets a trial through (None if none is open)."""
        times = [t for b in self._by_target.values() if (t := b.reopens_at()) is not None]
        return min(times) if times else None
