"""``drivers.postgres_connections.Shelf``: chunks' connections kept between chunks, on fakes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from async_etl.drivers import postgres_connections
from async_etl.drivers.postgres_connections import (
    Shelf,
    closing_beside,
    connected_ahead,
    keep_from,
    keep_lent,
    lend_kept,
    pg_connection,
    reusing,
    shelve_kept,
    shelved,
)
from async_etl.errors import LoadError
from async_etl.jobs.runner import preflight_keys

URL = "postgresql://u@h/db"


class FakeConn:
    """Just what ``pg_connection`` and ``Shelf`` ask of an asyncpg connection."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.closed = False
        self.in_transaction = False
        self.sent: list[tuple[Any, ...]] = []

    def is_closed(self) -> bool:
        return self.closed

    def is_in_transaction(self) -> bool:
        return self.in_transaction

    async def close(self) -> None:
        self.closed = True

    def terminate(self) -> None:
        self.closed = True

    async def execute(self, query: str, *args: Any) -> str:
        self.sent.append((query, *args))
        return "SELECT 1"


class Tokens:
    """A ``Holder`` counting the budget tokens it holds."""

    def __init__(self) -> None:
        self.held = 0
        self.taken: list[str] = []  # the URLs of the tokens taken, in order

    @asynccontextmanager
    async def __call__(self, url: str) -> AsyncIterator[None]:
        self.taken.append(url)
        self.held += 1
        try:
            yield
        finally:
            self.held -= 1


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[FakeConn]]:
    """Every connection ``connect_job`` opened, in order (fakes, no server)."""
    made: list[FakeConn] = []

    async def connect_job(url: str, app: str) -> FakeConn:
        made.append(FakeConn(len(made)))
        return made[-1]

    monkeypatch.setattr(postgres_connections, "connect_job", connect_job)
    yield made


async def use(holder: Tokens, app: str = "job:run", fail: bool = False, url: str = URL) -> Any:
    """One ``pg_connection`` block; raises ``ValueError`` inside it when ``fail``."""
    async with pg_connection(url, holder, app=app) as conn:
        if fail:
            raise ValueError("boom")
        return conn


async def test_a_clean_block_leaves_its_connection_for_the_next(opened: list[FakeConn]) -> None:
    """Two blocks in turn share one connection; its token is held while idle, freed at aclose."""
    holder, shelf = Tokens(), Shelf(lambda: 2)
    with shelved(shelf):
        first = await use(holder)
        assert holder.held == 1 and not first.closed
        second = await use(holder)
    assert first is second and len(opened) == 1
    await shelf.aclose()
    assert first.closed and holder.held == 0


async def test_a_failed_block_closes_its_connection(opened: list[FakeConn]) -> None:
    """A block that raised closes its connection and frees its token; the next one connects."""
    holder, shelf = Tokens(), Shelf(lambda: 2)
    with shelved(shelf):
        with pytest.raises(ValueError):
            await use(holder, fail=True)
        assert opened[0].closed and holder.held == 0
        again = await use(holder)
    assert again is opened[1]
    await shelf.aclose()


async def test_an_open_transaction_or_a_closed_connection_is_not_reused(
    opened: list[FakeConn],
) -> None:
    """A block left in a transaction is closed; an idle one whose backend ended is skipped."""
    holder, shelf = Tokens(), Shelf(lambda: 2)
    with shelved(shelf):
        async with pg_connection(URL, holder, app="job:run") as conn:
            conn.in_transaction = True
        assert conn.closed and holder.held == 0
        kept = await use(holder)
        kept.closed = True  # the server terminated it while it sat on the shelf
        fresh = await use(holder)
    assert fresh is not kept and len(opened) == 3 and holder.held == 1
    await shelf.aclose()
    assert holder.held == 0


async def test_a_retry_outside_the_shelf_connects_afresh(opened: list[FakeConn]) -> None:
    """``shelved(None)`` (a chunk's retry) neither takes a kept connection nor keeps its own."""
    holder, shelf = Tokens(), Shelf(lambda: 2)
    with shelved(shelf):
        kept = await use(holder)
        with shelved(None):
            retry = await use(holder)
        assert retry is not kept and retry.closed and not kept.closed
    await shelf.aclose()
    assert kept.closed and holder.held == 0


class OneToken:
    """A ``Holder`` of one budget token per database, waited for as a job's budget is."""

    def __init__(self) -> None:
        self.limiter = anyio.CapacityLimiter(1)

    @asynccontextmanager
    async def __call__(self, url: str) -> AsyncIterator[None]:
        async with self.limiter:
            yield


