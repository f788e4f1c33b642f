"""A job's connection grant: its minimum taken out of a shared budget up front, then lent out.

Theory of operation
-------------------
Jobs sharing a ``ConnectionBudget`` take one token per open connection.  Taken one at a time
as connections open, two jobs can each hold what the other waits for: job A reads database S
into T, job B reads T into S; A's chunks hold T's tokens and wait for S's, B's hold S's and
wait for T's, and neither ever gives one back.  So a job waits on the shared budget while it
holds tokens there in one place only:

1. **Reserve** (``reserved``): before it opens anything, a job takes its minimum on every
   database it uses (``core.job_budget``: what it needs open at once to make progress).  It
   takes the databases' *gates* (one lock per limiter) in the order of their keys, then the
   tokens, waiting, and lets the gates go once it holds them all.  Only a reserving job waits
   while holding tokens, and no two reserving jobs wait on one database (its gate is held by
   one of them), so the tokens a reservation waits for are held by jobs that hold their whole
   minimum; those never wait on the shared budget (2), finish their steps and give tokens
   back.  No cycle of waits can form.  A limit below the minimum is refused at once, in one
   line, instead of waited on.
2. **Lend** (``Grant.hold``): each connection of the job takes a token of its grant: a free
   one the grant holds; else one more from the shared budget if one is free now (never
   waiting there); else it waits for one of the job's own to come back, looking at the shared
   budget again every ``RECHECK_S``.  A token coming back goes to a waiter of the job, unless
   it is above the job's minimum and the shared budget wants it (a reservation waits there,
   or its limit was lowered below what is borrowed), or no one of the job waits: then it goes
   back to the shared budget.  So limits stay adjustable at run time: a raised one serves the
   next connection (or recheck), a lowered one takes back the tokens above the minimums as
   they come back.

Inside one job the steps take their tokens in one order (a chunk: target, then source), so a
step waiting for the job's own token waits for steps that hold all of theirs.  A step with
two connections on one database (an Oracle source and target in one database; a chunk
executor holding a source and a target token) takes both of that database's tokens at once
(``Grant.step``): taken one by one, two such chunks under a grant of two could each hold one
and wait for ever for the other's.  Waiters are served first come, first served, each with
all the tokens it asks for at once, so a step never holds part of its need while waiting.
"""

from __future__ import annotations

import weakref
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import anyio

from async_etl.errors import ConfigError, StopRequested
from async_etl.jobs.api import ConnectionBudget
from async_etl.jobs.budget import database_key, token_limit
from async_etl.log import get_logger

__all__ = ["RECHECK_S", "Grant", "reserved"]

log = get_logger(__name__)

RECHECK_S = 0.05
"""How often a connection waiting for one of its job's tokens looks at the shared budget."""

_GATES: weakref.WeakKeyDictionary[anyio.CapacityLimiter, anyio.Lock] = weakref.WeakKeyDictionary()


def _gate(limiter: anyio.CapacityLimiter) -> anyio.Lock:
    """The lock under which reservations wait for ``limiter``'s tokens (one per limiter)."""
    found = _GATES.get(limiter)
    if found is None:
        found = _GATES[limiter] = anyio.Lock()
    return found


class _Waiter:
    """A step of the job waiting for ``n`` tokens (handed to it at once by ``Grant._give``)."""

    __slots__ = ("event", "n", "tokens")

    def __init__(self, n: int) -> None:
        self.event = anyio.Event()
        self.n = n
        self.tokens: list[object] | None = None


class _Ahead:
    """One step's tokens per database: all of a database's taken at its first connection there.

    ``need``: database key -> connections the step holds there at once (only those above 1).
    """

    __slots__ = ("grant", "lock", "need", "open", "tokens")

    def __init__(self, grant: Grant, need: dict[str, int]) -> None:
        self.grant = grant
        self.need = need
        self.tokens: dict[str, list[object]] = {}
        self.lock = anyio.Lock()
        self.open = True

    def put_back(self, key: str, token: object) -> bool:
        """Keep ``token`` for the step's next connection; False once the step has ended."""
        if self.open:
            self.tokens[key].append(token)
        return self.open


