"""Counting, at the end of a bench run, the target's rows among the ids left without an answer.

``core.reckoning.open_questions`` says which id ranges to count (the unanswered ones and the
given-up ones, apart); the sink's own ``count`` answers each, with the run's retry policy;
``core.summary.settle`` decides from the two sums.  Nothing is asked when every row got an
answer, or when the sink cannot count (``reconciled`` None).  The async runner and the
coordinator await ``count_open``, the thread runner calls ``count_open_blocking``.

The whole recount is bounded by ``limit_s`` (``recount_limit``): the runners run it inside a
shielded scope at the end of the run, which an abort does not cut short, and scattered
given-up ids can make it many counts.  The ranges counted when the limit comes keep their
counts; the rest are ``Found.uncounted``: their rows stay unconfirmed (unanswered ones) or
undelivered (given-up ones), and the summary says how many (``Summary.uncounted``).  The
async twin cancels the count in flight at the limit; the blocking one starts no count past it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING, NamedTuple

import anyio

from async_etl.core.reckoning import Questions, open_questions
from async_etl.core.retry import RetryPolicy
from async_etl.core.stats import RunStats
from async_etl.runtime.retrying import retrying, retrying_blocking
from async_etl.typing import IdRange

if TYPE_CHECKING:
    from async_etl.config import BenchSettings


class Found(NamedTuple):
    """Rows the target holds of the unanswered ids and of the given-up ids; None: not known.

    ``uncounted``: rows of either kind whose ranges the recount did not count before its
    limit (their counts are not in the sums: those rows confirm nothing).
    """

    unanswered: int | None
    given_up: int | None
    uncounted: int = 0


NOTHING_FOUND = Found(None, 0)
"""What a run that keeps no ids, or a sink that cannot count, confirms: nothing."""

_WHAT = "count of the ids without an answer"


def recount_limit(settings: BenchSettings) -> float:
    """Seconds the whole recount may take: ``request_timeout``, one request's own limit."""
    return settings.request_timeout


class _Tally:
    """The sums so far, by kind, and the rows still to count."""

    def __init__(self, questions: Questions) -> None:
        self.kinds = (questions.unanswered, questions.given_up)
        self.sums: list[int | None] = [0, 0]
        self.left = sum(r.count for ranges in self.kinds for r in ranges)

    def todo(self) -> Iterator[tuple[int, IdRange]]:
        return ((k, r) for k, ranges in enumerate(self.kinds) for r in ranges)

    def add(self, kind: int, ids: IdRange, n: int | None) -> None:
        total = self.sums[kind]
        self.sums[kind] = None if total is None or n is None else total + n
        self.left -= ids.count

    def found(self) -> Found:
        return Found(self.sums[0], self.sums[1], self.left)


def questions_for(issued: IdRange, stats: RunStats, reconciled: int | None) -> Questions | None:
    """The ranges to count, or None when nothing can be confirmed (no ids kept, no count)."""
    if reconciled is None or stats.ids is None:
        return None
    return open_questions(issued, stats.ids)


async def count_open(
    count: Callable[[IdRange], Awaitable[int | None]],
    questions: Questions | None,
    policy: RetryPolicy,
    jitter: Callable[[], float],
    limit_s: float,
) -> Found:
    """The target's rows among the unanswered and the given-up ids: ``count`` per range.

    ``count`` is the sink's own (``AsyncSink.count``).  Counting stops at ``limit_s`` seconds
    (the count in flight is cancelled); what was not counted is ``Found.uncounted``.  Raises
    the last ``TransientError`` when a count's retries run out, a fatal ``AsyncEtlError`` at
    once (as the reconcile count).
    """
    if questions is None:
        return NOTHING_FOUND
    tally = _Tally(questions)
    with anyio.move_on_after(limit_s):
        for kind, ids in tally.todo():
            tally.add(kind, ids, await retrying(partial(count, ids), policy, jitter, what=_WHAT))
    return tally.found()


def count_open_blocking(
    count: Callable[[IdRange], int | None],
    questions: Questions | None,
    policy: RetryPolicy,
    jitter: Callable[[], float],
    limit_s: float,
) -> Found:
    """The blocking twin of ``count_open`` (the thread runner); raises as it does.

    No count starts after ``limit_s`` seconds; one already running (with its retries) ends.
    """
    if questions is None:
        return NOTHING_FOUND
    tally = _Tally(questions)
    deadline = time.monotonic() + limit_s
    for kind, ids in tally.todo():
        if time.monotonic() >= deadline:
            break
        tally.add(kind, ids, retrying_blocking(partial(count, ids), policy, jitter, what=_WHAT))
    return tally.found()


__all__ = [
    "NOTHING_FOUND",
    "Found",
    "count_open",
    "count_open_blocking",
    "questions_for",
    "recount_limit",
]
