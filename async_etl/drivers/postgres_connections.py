"""PostgreSQL: a job's connections, and keeping them open between uses.

Built on ``drivers.postgres`` (``connect_job``, ``close_quietly``, ``translate_pg``):

- ``pg_connection`` takes a budget token for the URL (``holder``), connects, yields the
  connection, translates what fails inside the block and closes it under a shielded cancel
  scope (``close_quietly``);
- ``reusing`` is a block (preflight's sequential reads) inside which ``pg_connection`` keeps its
  last connection open for the next call to the same database, instead of closing it and
  opening another (2-4 ms each on a local server); ``let_go``, ``lend_kept`` / ``keep_lent`` /
  ``release_lent``, ``keep_from`` and ``shelve_kept`` move that kept connection out of, into
  and between blocks (and onto a run's ``Shelf``), and ``closing_beside`` runs the closes
  beside the next step;
- ``Shelf`` / ``shelved``: the connections a run's chunks leave behind, kept open (budget token
  held) for the next chunk to take instead of connecting again; a block that failed, or left a
  transaction open, closes its connection instead, and a ``fresh`` one (a chunk's retry)
  connects afresh, through the shelf (its idle connections to that database close first);
- ``connected_ahead``: a block that needs connections to several databases one after the other
  (a chunk: its target, then its source) opens the ones it has not got at the same time, on
  entry, each handed to the first ``pg_connection`` call for it inside.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeAlias

import anyio

from async_etl.core.urls import mask_url
from async_etl.drivers.postgres import (
    APP_PREFIX,
    PG_ERRORS,
    close_quietly,
    connect_job,
    translate_pg,
)
from async_etl.errors import AsyncEtlError
from async_etl.typing import Holder

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

__all__ = [
    "Lent",
    "Shelf",
    "closing_beside",
    "connected_ahead",
    "keep_from",
    "keep_lent",
    "lend_kept",
    "let_go",
    "pg_connection",
    "release_lent",
    "reusing",
    "shelve_kept",
    "shelved",
]


class _Kept:
    """The connection a ``reusing`` block keeps open between ``pg_connection`` calls."""

    def __init__(self, close_in: TaskGroup | None = None) -> None:
        self.task = anyio.get_current_task().id
        self.close_in = close_in
        self.key: tuple[str, str, Holder] | None = None
        self.conn: Any = None
        self.busy = False
        self._token = AsyncExitStack()

    def usable(self) -> bool:
        """Free, and asked for from the block's own task (budget tokens stay in one task)."""
        return not self.busy and anyio.get_current_task().id == self.task

    async def take(self, url: str, holder: Holder, app: str) -> Any:
        """The kept connection when it is to ``url`` as ``app`` under ``holder``, else a new one.

        The one kept before is closed first; when it is to another URL (another database,
        counted against its own budget) it closes while the new one opens.  Either way a block
        never holds more connections to a database than it would without ``reusing``.
        """
        key = (url, app, holder)
        if self.conn is not None and (self.key != key or self.conn.is_closed()):
            if self.key is not None and self.key[0] != url:
                await self._switch(url, holder, app)
            else:
                await self.drop()
        if self.conn is None:
            await self._open(url, holder, app)
        self.busy = True
        return self.conn

    async def _open(self, url: str, holder: Holder, app: str) -> None:
        key = (url, app, holder)
        self.conn, self._token = _opened_ahead(key) or await _connect_held(url, holder, app)
        self.key = key

    async def _switch(self, url: str, holder: Holder, app: str) -> None:
        """Open a connection to ``url`` while the kept one (to another URL) closes.

        With the block's ``close_in`` group the close runs there and the caller goes on once
        its own connection is open (opened ahead: at once), not when the old backend has
        exited; without, this waits for both.
        """
        old, old_token = self.conn, self._token
        self.conn, self.key, self._token = None, None, AsyncExitStack()
        if self.close_in is not None:
            self.close_in.start_soon(_release, old, old_token)
            await self._open(url, holder, app)
            return
        failure: BaseException | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(_release, old, old_token)
            try:
                await self._open(url, holder, app)
            except BaseException as exc:  # raised as itself once the old one is closed
                failure = exc
        if failure is not None:
            raise failure

    def idle(self) -> bool:
        """Usable (see there) and holding no connection: free to ``adopt`` one."""
        return self.usable() and self.conn is None

    def adopt(self, conn: Any, token: AsyncExitStack, key: tuple[str, str, Holder]) -> None:
        """Keep ``conn`` (open, its budget token held by ``token``) for calls matching ``key``.

        Only when ``idle``: the block closes it as its own (``drop``).  Raises
        ``RuntimeError`` otherwise (the block keeps a connection already, is busy, or belongs
        to another task): a second kept connection would never be closed nor its token given
        back.
        """
        if not self.idle():
            raise RuntimeError(
                "a reusing block keeps one connection at a time: adopt called while it is "
                "not idle (it keeps one already, is in use, or belongs to another task)"
            )
        self.conn, self._token, self.key = conn, token, key

    def detach(self, url: str) -> tuple[Any, AsyncExitStack, Holder] | None:
        """Give up the idle open connection kept to ``url``: (connection, token, holder).

        The block then no longer closes it; the caller does.  None when the block is not
        ``usable`` or keeps no open connection to ``url``.
        """
        if not self.usable() or self.key is None or self.key[0] != url:
            return None
        if self.conn is None or self.conn.is_closed():
            return None
        taken = (self.conn, self._token, self.key[2])
        self.conn, self.key, self._token = None, None, AsyncExitStack()
        return taken

    async def give_back(self, *, broken: bool) -> None:
        """Keep the connection for the next call, unless its block failed or left a transaction."""
        self.busy = False
        if broken or self.conn is None or self.conn.is_in_transaction():
            await self.drop()

    async def drop(self) -> None:
        """Close the kept connection and give its budget token back."""
        conn, self.conn, self.key = self.conn, None, None
        await _release(conn, self._token)


