"""The global limit: ``global_max`` slots shared by every orchestrator on one state store.

Theory of operation: slot ``i`` of a namespace is the PostgreSQL session-level advisory lock
``(namespace_key, i)`` for ``0 <= i < global_max``.  A job about to run takes a dedicated
connection to the state store and tries the slots with ``pg_try_advisory_lock``; when one is
granted it holds that connection (and so the lock) until the job ends, then unlocks it and
parks the connection for the next job.  When no slot is free it polls again after a short,
jittered, growing pause.

Why this holds across processes and machines: PostgreSQL grants each advisory lock to one
session at a time, so at most ``global_max`` sessions — and so jobs — hold a slot (no double
counting).  A lock lives exactly as long as its session: when an orchestrator is killed, its
connections die and the server releases its slots at once (no leaks, no lease to expire).

Scope: advisory locks are per database, so the pool is (state database, ``namespace``).  Plans
with the same ``namespace`` on the same state store share one pool; orchestrators that disagree
on ``global_max`` each use slots ``0 .. their global_max - 1``.  If a slot connection dies while
its job runs, the slot is gone; ``Slot.lost`` is set so the driver can stop that job (and try
it again).  A connection lost while waiting for a slot holds none: the wait starts again on a
new connection, retried with the plan's retry policy.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from async_etl.core.retry import RetryPolicy
from async_etl.core.urls import mask_url
from async_etl.errors import LoadError, unusable
from async_etl.log import get_logger
from async_etl.orchestrator.state import lock_key, open_connection, translated
from async_etl.runtime.retrying import retrying

log = get_logger(__name__)

_TRY = "SELECT s FROM generate_series(0, $2 - 1) AS s WHERE pg_try_advisory_lock($1, s) LIMIT 1"


def namespace_key(namespace: str) -> int:
    """The signed 32-bit first key of every slot lock of ``namespace``."""
    return lock_key("slots", namespace) >> 32


class Slot:
    """A held global slot: its index, and an event set if its connection is lost."""

    def __init__(self, index: int) -> None:
        """A slot with index ``index`` (0-based)."""
        self.index = index
        self.lost = anyio.Event()


class GlobalSlots:
    """``size`` slots of ``namespace`` on the state store at ``url`` (see the module doc)."""

    def __init__(
        self,
        url: str,
        namespace: str,
        size: int,
        *,
        poll_min: float = 0.02,
        poll_max: float = 0.25,
        policy: RetryPolicy | None = None,
    ) -> None:
        """Raises ``ValueError`` when ``size < 1``."""
        if size < 1:
            raise ValueError(f"global_max must be >= 1, got {size}")
        self.url, self.size = url, size
        self.policy = policy or RetryPolicy()
        self.key = namespace_key(namespace)
        self.poll_min, self.poll_max = poll_min, poll_max
        self._idle: list[Any] = []

    @asynccontextmanager
    async def hold(self, cancelled: anyio.Event) -> AsyncIterator[Slot | None]:
        """Wait for a free slot and hold it for the block (None if ``cancelled`` is set first).

        Raises ``ConfigError`` when the state store cannot be reached (after the retries).
        """
        try:
            conn, slot = await retrying(lambda: self._acquire(cancelled), self.policy,
                                        what="state store: global slot")  # fmt: skip
        except LoadError as exc:  # unreachable (after the retries), auth, no database
            raise unusable(exc.message, exc) from exc  # 'state store URL: global slot: ...'
        listener: Any = None
        try:
            if slot is not None:
                listener = self._on_lost(slot)
                conn.add_termination_listener(listener)
            yield slot
        finally:
            if listener is not None:
                conn.remove_termination_listener(listener)
            with anyio.CancelScope(shield=True):
                await self._release(conn)

    async def _acquire(self, cancelled: anyio.Event) -> tuple[Any, Slot | None]:
        """A connection and the slot it holds (None: cancelled); errors translated."""
        where = f"state store {mask_url(self.url)}: global slot"
        conn = self._idle.pop() if self._idle else await open_connection(self.url, where=where)
        try:
            async with translated(self.url, "global slot"):
                return conn, await self._wait(conn, cancelled)
        except BaseException:
            conn.terminate()  # a lock it may hold dies with the session
            raise

    async def _wait(self, conn: Any, cancelled: anyio.Event) -> Slot | None:
        pause = self.poll_min
        while not cancelled.is_set():
            index = await conn.fetchval(_TRY, self.key, self.size)
            if index is not None:
                return Slot(int(index))
            with anyio.move_on_after(random.uniform(0.5, 1.0) * pause):
                await cancelled.wait()
            pause = min(self.poll_max, pause * 1.5)
        return None

    def _on_lost(self, slot: Slot) -> Any:
        def listener(_conn: Any) -> None:
            if not slot.lost.is_set():
                log.warning("global slot lost", slot=slot.index)
                slot.lost.set()

        return listener

    async def _release(self, conn: Any) -> None:
        if conn.is_closed():
            return
        try:
            with anyio.fail_after(5):
                await conn.execute("SELECT pg_advisory_unlock_all()")
        except Exception:
            conn.terminate()  # the server drops its locks with the session
            return
        self._idle.append(conn)

    async def aclose(self) -> None:
        """Close the parked connections."""
        with anyio.CancelScope(shield=True):
            while self._idle:
                await self._idle.pop().close()
