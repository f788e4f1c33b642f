"""One retry loop for every database round trip: an async helper and its blocking twin.

Theory of operation: a *round trip* is a call that opens (or reuses) a connection, does one
unit of work and returns.  When it raises a ``TransientError`` (a lost connection, SQLSTATE
``08xxx``/``57P0x``, 429/503, ...) the pure ``RetryPolicy`` decides whether to try again and
after how long; ``reset`` (when given) runs after that backoff sleep, right before the next
attempt, so a caller that keeps a connection between calls drops the broken one and
reconnects only then: a connection made before the sleep could be cut during it and spend
an attempt without being used (a plan's state connection under terminations every 250 ms).
A call that opens its own connection inside (``pg_connection``) reconnects by itself.  Any
other error is raised at once: permanent failures are one line already, and are never
retried.

The unit retried must be safe to repeat: a read, an idempotent write, or one transaction
(the server rolled it back when the connection died).  Never retry the second half of a unit.

Used by the bench runners (prepare, reconcile), mapper jobs (preflight, estimate, chunk
planning, target preparation, the state store), the CrateDB job driver and the orchestrator
(plan state, global slots).
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from async_etl.core.retry import RetryPolicy
from async_etl.errors import TransientError
from async_etl.log import get_logger

__all__ = ["backoff", "retrying", "retrying_blocking"]

log = get_logger(__name__)
T = TypeVar("T")


async def retrying(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    jitter: Callable[[], float] = random.random,
    *,
    what: str = "",
    reset: Callable[[], Awaitable[None]] | None = None,
) -> T:
    """Await ``call()``, retrying ``TransientError`` with ``policy`` (``jitter``: U[0, 1)).

    ``what`` names the step in the ``retrying`` log event; ``reset`` is awaited after the
    backoff sleep, right before each new attempt.  Raises the last ``TransientError`` when
    the retries run out, and any other exception at once.
    """
    attempt = 1
    while True:
        try:
            return await call()
        except TransientError as exc:
            delay = backoff(exc, attempt, policy, jitter, what=what)
            attempt += 1
            await anyio.sleep(delay)
            if reset is not None:
                await reset()


def retrying_blocking(
    call: Callable[[], T],
    policy: RetryPolicy,
    jitter: Callable[[], float] = random.random,
    *,
    what: str = "",
    reset: Callable[[], None] | None = None,
) -> T:
    """``call()``, retrying like ``retrying`` but sleeping the thread instead of awaiting.

    Raises the last ``TransientError`` when the retries run out, and any other exception at
    once.
    """
    attempt = 1
    while True:
        try:
            return call()
        except TransientError as exc:
            delay = backoff(exc, attempt, policy, jitter, what=what)
            attempt += 1
            time.sleep(delay)
            if reset is not None:
                reset()


def backoff(
    exc: TransientError,
    attempt: int,
    policy: RetryPolicy,
    jitter: Callable[[], float] = random.random,
    *,
    what: str = "",
) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based), logged as ``retrying``.

    For loops that cannot be one ``retrying`` call (a bulk resending only its failed items).
    Re-raises ``exc`` when the policy gives up.
    """
    decision = policy.after(attempt, exc, jitter())
    if not decision.retry:
        raise exc
    log.warning("retrying", what=what or None, attempt=attempt,
                delay_s=round(decision.delay, 3), reason=exc.message)  # fmt: skip
    return decision.delay