async def _connect_held(
    url: str, holder: Holder, app: str, got_token: Callable[[], None] | None = None
) -> tuple[Any, AsyncExitStack]:
    """A new connection to ``url`` as ``app`` and the stack holding its ``holder`` budget token.

    The token is taken first (then ``got_token`` is called) and given back when connecting
    fails; errors are translated (``connect_job``).  ``_release`` undoes both.
    """
    token = await _hold_token(url, holder, got_token)
    return await _connect_on(url, app, token), token


async def _hold_token(
    url: str, holder: Holder, got_token: Callable[[], None] | None = None
) -> AsyncExitStack:
    """The stack holding one ``holder`` budget token for ``url`` (then ``got_token()``)."""
    token = AsyncExitStack()
    await token.enter_async_context(holder(url))
    if got_token is not None:
        got_token()
    return token


async def _connect_on(url: str, app: str, token: AsyncExitStack) -> Any:
    """A new connection to ``url`` as ``app`` under ``token``; gives the token back on failure."""
    try:
        return await connect_job(url, app)
    except BaseException:
        await token.aclose()
        raise


async def _release(conn: Any, token: AsyncExitStack) -> None:
    """Close ``conn`` (if any), then give back the budget token ``token`` holds."""
    try:
        if conn is not None:
            await close_quietly(conn)
    finally:
        await token.aclose()


_KEPT: ContextVar[_Kept | None] = ContextVar("async_etl_pg_kept", default=None)


@asynccontextmanager
async def reusing(close_in: TaskGroup | None = None) -> AsyncIterator[None]:
    """A block of sequential steps whose ``pg_connection`` calls share one open connection.

    Inside it, a ``pg_connection`` whose block ends cleanly (no error, no open transaction)
    leaves its connection open, budget token held, and the next call for the same URL,
    application name and holder gets it again; a call for another database closes it while
    it opens its own (another URL: its own budget), so at most one connection is kept.  A
    call made while the kept one is in use, or from another task, connects as usual.  The
    kept connection is closed when the block ends.  For short sequences of reads
    (preflight): each reuse saves a connection's set-up and tear-down (2-4 ms on a local
    server, more across a network).  A block inside another one of the same task is part of
    it: the connection it leaves stays kept for the outer block's next call (``let_go``
    closes it, e.g. before several connections open at once).  ``close_in``: the kept
    connection is closed in a task of that group, so the caller's next step need not wait for
    its backend to exit (a graceful close, about 2 ms on a local server); so is the one a call
    for another database replaces.
    """
    outer = _KEPT.get()
    if outer is not None and outer.task == anyio.get_current_task().id:
        yield
        return
    kept = _Kept(close_in)
    token = _KEPT.set(kept)
    try:
        yield
    finally:
        _KEPT.reset(token)
        if close_in is None or kept.conn is None:
            await kept.drop()
        else:
            close_in.start_soon(kept.drop)


@asynccontextmanager
async def closing_beside() -> AsyncIterator[TaskGroup]:
    """A task group for closes (``reusing(close_in=...)``, ``Shelf.aclose``) beside the block.

    A graceful close waits for its backend to exit; started here, it runs while the block
    goes on, and the block's end waits for every close.  An exception the block raises passes
    out as itself (not in an exception group) once the closes are done; the closes raise
    nothing (``close_quietly``).  Cancellation passes through as anyio delivers it.
    """
    failure: Exception | None = None
    async with anyio.create_task_group() as tg:
        try:
            yield tg
        except Exception as exc:  # re-raised below, after the closes
            failure = exc
    if failure is not None:
        raise failure