_AHEAD: ContextVar[_Ahead | None] = ContextVar("async_etl_grant_ahead", default=None)


@dataclass(slots=True)
class _Pool:
    """The shared tokens one job holds on one database: free ones, and how many in all."""

    shared: anyio.CapacityLimiter
    minimum: int
    free: list[object] = field(default_factory=list)
    held: int = 0
    waiters: deque[_Waiter] = field(default_factory=deque)

    def grab(self) -> object | None:
        """One more shared token if one is free now (None: it would wait)."""
        token = object()
        try:
            self.shared.acquire_on_behalf_of_nowait(token)
        except anyio.WouldBlock:
            return None
        self.held += 1
        return token

    def take_now(self, n: int) -> list[object] | None:
        """``n`` tokens now: free ones, then shared ones free now (None: all or nothing)."""
        grabbed: list[object] = []
        while len(self.free) + len(grabbed) < n:
            token = self.grab()
            if token is None:
                for back in grabbed:
                    self.held -= 1
                    self.shared.release_on_behalf_of(back)
                return None
            grabbed.append(token)
        return grabbed + [self.free.pop() for _ in range(n - len(grabbed))]

    def wanted(self) -> bool:
        """Whether the shared budget wants a token back (a waiter, or a lowered limit)."""
        stats = self.shared.statistics()
        return stats.tasks_waiting > 0 or stats.borrowed_tokens > stats.total_tokens


class Grant:
    """The tokens a job holds out of a shared budget, lent to its connections (see module).

    Built by ``reserved``; ``hold(url)`` serves the databases it covers (``covers``).
    """

    def __init__(self) -> None:
        self._pools: dict[str, _Pool] = {}
        self._closed = False

    def covers(self, url: str) -> bool:
        """Whether the database at ``url`` is one this grant holds tokens of."""
        return database_key(url) in self._pools

    @asynccontextmanager
    async def hold(self, url: str, stop: anyio.Event | None = None) -> AsyncIterator[None]:
        """Hold one token of the database at ``url`` for the block (one connection's worth).

        Raises ``StopRequested`` when ``stop`` is set while still waiting, and ``KeyError``
        for a database the grant does not cover.
        """
        key = database_key(url)
        pool = self._pools[key]
        ahead = _AHEAD.get()
        if ahead is not None and ahead.grant is self and ahead.open and key in ahead.need:
            async with ahead.lock:  # the step's first connection there takes them all at once
                if key not in ahead.tokens:
                    ahead.tokens[key] = await self._take(pool, stop, ahead.need[key])
            spare = ahead.tokens[key]
            if spare:
                token = spare.pop()
                try:
                    yield
                finally:
                    if not ahead.put_back(key, token):  # held past its step: to the grant
                        self._give(pool, token)
                return
        (token,) = await self._take(pool, stop, 1)
        try:
            yield
        finally:
            self._give(pool, token)

    @asynccontextmanager
    async def step(self, urls: Sequence[str]) -> AsyncIterator[None]:
        """A step whose connections (one URL each) take a database's tokens at once.

        Where the step holds two or more connections on one database, its first connection
        there takes all their tokens together, and the others use them (see the module doc);
        tokens left unused go back when the block ends.  Raises nothing itself.
        """
        counts = Counter(database_key(u) for u in urls if self.covers(u))
        ahead = _Ahead(self, {key: n for key, n in counts.items() if n > 1})
        reset = _AHEAD.set(ahead)
        try:
            yield
        finally:
            _AHEAD.reset(reset)
            ahead.open = False
            for key, tokens in ahead.tokens.items():
                while tokens:
                    self._give(self._pools[key], tokens.pop())

    async def _take(self, pool: _Pool, stop: anyio.Event | None, n: int) -> list[object]:
        """``n`` tokens of ``pool`` at once, first come first served (see the module doc)."""
        if not pool.waiters:
            taken = pool.take_now(n)
            if taken is not None:
                return taken
        waiter = _Waiter(n)
        pool.waiters.append(waiter)
        try:
            while waiter.tokens is None:
                if stop is not None and stop.is_set():
                    raise StopRequested("stop requested while waiting for a connection token")
                with anyio.move_on_after(RECHECK_S):
                    await waiter.event.wait()
                if waiter.tokens is None and pool.waiters[0] is waiter:
                    taken = pool.take_now(n)
                    if taken is not None:  # took them itself
                        pool.waiters.popleft()
                        waiter.tokens = taken
        except BaseException:
            if waiter in pool.waiters:
                pool.waiters.remove(waiter)
            for token in waiter.tokens or ():  # handed over just as it was cancelled
                self._give(pool, token)
            self._serve(pool)  # the next one may be served now
            raise
        return waiter.tokens

    def _give(self, pool: _Pool, token: object) -> None:
        above = pool.held > pool.minimum
        if self._closed or (above and (pool.wanted() or not pool.waiters)):
            pool.held -= 1
            pool.shared.release_on_behalf_of(token)
        else:
            pool.free.append(token)
            self._serve(pool)

    @staticmethod
    def _serve(pool: _Pool) -> None:
        """Hand free tokens to the waiters in turn, each all it asks for at once."""
        while pool.waiters and len(pool.free) >= pool.waiters[0].n:
            waiter = pool.waiters.popleft()
            waiter.tokens = [pool.free.pop() for _ in range(waiter.n)]
            waiter.event.set()

    def _close(self) -> None:
        """Give every free token back; tokens still lent go back as their blocks end."""
        self._closed = True
        for pool in self._pools.values():
            while pool.free:
                pool.held -= 1
                pool.shared.release_on_behalf_of(pool.free.pop())


