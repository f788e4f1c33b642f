"""Counting, at the end of a bench run, the target's rows among the ids left without an answer.

``core.reckoning.open_questions`` says which id ranges to count (the unanswered ones and the
given-up ones, apart); the sink's own ``count`` answers each, with the run's retry policy;
``core.summary.settle`` decides from the two sums.  Nothing is asked when every row got an
answer, or when the sink cannot count (``reconciled`` None).  The async runner and the
coordinator await ``count_open``, the thread runner calls ``count_open_blocking``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial

from async_etl.core.reckoning import Questions, open_questions
from async_etl.core.retry import RetryPolicy
from async_etl.core.stats import RunStats
from async_etl.runtime.retrying import retrying, retrying_blocking
from async_etl.typing import IdRange

Found = tuple[int | None, int | None]
"""Rows the target holds of (the unanswered ids, the given-up ids); None: not known."""

NOTHING_FOUND: Found = (None, 0)
"""What a run that keeps no ids, or a sink that cannot count, confirms: nothing."""

_WHAT = "count of the ids without an answer"


def questions_for(issued: IdRange, stats: RunStats, reconciled: int | None) -> Questions | None:
    """The ranges to count, or None when nothing can be confirmed (no ids kept, no count)."""
    if reconciled is None or stats.ids is None:
        return None
    return open_questions(issued, stats.ids)


def _total(counts: Sequence[int | None]) -> int | None:
    return None if any(n is None for n in counts) else sum(n or 0 for n in counts)


async def count_open(
    count: Callable[[IdRange], Awaitable[int | None]],
    questions: Questions | None,
    policy: RetryPolicy,
    jitter: Callable[[], float],
) -> Found:
    """The target's rows among the unanswered and the given-up ids: ``count`` per range.

    ``count`` is the sink's own (``AsyncSink.count``).  Raises the last ``TransientError``
    when a count's retries run out, a fatal ``AsyncEtlError`` at once (as the reconcile count).
    """
    if questions is None:
        return NOTHING_FOUND
    found: list[int | None] = []
    for ranges in (questions.unanswered, questions.given_up):
        each = [await retrying(partial(count, r), policy, jitter, what=_WHAT) for r in ranges]
        found.append(_total(each))
    return found[0], found[1]


def count_open_blocking(
    count: Callable[[IdRange], int | None],
    questions: Questions | None,
    policy: RetryPolicy,
    jitter: Callable[[], float],
) -> Found:
    """The blocking twin of ``count_open`` (the thread runner); raises as it does."""
    if questions is None:
        return NOTHING_FOUND
    kinds = (questions.unanswered, questions.given_up)
    unanswered, given_up = (
        _total([retrying_blocking(partial(count, r), policy, jitter, what=_WHAT) for r in ranges])
        for ranges in kinds
    )
    return unanswered, given_up


__all__ = ["NOTHING_FOUND", "Found", "count_open", "count_open_blocking", "questions_for"]