def keep_from(shelf: Shelf, url: str, holder: Holder, app: str) -> bool:
    """Hand ``shelf``'s idle connection for (``url``, ``app``, ``holder``) to ``reusing``.

    It becomes the kept connection of this task's ``reusing`` block; True when there was one.
    The block's next call for that key then needs no connect (a run's swap and sequences start
    on its last chunk's target connection); the block closes it as its own.  Nothing happens
    outside a ``reusing`` block of this task, or when the block keeps a connection already.
    """
    kept = _KEPT.get()
    if kept is None or not kept.idle():
        return False
    taken = shelf.lend((url, app, holder))
    if taken is None:
        return False
    kept.adopt(*taken, (url, app, holder))
    return True


Lent: TypeAlias = tuple[str, Holder, Any, AsyncExitStack]
"""A connection taken out of a ``reusing`` block: (URL, holder, connection, budget token)."""


def lend_kept(url: str) -> Lent | None:
    """Take this task's ``reusing`` block's idle kept connection to ``url`` out of the block.

    The block then does not close it; whoever holds it passes it to ``keep_lent`` (or closes
    it with ``release_lent``).  None outside a block, or when it keeps none to ``url``.
    """
    kept = _KEPT.get()
    taken = None if kept is None else kept.detach(url)
    if taken is None:
        return None
    conn, token, holder = taken
    return (url, holder, conn, token)


async def keep_lent(lent: Lent, app: str) -> None:
    """Make ``lent`` this task's ``reusing`` block's kept connection, renamed ``app``.

    One statement sets its ``application_name`` (as ``connect_job`` names a new one) instead
    of a new connection's set-up; the block closes it as its own.  Outside a block, when the
    block keeps one already, or when the rename fails, ``lent`` is closed instead (the next
    call connects).
    """
    url, holder, conn, token = lent
    kept = _KEPT.get()
    if kept is None or not kept.idle():
        await release_lent(lent)
        return
    try:
        await conn.execute(
            "SELECT set_config('application_name', $1, false)", f"{APP_PREFIX}:{app}"[:63]
        )
    except PG_ERRORS:
        await release_lent(lent)
        return
    kept.adopt(conn, token, (url, app, holder))


async def release_lent(lent: Lent) -> None:
    """Close a connection ``lend_kept`` returned and give its budget token back."""
    await _release(lent[2], lent[3])


async def shelve_kept(shelf: Shelf) -> bool:
    """Move this task's ``reusing`` block's idle kept connection onto ``shelf``, open.

    The run's first chunk then takes it instead of connecting (``connected_ahead`` looks on
    the shelf first): the survey's source and the preparation's target connection, named
    for the run as a chunk's are, wait there while the run is recorded.  ``Shelf.give_back``
    decides as for a chunk's (closed when the shelf is, a transaction is open, or a chunk
    waits for that database's token).  True when one moved; nothing happens outside a
    ``reusing`` block of this task or when it keeps no open connection.
    """
    kept = _KEPT.get()
    key = None if kept is None else kept.key
    taken = None if kept is None or key is None else kept.detach(key[0])
    if key is None or taken is None:
        return False
    conn, token, _ = taken
    await shelf.give_back(key, conn, token, broken=False)
    return True


async def let_go() -> None:
    """Close the connection this task's ``reusing`` block keeps, if any (it stays usable)."""
    kept = _KEPT.get()
    if kept is not None and kept.usable():
        await kept.drop()


_Key = tuple[str, str, Holder]
"""What a kept connection is for: (URL, application name, budget holder)."""