@asynccontextmanager
async def reserved(
    budget: ConnectionBudget,
    need: Mapping[str, int],
    stop: anyio.Event | None = None,
    refuse: Callable[[str, int], str] | None = None,
) -> AsyncIterator[Grant]:
    """Take ``need`` (URL -> connections) out of ``budget`` as one reservation; yield the grant.

    URLs naming one database add up.  Waits while other jobs hold the tokens (see the module
    doc).  Raises ``ConfigError`` (``refuse(database key, limit)``, or a plain line naming
    the database and the numbers) when a database's limit is below what it needs, and
    ``StopRequested`` when ``stop`` is set while waiting.  Every token goes back at the end.
    """
    wants: dict[str, tuple[str, int]] = {}
    for url, n in need.items():
        key = database_key(url)
        first, had = wants.get(key, (url, 0))
        wants[key] = (first, had + n)
    grant = Grant()
    for key, (url, n) in wants.items():
        limiter = budget.limiter(url)
        limit = token_limit(limiter)
        if limit < n:
            raise ConfigError(
                refuse(key, limit)
                if refuse is not None
                else f"the connection budget for {key} is {limit}; {n} connections are "
                f"needed there at once, so this could never run"
            )
        grant._pools[key] = _Pool(limiter, n)
    try:
        await _take_all(grant, wants, stop)
        yield grant
    finally:
        grant._close()


async def _take_all(
    grant: Grant, wants: Mapping[str, tuple[str, int]], stop: anyio.Event | None
) -> None:
    """Take every database's minimum under the gates, in key order (see the module doc)."""
    done = False

    async def take() -> None:
        nonlocal done
        async with AsyncExitStack() as gates:
            pools = [(key, grant._pools[key]) for key in sorted(wants)]
            for _, pool in pools:
                await gates.enter_async_context(_gate(pool.shared))
            short = {k: p.minimum for k, p in pools if p.shared.available_tokens < p.minimum}
            if short:
                log.info("waiting_for_connection_budget", databases=short)
            for _, pool in pools:
                while pool.held < pool.minimum:
                    token = object()
                    await pool.shared.acquire_on_behalf_of(token)
                    pool.held += 1
                    pool.free.append(token)
        done = True
        tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(take)
        if stop is not None:
            await stop.wait()
            tg.cancel_scope.cancel()
    if not done:
        raise StopRequested("stop requested while waiting for the job's connection budget")