async def test_a_fresh_retry_closes_the_idle_connection_holding_its_token(
    opened: list[FakeConn],
) -> None:
    """``fresh`` (a chunk's retry) under a budget of one: the idle one closes, nothing is kept."""
    holder, shelf = OneToken(), Shelf(lambda: 2)
    with shelved(shelf):
        idle = await use(holder, app="job:run")  # given back: idle, its token held
    with anyio.fail_after(1), shelved(shelf, fresh=True):
        retry = await use(holder, app="job:run")
        async with connected_ahead([(URL, "job:run", holder)]):
            ahead = await use(holder, app="job:run")
    assert idle.closed and retry is not idle and retry.closed and ahead.closed
    await shelf.aclose()
    assert holder.limiter.borrowed_tokens == 0


async def test_idle_connections_are_bounded_by_keep(opened: list[FakeConn]) -> None:
    """Three blocks at once, keep = 2: two stay idle, the third is closed as it comes back."""
    holder, shelf = Tokens(), Shelf(lambda: 2)
    both = anyio.Event()
    inside = 0

    async def block() -> None:
        nonlocal inside
        async with pg_connection(URL, holder, app="job:run"):
            inside += 1
            if inside == 3:
                both.set()
            await both.wait()

    with shelved(shelf):
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(block)
    assert len(opened) == 3 and sum(c.closed for c in opened) == 1 and holder.held == 2
    await shelf.aclose()
    assert all(c.closed for c in opened) and holder.held == 0


async def test_keys_are_kept_apart_and_a_late_give_back_is_closed(opened: list[FakeConn]) -> None:
    """Another application name gets its own connection; one given back after aclose closes."""
    holder, shelf = Tokens(), Shelf(lambda: 2)
    with shelved(shelf):
        a = await use(holder, app="job:run")
        b = await use(holder, app="job:other")
        assert a is not b
        await shelf.aclose()
        late = await use(holder, app="job:run")
    assert late.closed and a.closed and b.closed and holder.held == 0


async def test_aclose_closes_the_idle_connections_at_once(opened: list[FakeConn]) -> None:
    """Two idle connections (two databases): the second's close starts before the first's ends."""
    holder, shelf = Tokens(), Shelf(lambda: 2)
    steps: list[str] = []

    async def close(conn: FakeConn) -> None:
        steps.append(f"start {conn.n}")
        for _ in range(3):  # a close waits for its backend to exit: the loop runs others
            await anyio.lowlevel.checkpoint()
        conn.closed = True
        steps.append(f"end {conn.n}")

    with shelved(shelf):
        a = await use(holder, app="job:source", url=URL + "_source")
        b = await use(holder, app="job:target")
    for conn in (a, b):
        conn.close = lambda conn=conn: close(conn)  # type: ignore[method-assign]
    await shelf.aclose()
    assert sorted(steps[:2]) == ["start 0", "start 1"], steps  # one by one: start, end, start
    assert a.closed and b.closed and holder.held == 0


async def test_a_new_connection_first_closes_idle_ones_of_its_database(
    opened: list[FakeConn],
) -> None:
    """A miss closes the idle connections of the same database (their tokens), not others'."""
    holder, shelf = Tokens(), Shelf(lambda: 2)
    with shelved(shelf):
        a = await use(holder, app="job:source")
        other = await use(holder, app="job:source", url=URL + "_other")
        b = await use(holder, app="job:target")
    assert a.closed and not b.closed and not other.closed
    await shelf.aclose()
    assert holder.held == 0


async def slow_close(conn: FakeConn, steps: list[str]) -> None:
    """A close that, like a graceful one, lets the loop run others before it ends."""
    steps.append("close starts")
    for _ in range(3):  # a close waits for its backend to exit: the loop runs others
        await anyio.lowlevel.checkpoint()
    conn.closed = True
    steps.append("close ends")


async def test_reusing_closes_its_kept_connection_beside_the_next_step(
    opened: list[FakeConn],
) -> None:
    """``reusing(close_in=...)``: the next step runs while the kept one closes; all done after."""
    holder = Tokens()
    steps: list[str] = []

    async with closing_beside() as closing:
        async with reusing(close_in=closing):
            kept = await use(holder)
            kept.close = lambda: slow_close(kept, steps)  # type: ignore[method-assign]
        steps.append("next step starts")
        await anyio.lowlevel.checkpoint()
        steps.append("next step ends")
        assert not kept.closed
    assert steps.index("close starts") < steps.index("next step ends") < steps.index("close ends")
    assert kept.closed and holder.held == 0


