"""The orchestrator's scheduling decision as one pure step: jobs, clock and limits in; actions out.

Theory of operation
-------------------
The orchestrator's loop (``orchestrator/driver.py``) calls ``decide`` whenever something changed
(an attempt ended, a job got its global slot, a timer fired, a stop arrived) and carries out the
actions it returns, in order; ``settle`` decides what an ended attempt means.  Nothing here
awaits, reads a clock, takes a lock or logs: the clock, the free capacity and the breakers'
gates come in as plain values, so ``tests/core`` drives every case by hand.

Acquisition order.  A pending job takes its holds in this order, and never holds a later one
while it waits for an earlier one:

1. ``Claim``: a token of the local limiter and the job's admission reservation (its minimum
   connections per database).  Both are counted here and only what is free is claimed, so a
   claim never waits.  A claimed job then waits for a global slot (an advisory lock shared by
   every orchestrator on the state store: the only hold that can wait long).
2. ``Start``: once the job holds its global slot, its target's breaker is asked *at that
   moment*.  Open (a closed breaker) or one trial free: the job starts and takes its breaker
   ticket (the half-open trial included).  Shut (it opened, or another job took the trial,
   while this one waited): ``Release`` gives back slot, token and reservation, and the job
   waits as pending until the breaker lets one through again.

So the breaker's single half-open trial is never held by a job that is still waiting for a
slot, and a breaker that opened during the wait is obeyed.  (Before this step the ticket was
taken with the local token, so a job admitted by a closed breaker ran against a database the
breaker had since judged down, and a trial could sit in the slot queue for minutes.)  Holds
go back in the reverse order: the driver feeds the breaker the outcome (from ``settle``)
before it lets the slot go.

A job's ``phase`` tells where it is: ``idle`` (holds nothing), ``claimed`` (waits for its
slot), ``slotted`` (holds the slot, awaits ``Start`` / ``Release``), ``running``, ``leaving``
(released, giving its holds back).  Any phase but ``idle`` is in flight.

Order among ready jobs: as given (the driver passes them highest first, ``dag.heights``); a job
that cannot be claimed now (back-off, breaker shut, reservation does not fit) is passed over and
later ones may still be claimed.  While a breaker offers one trial, at most one job of its
target is claimed or started.  Stopping claims nothing and releases every slotted job.

``Done`` when nothing is in flight and nothing is pending (or the plan is stopping); otherwise
``Wait`` until the earliest back-off end or breaker reopening still ahead (``None``: until
woken; a time already past would make the loop spin while every token is taken).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal, Protocol

from async_etl.core import dag
from async_etl.core.retry import RetryPolicy

Phase = Literal["idle", "claimed", "slotted", "running", "leaving"]
"""Where a job's attempt is (see the module doc)."""

Outcome = Literal["success", "transient", "permanent", "stopped"]
"""How a job attempt ended, as far as the breaker and the degradation care."""


class Gate(StrEnum):
    """What a target's breaker lets through now."""

    OPEN = "open"
    """The breaker is closed: any number of jobs."""
    TRIAL = "trial"
    """The cool-down is over: one trial job."""
    SHUT = "shut"
    """The breaker is open (or its trial is running): none."""


