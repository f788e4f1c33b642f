"""Delivery lanes: tasks kept from one job to the next, so a job costs a hand-over, not a task.

Theory of operation
-------------------
Starting an anyio task is dear next to a 100-row batch: ``TaskGroup.start_soon`` builds a task
handle with its own cancel scope and event besides the asyncio task (~17 µs a task by ``timeit``
on this machine, against ~2 µs to wake a task that waits), and the async runner started one per
batch (issue 12, network scenario).  ``Lanes`` keeps the tasks instead::

    submit(job) ──> an idle lane?  yes: hand it the job and wake it
                                   no:  start a new lane in the task group with the job
    lane: await work(job) ──> park in the idle list ──> woken with the next job, or by close()

* **Bounded by the caller.**  A lane is started only when none is idle, so there are never more
  lanes than jobs that were running at once; the engine submits a batch only while it holds a
  send token, so its lanes never outnumber the most tokens ever held.
* **Structured.**  Every lane is a task of the caller's task group: an exception in ``work``
  fails the group as a task per job did, and cancelling the group cancels busy and parked
  lanes alike.  ``close()`` ends parked lanes at once and busy ones after their job; the group
  then exits.  A job is never dropped silently: one handed to a lane that is cancelled before it
  wakes goes to ``dropped`` (the engine gives its send token back there).
* Parked lanes are reused last in, first out (the warmest first).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import anyio
from anyio.abc import TaskGroup

__all__ = ["Lanes"]

J = TypeVar("J")


class _Parked(Generic[J]):
    """A lane waiting for its next job (``job`` None when it is woken to end)."""

    __slots__ = ("event", "job")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.job: J | None = None


class Lanes(Generic[J]):
    """Run each submitted job with ``await work(job)`` in a task of ``tg``, reusing idle tasks.

    ``dropped(job)`` is called for a job handed to a lane that was cancelled before it could
    start it.  ``submit`` after ``close`` raises ``RuntimeError``.
    """

    def __init__(
        self, tg: TaskGroup, work: Callable[[J], Awaitable[None]], dropped: Callable[[J], None]
    ) -> None:
        self._tg = tg
        self._work = work
        self._dropped = dropped
        self._idle: list[_Parked[J]] = []
        self._closed = False
        self.started = 0
        """Lanes started so far (each is one task)."""

    def submit(self, job: J) -> None:
        """Hand ``job`` to an idle lane, or start a lane for it; never waits."""
        if self._closed:
            raise RuntimeError("submit after the lanes were closed")
        if self._idle:
            parked = self._idle.pop()
            parked.job = job
            parked.event.set()
        else:
            self.started += 1
            self._tg.start_soon(self._lane, job)

    def close(self) -> None:
        """No more jobs: parked lanes end now, busy ones after their job.  Safe to call twice."""
        self._closed = True
        idle, self._idle = self._idle, []
        for parked in idle:
            parked.event.set()

    async def _lane(self, job: J) -> None:
        next_job: J | None = job
        while next_job is not None:
            await self._work(next_job)
            if self._closed:
                return
            parked: _Parked[J] = _Parked()
            self._idle.append(parked)
            try:
                await parked.event.wait()
            except BaseException:  # cancelled while parked: nothing may be handed to it now
                if parked.job is not None:
                    self._dropped(parked.job)
                elif parked in self._idle:
                    self._idle.remove(parked)
                raise
            next_job = parked.job