class Shelf:
    """Connections a run's chunks gave back, open with their budget tokens, for the next chunk.

    ``keep()`` bounds the idle connections per (URL, application name, holder): the run's
    worker limit, so a shelf never holds more than the chunks in flight held, and connections
    above a lowered limit are closed as they come back.  ``take`` skips a connection that is
    closed (a terminated backend whose socket ended); ``give_back`` closes a connection whose
    block failed, left a transaction open, or came back after ``aclose``.  Used only through
    ``shelved``; ``aclose`` (the end of the run's chunks) closes every idle one.  One event
    loop, no lock: every method runs between awaits of that loop.
    """

    def __init__(self, keep: Callable[[], int]) -> None:
        self.keep = keep
        self.closed = False
        self._idle: dict[_Key, list[tuple[Any, AsyncExitStack]]] = {}
        self._connecting: dict[str, int] = {}  # URL -> takes waiting for a budget token

    async def take(self, key: _Key, *, fresh: bool = False) -> tuple[Any, AsyncExitStack]:
        """An idle open connection for ``key`` and its token, else a new one (errors translated).

        ``fresh``: always a new one (``shelved``), taken as below.

        An idle connection holds a token of its database's budget, so a shelf must never keep
        one while a chunk waits for a token there (a budget below the chunks in flight, say 3
        for state, source and target on one database, would wait for ever): before a new
        connection is asked for, the idle ones of that database under other keys are closed,
        and while a take waits for its token, ``give_back`` closes instead of keeping (once
        the take holds its token and only connects, a connection given back stays kept: two
        chunks starting together would otherwise close the first one's for nothing).
        """
        found = None if fresh else await self.take_idle(key)
        if found is not None:
            return found
        token = await self.hold(key)
        return await _connect_on(key[0], key[1], token), token

    async def take_idle(self, key: _Key) -> tuple[Any, AsyncExitStack] | None:
        """An idle open connection for ``key`` and its token, off the shelf (None: none open)."""
        idle = self._idle.get(key, [])
        while idle:
            conn, token = idle.pop()
            if not conn.is_closed():
                return conn, token
            await _release(conn, token)
        return None

    async def hold(self, key: _Key) -> AsyncExitStack:
        """A budget token for a new connection for ``key``, taken as ``take`` takes it."""
        url, _, holder = key
        for other, pairs in list(self._idle.items()):  # a give_back may add a key meanwhile
            while other[0] == url and pairs:
                await _release(*pairs.pop())
        self._connecting[url] = self._connecting.get(url, 0) + 1
        waiting = True

        def got_token() -> None:
            nonlocal waiting
            waiting = False
            self._connecting[url] -= 1

        try:
            return await _hold_token(url, holder, got_token)
        finally:
            if waiting:
                self._connecting[url] -= 1

    def lend(self, key: _Key) -> tuple[Any, AsyncExitStack] | None:
        """The last idle connection for ``key`` and its token, off the shelf (None: none open).

        Whoever takes it closes it and gives its token back (``keep_from``).
        """
        idle = self._idle.get(key)
        if idle and not idle[-1][0].is_closed():
            return idle.pop()
        return None

    async def give_back(self, key: _Key, conn: Any, token: AsyncExitStack, *, broken: bool) -> None:
        """Keep ``conn`` idle for the next chunk, or close it (see the class)."""
        idle = self._idle.setdefault(key, [])
        waited_for = self._connecting.get(key[0], 0) > 0  # its token is wanted now
        if broken or self.closed or waited_for or conn.is_closed() or conn.is_in_transaction():
            await _release(conn, token)
            return
        idle.append((conn, token))
        while len(idle) > max(self.keep(), 0):
            await _release(*idle.pop(0))

    async def aclose(self) -> None:
        """Close every idle connection and give its token back; later ones are closed as given.

        The idle connections close at once, not one after another: a graceful close waits for
        its backend to exit (about 2 ms on a local server), and a run's last chunk leaves a
        source and a target connection here.  The tokens are given back in this task, after.
        """
        self.closed = True
        idle = [pair for pairs in self._idle.values() for pair in pairs]
        for pairs in self._idle.values():
            pairs.clear()
        try:
            async with anyio.create_task_group() as tg:
                for conn, _ in idle:
                    tg.start_soon(close_quietly, conn)
        finally:
            for _, token in idle:
                await token.aclose()


_SHELF: ContextVar[tuple[Shelf, bool] | None] = ContextVar("async_etl_pg_shelf", default=None)


@contextmanager
def shelved(shelf: Shelf | None, *, fresh: bool = False) -> Iterator[None]:
    """Inside, this task's ``pg_connection`` calls take from and give back to ``shelf``.

    ``fresh`` (a chunk's retry after a failure, which may have been a terminated backend):
    they take no connection kept from before it and keep none, but connect through the shelf
    (``Shelf.take``): its idle connections to that database close first, and none given back
    while they wait for a token is kept, so a retry never waits for a budget token an idle
    connection holds (under a budget at the job's minimum it would wait for ever).  ``None``:
    they connect outside any shelf.
    """
    token = _SHELF.set(None if shelf is None else (shelf, fresh))
    try:
        yield
    finally:
        _SHELF.reset(token)


_Ready: TypeAlias = dict[_Key, tuple[Any, AsyncExitStack] | BaseException]
_AHEAD: ContextVar[_Ready | None] = ContextVar("async_etl_pg_ahead", default=None)