class Job(Protocol):
    """One job as the step reads it (the driver's job state satisfies it, so nothing is copied).

    ``target_key``: its target database's key (the breaker's); ``needs``: its minimum
    connections per database key; ``not_before``: the end of its retry back-off (clock s).
    """

    @property
    def name(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def phase(self) -> Phase: ...
    @property
    def target_key(self) -> str: ...
    @property
    def not_before(self) -> float: ...
    @property
    def needs(self) -> Mapping[str, int]: ...


@dataclass(frozen=True, slots=True)
class JobView:
    """A plain ``Job`` (for tests and callers without a state object of their own)."""

    name: str
    status: str
    phase: Phase = "idle"
    target_key: str = ""
    not_before: float = 0.0
    needs: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Limits:
    """Free capacity now: local tokens, unreserved connections per database, breaker gates.

    A database missing from ``free`` has no connection free; a target missing from ``gates``
    is ``Gate.OPEN``.  ``reopen_at``: the earliest time an open breaker lets a trial through.
    """

    local_free: int
    free: Mapping[str, int] = field(default_factory=dict)
    gates: Mapping[str, Gate] = field(default_factory=dict)
    reopen_at: float | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    """Take a local token and the job's reservation; the job then waits for a global slot."""

    job: str


@dataclass(frozen=True, slots=True)
class Start:
    """The job holds its global slot: take its breaker ticket and run it."""

    job: str


@dataclass(frozen=True, slots=True)
class Release:
    """The job holds its global slot but may not run: give slot, token and reservation back."""

    job: str
    reason: str


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing more to do now: wait to be woken, or until ``until`` (clock seconds)."""

    until: float | None


@dataclass(frozen=True, slots=True)
class Done:
    """Nothing in flight and nothing (more) to run: the plan run is over."""


Action = Claim | Start | Release | Wait | Done


def decide(
    jobs: Sequence[Job],
    deps: dag.Deps,
    now: float,
    limits: Limits,
    *,
    stopping: bool = False,
) -> list[Action]:
    """The actions to carry out now, in order; the last one is always a ``Wait`` or ``Done``.

    ``jobs`` in launch priority order; ``deps`` maps every job to its dependencies.  One pass
    over ``jobs`` (the loop calls this after every change, so it stays linear).
    """
    gates = dict(limits.gates)
    succeeded: set[str] = set()
    waiting: list[Job] = []
    slotted: list[Job] = []
    taken: set[str] = set()  # targets whose single trial is claimed or started
    in_flight = pending = False
    wake = limits.reopen_at if limits.reopen_at is not None and limits.reopen_at > now else None
    for job in jobs:
        status, phase = job.status, job.phase
        if status == "SUCCEEDED":
            succeeded.add(job.name)
        elif status == "PENDING":
            pending = True
        if phase == "idle":
            if status == "PENDING":
                waiting.append(job)
                if job.not_before > now and (wake is None or job.not_before < wake):
                    wake = job.not_before
            continue
        in_flight = True
        if phase == "slotted":
            slotted.append(job)
        elif phase == "claimed" and gates.get(job.target_key, Gate.OPEN) is Gate.TRIAL:
            taken.add(job.target_key)
    actions: list[Action] = []
    for job in slotted:
        gate = gates.get(job.target_key, Gate.OPEN)
        if stopping:
            actions.append(Release(job.name, "the plan is stopping"))
        elif gate is Gate.SHUT:
            actions.append(Release(job.name, f"the breaker of {job.target_key} is open"))
        else:
            actions.append(Start(job.name))
            if gate is Gate.TRIAL:
                gates[job.target_key] = Gate.SHUT
    if not stopping:
        claims = _claims(waiting, succeeded, deps, now, limits, gates, taken)
        actions += claims
        in_flight = in_flight or bool(claims)
    if not in_flight and (stopping or not pending):
        actions.append(Done())
    else:
        actions.append(Wait(None if stopping else wake))
    return actions


def _waiting(job: Job) -> bool:
    return job.status == "PENDING" and job.phase == "idle"


def _claims(
    waiting: Sequence[Job],
    succeeded: set[str],
    deps: dag.Deps,
    now: float,
    limits: Limits,
    gates: Mapping[str, Gate],
    taken: set[str],
) -> list[Claim]:
    """Claims for ``waiting`` jobs (pending, idle), in order, while local tokens last."""
    local, free = limits.local_free, dict(limits.free)
    out: list[Claim] = []
    for job in waiting:
        if local < 1:
            break
        gate = gates.get(job.target_key, Gate.OPEN)
        if job.not_before > now or gate is Gate.SHUT:
            continue
        if gate is Gate.TRIAL and job.target_key in taken:
            continue
        if not all(d in succeeded for d in deps[job.name]):
            continue
        if any(free.get(db, 0) < n for db, n in job.needs.items()):
            continue
        out.append(Claim(job.name))
        local -= 1
        for db, n in job.needs.items():
            free[db] = free.get(db, 0) - n
        if gate is Gate.TRIAL:
            taken.add(job.target_key)
    return out


@dataclass(frozen=True, slots=True)
class Settled:
    """What an ended attempt means for its job.

    ``status``: the job's new status (``PENDING`` for a retry after ``delay`` seconds);
    ``outcome``: what the breaker and the degradation are told; ``skip``: pending dependents
    that become SKIPPED, with ``reason``.
    """

    status: str
    outcome: Outcome
    delay: float = 0.0
    skip: tuple[str, ...] = ()
    reason: str = ""


def settle(
    job: str,
    result: str,
    *,
    transient: bool,
    attempts: int,
    policy: RetryPolicy,
    jitter: float,
    stopping: bool,
    jobs: Sequence[Job],
    deps: dag.Deps,
) -> Settled:
    """Decide after attempt number ``attempts`` of ``job`` ended with status ``result``.

    ``transient``: the failure's kind is retryable (network, database-transient); ``jitter``: a
    uniform draw in [0, 1) for the back-off; ``jobs``: every job now (for the dependents).
    """
    if result == "SUCCEEDED":
        return Settled("SUCCEEDED", "success")
    if result in ("STOPPED", "RUNNING"):
        skip = () if stopping else _dependents(job, jobs, deps)
        return Settled("STOPPED", "stopped", skip=skip, reason=f"dependency {job} stopped")
    decision = policy.decide(attempts, retryable=transient, jitter=jitter)
    if decision.retry and not stopping:
        return Settled("PENDING", "transient", delay=decision.delay)
    outcome: Outcome = "transient" if transient else "permanent"
    skip = _dependents(job, jobs, deps)
    return Settled("FAILED", outcome, skip=skip, reason=f"dependency {job} failed")


def _dependents(job: str, jobs: Sequence[Job], deps: dag.Deps) -> tuple[str, ...]:
    """``job``'s transitive dependents that are pending and hold nothing."""
    idle = {j.name for j in jobs if _waiting(j)}
    return tuple(name for name in dag.dependents_of(deps, job) if name in idle)