async def test_reusing_goes_on_to_another_database_while_the_kept_one_closes(
    opened: list[FakeConn],
) -> None:
    """``reusing(close_in=...)``: a call for another database does not wait for the old close."""
    holder = Tokens()
    steps: list[str] = []

    async with closing_beside() as closing:
        async with reusing(close_in=closing):
            first = await use(holder)
            first.close = lambda: slow_close(first, steps)  # type: ignore[method-assign]
            second = await use(holder, url=URL + "_other")
            steps.append("other database used")
            assert second is not first and not second.closed
        assert holder.taken == [URL, URL + "_other"]
    assert steps.index("other database used") < steps.index("close ends"), steps
    assert first.closed and second.closed and holder.held == 0


async def test_closing_beside_raises_the_blocks_own_error_after_the_closes(
    opened: list[FakeConn],
) -> None:
    """An error in the block comes out as itself, not in a group, once the closes are done."""
    holder, shelf = Tokens(), Shelf(lambda: 1)
    with shelved(shelf):
        kept = await use(holder)
    with pytest.raises(ValueError, match="boom"):
        async with closing_beside() as closing:
            closing.start_soon(shelf.aclose)
            raise ValueError("boom")
    assert kept.closed and holder.held == 0


async def test_a_give_back_of_a_new_key_while_a_take_closes_idle_ones_is_kept_apart(
    opened: list[FakeConn],
) -> None:
    """A take closing its database's idle connections awaits; a give_back meanwhile is fine."""
    holder, shelf = Tokens(), Shelf(lambda: 2)
    with shelved(shelf):
        idle = await use(holder, app="job:source")  # idle under (URL, job:source)
    closing = anyio.Event()

    async def slow_close(conn: FakeConn = idle) -> None:
        closing.set()
        await anyio.sleep(0.05)
        conn.closed = True

    idle.close = slow_close  # type: ignore[method-assign]

    async def give_back_new_key() -> None:
        await closing.wait()  # the take is inside its loop over the idle connections
        with shelved(shelf):
            await use(holder, app="job:other", url=URL + "_other")

    async with anyio.create_task_group() as tg:
        tg.start_soon(give_back_new_key)
        with shelved(shelf):
            await use(holder, app="job:target")  # a miss: closes ``idle`` first
    assert idle.closed


async def test_keep_from_hands_the_shelfs_connection_to_a_reusing_block(
    opened: list[FakeConn],
) -> None:
    """The block's first call takes the idle connection of its key; the block closes it."""
    holder, shelf = Tokens(), Shelf(lambda: 2)
    with shelved(shelf):
        target = await use(holder, app="job:run")
        other = await use(holder, app="job:source", url=URL + "_source")
    assert keep_from(shelf, URL, holder, "job:run") is False  # no reusing block: nothing moves
    async with reusing():
        assert keep_from(shelf, URL, holder, "job:run") is True
        assert await use(holder, app="job:run") is target and len(opened) == 2
        await shelf.aclose()  # the rest of the shelf; the kept one is the block's now
        assert other.closed and not target.closed and holder.held == 1
    assert target.closed and holder.held == 0


async def test_keep_from_takes_no_closed_connection_and_no_other_key(
    opened: list[FakeConn],
) -> None:
    """A connection whose backend ended, or one of another key, stays on the shelf."""
    holder, shelf = Tokens(), Shelf(lambda: 2)
    with shelved(shelf):
        dead = await use(holder, app="job:run")
    dead.closed = True
    async with reusing():
        assert keep_from(shelf, URL, holder, "job:run") is False
        assert keep_from(shelf, URL, holder, "job:other") is False
        fresh = await use(holder, app="job:run")
    assert fresh is not dead and fresh.closed
    await shelf.aclose()
    assert holder.held == 0


async def test_a_lent_connection_goes_on_in_the_next_block_under_its_new_name(
    opened: list[FakeConn],
) -> None:
    """``lend_kept`` takes the block's connection out; ``keep_lent`` renames it for the next."""
    holder = Tokens()
    async with reusing():
        first = await use(holder, app="job:preflight")
        assert lend_kept(URL + "_elsewhere") is None  # only a connection to the URL asked for
        lent = lend_kept(URL)
    assert lent is not None and not first.closed and holder.held == 1
    async with reusing():
        await keep_lent(lent, "job:run-1")
        assert await use(holder, app="job:run-1") is first and len(opened) == 1
    assert first.sent == [("SELECT set_config('application_name', $1, false)",
                           "async-etl:job:run-1")]  # fmt: skip
    assert first.closed and holder.held == 0