def _opened_ahead(key: _Key) -> tuple[Any, AsyncExitStack] | None:
    """The connection ``connected_ahead`` opened for ``key`` (None: none); raises its failure."""
    ahead = _AHEAD.get()
    opened = ahead.pop(key, None) if ahead is not None else None
    if isinstance(opened, BaseException):
        raise opened
    return opened


@asynccontextmanager
async def connected_ahead(keys: Sequence[_Key]) -> AsyncIterator[None]:
    """Inside, the first ``pg_connection`` call for each of ``keys`` gets one opened on entry.

    ``keys``: (URL, application name, holder), target before source.  A chunk connects to its
    target, begins its transaction, then connects to its source: one connect after the other
    (3-4 ms each on a local server) wherever nothing is kept.  Here a key with an idle
    connection on this task's shelf (``shelved``) takes it; for the others the budget tokens
    are taken in the order given (every caller passes target before source, the order a
    chunk takes them, so no two blocks under a shared budget wait on each other's token),
    then they all connect at the same time.  A connection that failed to open is not
    raised here: the ``pg_connection`` call for its key raises that error, where the block
    would have met it (translated and named as there).  What the block did not ask for goes
    back to the shelf (or is closed) on the way out.  Raises what taking a token raises
    (``StopRequested``); nested blocks keep their own.  Inside ``reusing`` the kept connection
    is the one opened here, when its block asks for it.
    """
    shelf, fresh = _SHELF.get() or (None, False)
    ready: _Ready = {}
    tokens: dict[_Key, AsyncExitStack] = {}

    async def open_one(key: _Key, token: AsyncExitStack) -> None:
        try:
            ready[key] = (await _connect_on(key[0], key[1], token), token)
        except Exception as exc:  # its token is given back; raised by pg_connection
            ready[key] = exc

    try:
        for key in dict.fromkeys(keys):
            found = await shelf.take_idle(key) if shelf is not None and not fresh else None
            if found is not None:
                ready[key] = found
            else:
                tokens[key] = await (shelf.hold(key) if shelf else _hold_token(key[0], key[2]))
        async with anyio.create_task_group() as tg:
            for key, token in tokens.items():
                tg.start_soon(open_one, key, token)
        tokens.clear()
        reset = _AHEAD.set(ready)
        try:
            yield
        finally:
            _AHEAD.reset(reset)
    finally:
        for key, token in tokens.items():  # taken, never connected (cancelled meanwhile)
            if key not in ready:  # one that did connect keeps its token, given back below
                await token.aclose()
        for key, pair in ready.items():  # opened and not asked for
            if not isinstance(pair, BaseException):
                await (shelf.give_back(key, *pair, broken=fresh) if shelf else _release(*pair))


@asynccontextmanager
async def pg_connection(
    url: str,
    holder: Holder,
    *,
    app: str,
    where: str = "",
    translate_inside: bool = True,
) -> AsyncIterator[Any]:
    """A job's connection to ``url``, opened while ``holder(url)`` holds its budget token.

    Raises ``TransientLoadError`` (lost connection, server restarting, ...), ``DataError`` or
    ``LoadError`` for failures inside the block, each prefixed by ``where`` (default: the
    masked URL) and chained to the driver's exception.  With ``translate_inside=False`` what
    the block raises passes unchanged: a source adapter translates its own reads, and another
    connection's error belongs to that connection's boundary.  Inside a ``reusing`` block the
    connection may be the one the previous call used (see there); inside ``shelved``, one a
    previous chunk gave back (see ``Shelf``).
    """
    label = where or f"PostgreSQL {mask_url(url)}"
    kept = _KEPT.get()
    shared = kept if kept is not None and kept.usable() else None
    shelf, fresh = (_SHELF.get() if shared is None else None) or (None, False)
    key = (url, app, holder)
    opened = _opened_ahead(key) if shared is None else None  # a kept one takes its own
    if opened is not None:
        conn, token = opened
    elif shared is not None:
        conn = await shared.take(url, holder, app)
    elif shelf is not None:
        conn, token = await shelf.take(key, fresh=fresh)
    else:
        conn, token = await _connect_held(url, holder, app)
    broken = True
    try:
        yield conn
        broken = False
    except AsyncEtlError:
        raise
    except PG_ERRORS as exc:
        if not translate_inside:
            raise
        raise translate_pg(exc, label) from exc
    finally:
        if shared is not None:
            await shared.give_back(broken=broken)
        elif shelf is not None:
            await shelf.give_back(key, conn, token, broken=broken or fresh)
        else:
            await _release(conn, token)
