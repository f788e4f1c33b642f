"""Small structured-concurrency helpers for the job drivers."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import anyio

__all__ = ["leaf_error", "run_all"]


def leaf_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The most telling exception of a group: the first that is not a cancellation."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    cancelled = anyio.get_cancelled_exc_class()
    for exc in leaves:
        if not isinstance(exc, cancelled):
            return exc
    return leaves[0]


async def run_all(*fns: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``fns`` concurrently in one task group; re-raise the first real failure bare.

    When one fails the others are cancelled (task-group semantics); the caller sees the
    failing task's own exception instead of an ``ExceptionGroup``.
    """
    try:
        async with anyio.create_task_group() as tg:
            for fn in fns:
                tg.start_soon(fn)
    except BaseExceptionGroup as group:
        raise leaf_error(group)  # noqa: B904 - keep the leaf's own cause chain