async def test_a_lent_connection_outside_a_block_is_closed(opened: list[FakeConn]) -> None:
    """With no ``reusing`` block to take it, ``keep_lent`` closes the connection and its token."""
    holder = Tokens()
    async with reusing():
        first = await use(holder, app="job:preflight")
        lent = lend_kept(URL)
    assert lent is not None
    await keep_lent(lent, "job:run-1")
    assert first.closed and first.sent == [] and holder.held == 0


async def test_a_connection_given_back_while_another_take_only_connects_is_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A take holding its token and connecting does not make a give_back close (no wait)."""
    made: list[FakeConn] = []
    slow = anyio.Event()

    async def connect_job(url: str, app: str) -> FakeConn:
        made.append(FakeConn(len(made)))
        if len(made) == 2:  # the second connect takes a while: the first chunk ends meanwhile
            await slow.wait()
        return made[-1]

    monkeypatch.setattr(postgres_connections, "connect_job", connect_job)
    holder, shelf = Tokens(), Shelf(lambda: 2)

    async def second() -> None:
        with shelved(shelf):
            await use(holder)

    async with anyio.create_task_group() as tg:
        with shelved(shelf):
            async with pg_connection(URL, holder, app="job:run") as first:
                tg.start_soon(second)
                await anyio.wait_all_tasks_blocked()  # the second take holds a token, connects
        assert not first.closed  # kept for the next chunk
        slow.set()
    await shelf.aclose()
    assert len(made) == 2 and all(c.closed for c in made) and holder.held == 0


@pytest.fixture
def slow_connects(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``connect_job`` as fakes that take a few loop turns (a connect waits on the server)."""
    steps: list[str] = []

    async def connect_job(url: str, app: str) -> FakeConn:
        steps.append(f"start {url}")
        for _ in range(3):
            await anyio.lowlevel.checkpoint()
        if url.endswith("_down"):
            steps.append(f"failed {url}")
            raise LoadError(f"PostgreSQL {url}: connection refused")
        steps.append(f"end {url}")
        return FakeConn(len(steps))

    monkeypatch.setattr(postgres_connections, "connect_job", connect_job)
    return steps


async def test_connected_ahead_opens_the_blocks_connections_at_once(
    slow_connects: list[str],
) -> None:
    """Target and source connect together on entry; each block then uses its own, kept after."""
    holder, shelf = Tokens(), Shelf(lambda: 2)
    target, source = (URL, "job:run", holder), (URL + "_source", "job:run", holder)
    with shelved(shelf):
        async with connected_ahead([target, source]):
            assert sorted(slow_connects[:2]) == [f"start {URL}", f"start {URL}_source"]
            assert holder.held == 2
            t = await use(holder)
            s = await use(holder, url=URL + "_source")
        assert len(slow_connects) == 4 and t is not s  # nothing connected in the blocks
        again = await use(holder)  # the target's, kept on the shelf
    assert again is t and not t.closed and not s.closed
    await shelf.aclose()
    assert holder.held == 0


async def test_connected_ahead_takes_idle_ones_and_gives_back_what_was_not_asked_for(
    slow_connects: list[str],
) -> None:
    """A key kept idle is taken, not connected; one the block never used goes back or closes."""
    holder, shelf = Tokens(), Shelf(lambda: 2)
    target, source = (URL, "job:run", holder), (URL + "_source", "job:run", holder)
    with shelved(shelf):
        kept = await use(holder)
        async with connected_ahead([target, source]):
            assert slow_connects == [f"start {URL}", f"end {URL}", f"start {URL}_source",
                                     f"end {URL}_source"]  # fmt: skip
            assert await use(holder) is kept
        unused = await use(holder, url=URL + "_source")  # given back to the shelf unused
        assert len(slow_connects) == 4 and not unused.closed
    await shelf.aclose()
    async with connected_ahead([target]):  # no shelf: closed on the way out
        pass
    assert holder.held == 0 and len(slow_connects) == 6


async def test_a_connect_that_failed_ahead_is_raised_where_its_block_asks(
    slow_connects: list[str],
) -> None:
    """A source that cannot be reached: entering succeeds, its block raises, no token held."""
    holder = Tokens()
    target, down = (URL, "job:run", holder), (URL + "_down", "job:run", holder)
    async with connected_ahead([target, down]):
        assert holder.held == 1 and f"failed {URL}_down" in slow_connects
        async with pg_connection(URL, holder, app="job:run") as conn:
            with pytest.raises(LoadError, match="connection refused"):
                await use(holder, url=URL + "_down")
    assert conn.closed and holder.held == 0 and len(slow_connects) == 4


async def test_preflight_takes_the_target_token_then_the_source_like_a_chunk(
    slow_connects: list[str],
) -> None:
    """Preflight's keys take the target's token first, as chunks do, and still connect at once."""
    holder = Tokens()
    keys = preflight_keys(URL + "_source", "postgresql", URL, "job:preflight", holder)
    async with reusing(), connected_ahead(keys):
        assert holder.taken == [URL, URL + "_source"]  # source first before: a lock inversion
        assert sorted(slow_connects[:2]) == [f"start {URL}", f"start {URL}_source"]
        async with pg_connection(URL + "_source", holder, app="job:preflight"):
            pass  # preflight reads the source first; its connection was opened ahead
    assert len(slow_connects) == 4 and holder.held == 0


async def test_a_reusing_block_keeps_the_connections_opened_ahead_in_turn(
    slow_connects: list[str],
) -> None:
    """Preflight's shape: source and target open at once; each is the block's kept one in turn."""
    holder = Tokens()
    source, target = (URL + "_source", "job:pre", holder), (URL, "job:pre", holder)
    async with reusing(), connected_ahead([target, source]):
        assert len(slow_connects) == 4 and holder.held == 2
        async with pg_connection(URL + "_source", holder, app="job:pre") as s:
            pass
        async with pg_connection(URL, holder, app="job:pre") as t:
            assert s.closed  # the source's kept one closed as the block moved on
        async with pg_connection(URL, holder, app="job:pre") as again:
            assert again is t
    assert len(slow_connects) == 4 and t.closed and holder.held == 0


async def test_a_cancel_while_connecting_ahead_keeps_a_token_per_open_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Cancelled with the target open and the source connecting: the shelved one keeps its token."""
    connected = anyio.Event()

    async def connect_job(url: str, app: str) -> FakeConn:
        if url.endswith("_source"):
            await anyio.sleep_forever()
        connected.set()
        return FakeConn(0)

    monkeypatch.setattr(postgres_connections, "connect_job", connect_job)
    holder, shelf = Tokens(), Shelf(lambda: 2)
    target, source = (URL, "job:run", holder), (URL + "_source", "job:run", holder)
    with shelved(shelf):
        async with anyio.create_task_group() as tg:

            async def chunk() -> None:
                async with connected_ahead([target, source]):
                    pytest.fail("entered with the source still connecting")

            tg.start_soon(chunk)
            await connected.wait()
            await anyio.lowlevel.checkpoint()
            tg.cancel_scope.cancel()
        kept = await use(holder)  # the target's, given back to the shelf
        assert not kept.closed and holder.held == 1  # it holds its token (0 before: over budget)
    await shelf.aclose()
    assert kept.closed and holder.held == 0


async def test_a_reusing_block_refuses_to_adopt_a_second_connection() -> None:
    """Adopting while a connection is kept raises RuntimeError, even under python -O."""
    kept = postgres_connections._Kept()
    first, second = FakeConn(0), FakeConn(1)
    kept.adopt(first, AsyncExitStack(), (URL, "job:pre", Tokens()))
    with pytest.raises(RuntimeError, match="keeps one connection at a time"):
        kept.adopt(second, AsyncExitStack(), (URL, "job:pre", Tokens()))
    assert kept.conn is first


async def test_shelve_kept_moves_a_blocks_kept_connection_to_the_shelf(
    opened: list[FakeConn],
) -> None:
    """The block's kept connection waits on the shelf, token held, for the next chunk's take."""
    holder, shelf = Tokens(), Shelf(lambda: 1)
    assert not await shelve_kept(shelf)  # outside a block: nothing to move
    async with reusing():
        assert not await shelve_kept(shelf)  # the block keeps none yet
        kept = await use(holder)
        assert await shelve_kept(shelf)
    assert not kept.closed and holder.held == 1  # the block's end closed nothing
    with shelved(shelf):
        taken = await use(holder)
    assert taken is kept and len(opened) == 1
    await shelf.aclose()
    assert kept.closed and holder.held == 0


async def test_shelve_kept_closes_what_a_closed_shelf_or_an_open_transaction_cannot_keep(
    opened: list[FakeConn],
) -> None:
    """On a closed shelf, or in a transaction, the connection closes and its token goes back."""
    holder, shelf = Tokens(), Shelf(lambda: 1)
    shelf.closed = True
    async with reusing():
        late = await use(holder)
        assert await shelve_kept(shelf)
    open_shelf = Shelf(lambda: 1)
    async with reusing():
        busy = await use(holder)
        busy.in_transaction = True
        assert await shelve_kept(open_shelf)
    assert late.closed and busy.closed and holder.held == 0
